"""GetLatencyHistogram: the span durations of a service or operation, binned, with
exact percentiles.

The durations are read raw (``storage.postgres.latency_reader``, and the cold tier's
``duration_ns`` column of the service's row groups, ``query.cold_spans``), so the
percentiles are numpy's own (linear interpolation) over every span of the range in both
tiers, not bucket estimates; the price is a bound on how many spans one call may read
(``MAX_SPANS``), past which the call is refused with advice rather than answered from a
part.
"""

from __future__ import annotations

import itertools
from typing import Final

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from otlpd.errors import BadArgument, QueryTooCostly
from query import arguments, cold_spans
from query.call import ADVICE, QueryCall
from query.cold_spans import SpanRange
from query.convert import set_duration
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres import latency_reader
from storage.postgres.metric_reader import binary_array
from storage.postgres.partitions import datetime_from_ns

DEFAULT_BINS: Final = 40
MAX_BINS: Final = 1000
MAX_BOUNDS: Final = 1000
MAX_SPANS: Final = 5_000_000  # 40 MB of durations
QUANTILES: Final = (0.5, 0.9, 0.95, 0.99)


def log_edges(low: int, high: int, bins: int) -> np.ndarray:
    """``bins + 1`` increasing integer edges, log-spaced from ``low`` to past ``high``."""
    low = max(1, low)
    high = max(high, low) + 1  # the last edge is exclusive
    edges = np.unique(np.rint(np.geomspace(low, high, bins + 1)).astype(np.int64))
    if edges[0] > 0 and low == 1:
        edges = np.concatenate(([0], edges))  # zero-length spans have a bin too
    return edges


def _durations(table: pa.Table) -> np.ndarray:
    """The durations of cold spans as the SQL reads them: ``greatest(coalesce(d, 0), 0)``."""
    durations = pc.fill_null(table.column("duration_ns"), 0).to_numpy()
    return np.maximum(np.asarray(durations, dtype=np.int64), 0)


class LatencyQueries:
    """GetLatencyHistogram over both tiers; stateless."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def histogram(
        self, call: QueryCall, request: pb.GetLatencyHistogramRequest
    ) -> pb.GetLatencyHistogramResponse:
        if not request.service:
            raise BadArgument("service", "is required")
        service = arguments.text(request.service, "service")
        operation = arguments.text(request.operation, "operation") or None
        if request.span_kind < 0 or request.span_kind > 5:
            raise BadArgument("span_kind", "must be an OTLP SpanKind (0-5)")
        bounds = [arguments.duration_ns(b, f"bounds[{i}]") for i, b in enumerate(request.bounds)]
        if len(bounds) > MAX_BOUNDS:
            raise BadArgument("bounds", f"at most {MAX_BOUNDS}")
        if bounds and bounds[0] <= 0:
            raise BadArgument("bounds", "must be > 0 (the first bin starts at 0)")
        if any(b <= a for a, b in itertools.pairwise(bounds)):
            raise BadArgument("bounds", "must be strictly increasing")
        bins = arguments.limit(request.bins, default=DEFAULT_BINS, maximum=MAX_BINS, field="bins")
        window = arguments.time_range(request)
        start = datetime_from_ns(window.start_ns)
        end = datetime_from_ns(window.end_ns + 999)  # spans.time is truncated to µs
        kind = request.span_kind or None
        ((data,),) = await call.fetch(
            *latency_reader.durations(
                call.project,
                start=start,
                end=end,
                service=service,
                operation=operation,
                kind=kind,
                limit=MAX_SPANS + 1,
            ),
            binary=True,
        )
        hot = binary_array(data)
        if len(hot) > MAX_SPANS:
            raise QueryTooCostly(f"more than {MAX_SPANS:,} spans in the range; {ADVICE}")
        where = SpanRange.between(start, end, service=service, name=operation, kind=kind)
        (tables,) = await cold_spans.in_ranges(call, [where], ["duration_ns"])
        values = np.sort(np.concatenate([hot, *(_durations(t) for t in tables)]))
        if len(values) > MAX_SPANS:
            raise QueryTooCostly(f"more than {MAX_SPANS:,} spans in the range; {ADVICE}")
        response = pb.GetLatencyHistogramResponse(count=len(values))
        if not len(values):
            return response
        low, high = int(values[0]), int(values[-1])
        if bounds:
            edges = np.array([0, *bounds, max(high, bounds[-1]) + 1], dtype=np.int64)
        else:
            edges = log_edges(low, high, bins)
        counts = np.diff(np.searchsorted(values, edges, side="left"))
        for lower, upper, count in zip(edges[:-1], edges[1:], counts, strict=True):
            out = response.bins.add(count=int(count))
            set_duration(out.lower, int(lower))
            set_duration(out.upper, int(upper))
        for q, value in zip(
            QUANTILES, np.percentile(values, [100 * q for q in QUANTILES]), strict=True
        ):
            mark = response.percentiles.add(
                quantile=q, bin=int(np.searchsorted(edges, value, side="right")) - 1
            )
            set_duration(mark.value, round(float(value)))
        set_duration(response.min, low)
        set_duration(response.max, high)
        set_duration(response.mean, round(float(values.mean())))
        return response
