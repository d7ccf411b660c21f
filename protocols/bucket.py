"""A token bucket, the one rate budget of the project (sans-IO: the caller passes the time).

Dial attempts (bootstrap.dialer), presence admission and per-peer stream budgets
(meshnode.node), and the memory's per-author and per-peer sync budgets (memory.budget) all
take their tokens from this one class.
"""

from __future__ import annotations


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` a second, full at ``now``."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.tokens, self.stamp = capacity, now

    def level(self, now: float) -> float:
        """Tokens held at ``now`` (a clock that went backwards refills nothing)."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, cost: float, now: float) -> bool:
        """Take ``cost`` tokens if there are that many; False, taking nothing, otherwise."""
        if self.level(now) >= cost:
            self.tokens -= cost
            return True
        return False

    def spend(self, cost: float, now: float) -> None:
        """Take ``cost`` tokens whatever the level: the bucket may go into debt."""
        self.level(now)
        self.tokens -= cost

    def wait_s(self, now: float, need: float = 1.0) -> float:
        """Seconds until the bucket holds ``need`` tokens."""
        return max(0.0, (need - self.level(now)) / self.rate)
