"""Admission budgets for membership gossip: what one peer can make this node hold or relay.

Pure data, no I/O; the caller passes the time. Run on every presence-topic message before it
is delivered or forwarded (so what a budget refuses goes no further than this node):

- **the signer must be the publisher**: a presence or suspicion signed by another key than
  the GossipSub origin is refused, so no peer speaks for an identity it does not hold;
- **vouching**: an announcement of an identity this node does not know yet, relayed by a
  neighbour (not published by that identity over its own connection), costs the relaying
  neighbour a token of a small bucket. One connection can therefore introduce a few new
  identities a minute, not thousands; an honest relay forwards only the joins it admitted
  itself, which stay far below it;
- **per identity**: one presence per ``min_interval_s`` from one identity (after a burst
  of a few), and suspicions only from an identity this node lists, as often.

Refusals are counted per reason for ``meshnode peers``/metrics.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

from protocols.bucket import TokenBucket
from protocols.errors import OverBudget

#: New identities one neighbour may introduce: a burst, then this many a second.
VOUCH_BURST = 64.0
VOUCH_PER_S = 0.5
#: Neighbours and identities whose budgets are remembered (least recently seen go first).
MAX_TRACKED = 16_384
#: Announcements of one identity that may come closer together than min_interval_s.
RATE_BURST = 4.0


#: A membership message over budget or not its publisher's: dropped here, not relayed.
#: (Not evidence against the relaying neighbour by itself: an honest relay may have passed
#: on what it could not check.)
Refused = OverBudget


class PresenceAdmission:
    def __init__(
        self,
        self_id: str,
        *,
        min_interval_s: float = 1.0,
        vouch_burst: float = VOUCH_BURST,
        vouch_per_s: float = VOUCH_PER_S,
    ) -> None:
        self.self_id = self_id
        self.min_interval_s = min_interval_s
        self.vouch_burst = vouch_burst
        self.vouch_per_s = vouch_per_s
        self._vouch: OrderedDict[str, TokenBucket] = OrderedDict()
        self._rates: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()
        self.refused: Counter[str] = Counter()

    def _refuse(self, reason: str, message: str) -> Refused:
        self.refused[reason] += 1
        return Refused(reason, message)

    @staticmethod
    def _bucket(buckets: OrderedDict[Any, TokenBucket], key: Any, rate: float, burst: float,
                now: float) -> TokenBucket:
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(burst, rate, now)
        buckets.move_to_end(key)
        while len(buckets) > MAX_TRACKED:
            buckets.popitem(last=False)
        return bucket

    def _rate(self, kind: str, author: str, now: float) -> None:
        # A small burst: announcements a second apart may arrive closer together.
        bucket = self._bucket(self._rates, (kind, author), 1 / self.min_interval_s,
                              RATE_BURST, now)
        if not bucket.take(1.0, now):
            raise self._refuse("too_frequent", f"{kind} from {author} more often than once "
                                               f"per {self.min_interval_s:g} s")

    def vouch(self, source: str, author: str, now: float) -> None:
        """Charge ``source`` for introducing ``author``, a new identity (also for members
        learned through a push-pull from ``source``); Refused if it is over budget."""
        if source in (author, self.self_id):
            return  # a peer speaking for itself, on its own connection: its own cost
        bucket = self._bucket(self._vouch, source, self.vouch_per_s, self.vouch_burst, now)
        if not bucket.take(1.0, now):
            raise self._refuse("vouch_budget", f"{source} introduced too many new peers")

    def presence(self, origin: str, forwarder: str, author: str, *, known: bool,
                 now: float) -> None:
        """Admit a presence of ``author`` published by ``origin``, relayed by ``forwarder``."""
        if author != origin:
            raise self._refuse("not_publisher", "presence signed by another key than its "
                                                "publisher's")
        self._rate("presence", author, now)
        if not known:
            self.vouch(forwarder, author, now)

    def suspicion(self, origin: str, accuser: str, *, accuser_known: bool,
                  now: float) -> None:
        if accuser != origin:
            raise self._refuse("not_publisher", "suspicion signed by another key than its "
                                                "publisher's")
        if not accuser_known:
            raise self._refuse("unknown_accuser", "suspicion from a peer this node does not "
                                                  "list")
        self._rate("suspect", accuser, now)
