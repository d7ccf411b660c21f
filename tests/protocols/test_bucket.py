"""The one token bucket: full at the start, refilled at its rate up to its capacity."""

from __future__ import annotations

import pytest

from protocols.bucket import TokenBucket


def test_takes_what_it_holds_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(2.0, 0.5, now=0.0)
    assert bucket.take(1.0, 0.0) and bucket.take(1.0, 0.0)
    assert not bucket.take(1.0, 1.0)  # half a token back after a second
    assert bucket.wait_s(1.0) == pytest.approx(1.0)
    assert bucket.take(1.0, 2.0)
    assert bucket.level(100.0) == 2.0  # never above its capacity


def test_spending_goes_into_debt_and_a_clock_going_back_refills_nothing() -> None:
    bucket = TokenBucket(1.0, 1.0, now=10.0)
    bucket.spend(3.0, 10.0)
    assert bucket.level(10.0) == -2.0 and bucket.wait_s(10.0) == pytest.approx(3.0)
    assert bucket.level(5.0) == -2.0
