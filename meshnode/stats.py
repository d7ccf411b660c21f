"""Summary figures of samples: the one percentile definition of the daemon and of bench/.

Quantiles interpolate linearly between the two closest ranks (numpy's default, R's type 7,
a spreadsheet's PERCENTILE), so the p99 of 100 samples lies between the 99th and the 100th.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 <= q <= 1) of ``values``: 0.5 is the median, 0.99 the p99."""
    if not values:
        raise ValueError("the quantile of no values is undefined")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in 0..1, got {q}")
    return float(np.quantile(np.asarray(values, dtype=np.float64), q))
