"""Reading the rollups' log-scaled duration buckets back: merging and percentiles.

Bucket ``b`` holds durations in ``[2^(b/8), 2^((b+1)/8))`` ns (``storage.postgres.rollups``).
Buckets add up, so the histogram of any set of minutes is a sum, computed here with one
``np.bincount`` per read. A percentile is the geometric middle of the bucket that holds
the sample of that rank, so it is within ``RELATIVE_ERROR`` of that sample: the
precision GetServiceStats promises (``percentile_relative_error``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from storage.postgres.rollups import SUB_BUCKETS

# floor(log2(2^63) * 8) = 504 is the largest bucket of a bigint duration.
N_BUCKETS: Final = 64 * SUB_BUCKETS
RELATIVE_ERROR: Final = 2 ** (1 / (2 * SUB_BUCKETS)) - 1  # half a bucket: 4.4%
QUANTILES: Final = (0.5, 0.95, 0.99)

Counts = npt.NDArray[np.int64]


def merge(
    groups: npt.NDArray[np.int64], buckets: npt.NDArray[np.int64], counts: Counts, n_groups: int
) -> Counts:
    """The histograms of ``n_groups`` groups, ``(n_groups, N_BUCKETS)``: entry ``i``
    (bucket ``buckets[i]``, ``counts[i]`` spans) belongs to group ``groups[i]``."""
    keys = groups * N_BUCKETS + np.clip(buckets, 0, N_BUCKETS - 1)
    merged = np.bincount(keys, weights=counts, minlength=n_groups * N_BUCKETS)
    return merged.astype(np.int64).reshape(n_groups, N_BUCKETS)


def percentiles(
    histograms: Counts, quantiles: tuple[float, ...] = QUANTILES
) -> npt.NDArray[np.float64]:
    """``(len(histograms), len(quantiles))`` durations in ns; nan for an empty histogram.

    The sample of quantile q is the one of 0-based rank ``round(q * (n - 1))``, the
    nearest to where numpy's default (linear) percentile interpolates.
    """
    cum = np.cumsum(histograms, axis=1)
    total = cum[:, -1]
    out = np.full((len(histograms), len(quantiles)), np.nan)
    present = total > 0
    for j, q in enumerate(quantiles):
        rank = np.rint(q * (total - 1))
        # The first bucket whose cumulative count exceeds the rank holds that sample.
        index = (cum <= rank[:, None]).sum(axis=1)
        middle = np.exp2((index + 0.5) / SUB_BUCKETS)
        out[:, j] = np.where(present, middle, np.nan)
    return out
