"""meshnode.stats: the one percentile definition of the daemon and bench/."""

from __future__ import annotations

import pytest

from meshnode.stats import quantile


def test_quantiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert quantile(values, 0.5) == pytest.approx(50.5)
    assert quantile(values, 0.99) == pytest.approx(99.01)  # not a sample: between 99 and 100
    assert quantile(values, 0.0) == 1.0 and quantile(values, 1.0) == 100.0
    assert quantile([7.0], 0.99) == 7.0


@pytest.mark.parametrize("q", [-0.1, 1.5, 99])
def test_q_is_a_fraction(q: float) -> None:
    with pytest.raises(ValueError, match=r"q must be in 0\.\.1"):
        quantile([1.0, 2.0], q)


def test_no_samples_has_no_quantile() -> None:
    with pytest.raises(ValueError):
        quantile([], 0.5)
