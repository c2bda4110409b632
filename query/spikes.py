"""GetErrorSpikes: services and operations whose error rate rose against their own
baseline, ranked, with the error spans and log records that explain the rise.

Counts come from the RED rollups (requests: server and consumer spans), for the window
and for the baseline before it. The rank is the *excess errors*: the window's errors
minus those its requests would have had at the baseline's rate. It grows with both the
rise and the traffic, so a busy checkout failing 2% more ranks above a quiet cron job
going from 0 to 1 failure, which a ratio alone would put first. A service without
baseline traffic has a baseline rate of 0. The two-proportion z statistic is reported
beside it, to tell a significant rise from noise.

The rollups stay in PostgreSQL whatever is tiered; the examples are read from the raw
spans and log records of both tiers (``query.cold_spans``, ``query.cold_logs``) and
merged in the order of the SQL: newest error spans first; the records of their traces
(in the cold tier by the traces' key blooms, within ``TRACE_REACH_NS`` of the window),
then the service's ERROR records of the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from otlpd.errors import BadArgument
from query import arguments, cold_logs, cold_spans, convert, tokens
from query.call import QueryCall
from query.cold_logs import Scope
from query.cold_spans import SpanRange
from query.convert import set_timestamp
from query.proto import pb
from query.red import MINUTE_NS, minute_grid
from query.settings import QuerySettings
from query.traces import SUMMARY_REACH_NS
from storage.postgres import cold_manifest, red_reader, trace_reader
from storage.postgres.cold_manifest import ColdObject
from storage.postgres.log_reader import LogFilter
from storage.postgres.partitions import datetime_from_ns, ns_from_datetime
from storage.postgres.records import LogRow, SpanRow, micros

WINDOW_DEFAULT_NS: Final = 15 * MINUTE_NS
BASELINE_FACTOR: Final = 4
SPIKES_DEFAULT_LIMIT: Final = 10
EXAMPLES_DEFAULT: Final = 5
MAX_EXAMPLES: Final = 100
ERROR_SEVERITY: Final = 17  # OTLP SeverityNumber ERROR
# The records of an example span's trace are looked for this far either side of the
# window in the cold tier, as SearchTraces' summaries are (query.traces): the cold tier
# has no index of a trace's time, and a trace id is looked up in the key blooms of every
# object in reach (a month of objects would take seconds).
TRACE_REACH_NS: Final = SUMMARY_REACH_NS


@dataclass(frozen=True, slots=True)
class Rise:
    """One service's (or operation's) errors in the window against its baseline."""

    service: str
    operation: str
    span_kind: int
    requests: int
    errors: int
    baseline_requests: int
    baseline_errors: int

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def baseline_rate(self) -> float:
        return self.baseline_errors / self.baseline_requests if self.baseline_requests else 0.0

    @property
    def excess(self) -> float:
        return self.errors - self.requests * self.baseline_rate

    @property
    def zscore(self) -> float:
        """(p1 - p0) / sqrt(p (1 - p) (1/n1 + 1/n0)), p pooled; 0 when undefined."""
        n1, n0 = self.requests, self.baseline_requests
        if not n1 or not n0:
            return 0.0
        pooled = (self.errors + self.baseline_errors) / (n1 + n0)
        spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        return (self.rate - self.baseline_rate) / spread if spread else 0.0

    def rank_key(self) -> tuple[float, float, str, str, int]:
        return (-self.excess, -self.zscore, self.service, self.operation, self.span_kind)

    def message(self) -> pb.ErrorSpike:
        return pb.ErrorSpike(
            service=self.service,
            operation=self.operation,
            span_kind=self.span_kind,
            requests=self.requests,
            errors=self.errors,
            error_rate=self.rate,
            baseline_requests=self.baseline_requests,
            baseline_errors=self.baseline_errors,
            baseline_error_rate=self.baseline_rate,
            excess_errors=self.excess,
            zscore=self.zscore,
        )


def rises(rows: list[Any], *, operations: bool) -> list[Rise]:
    """The rows of ``red_reader.error_counts`` whose error rate rose, ranked."""
    out = []
    for row in rows:
        if operations:
            service, operation, kind, *counts = row
        else:
            (service, *counts), operation, kind = row, "", 0
        rise = Rise(service, operation, kind, *counts)
        if rise.excess > 0:
            out.append(rise)
    return sorted(out, key=Rise.rank_key)


class ErrorSpikeQueries:
    """GetErrorSpikes over the rollups and the spans and logs of both tiers; stateless."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def spikes(
        self, call: QueryCall, request: pb.GetErrorSpikesRequest
    ) -> pb.GetErrorSpikesResponse:
        window = arguments.time_range(request, default_span_ns=WINDOW_DEFAULT_NS)
        grid = minute_grid(window.start_ns, window.end_ns, None)
        baseline_ns = BASELINE_FACTOR * (grid.end_ns - grid.start_ns)
        if request.HasField("baseline"):
            baseline_ns = arguments.duration_ns(request.baseline, "baseline")
            if baseline_ns < MINUTE_NS:
                raise BadArgument("baseline", "must be at least one minute")
        baseline_ns = -(-baseline_ns // MINUTE_NS) * MINUTE_NS
        limit = arguments.limit(
            request.limit, default=SPIKES_DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        examples = arguments.limit(
            request.examples, default=EXAMPLES_DEFAULT, maximum=MAX_EXAMPLES, field="examples"
        )
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, "spikes", bound_to)
        offset = 0
        if cursor is not None:
            if len(cursor) != 1 or not isinstance(cursor[0], int) or cursor[0] < 0:
                raise BadArgument("page_token", "is not a token this server issued")
            offset = cursor[0]
        start, end = datetime_from_ns(grid.start_ns), datetime_from_ns(grid.end_ns)
        baseline = datetime_from_ns(max(0, grid.start_ns - baseline_ns))
        # Examples: the exact window asked for, not the minutes around it.
        exact_start = datetime_from_ns(window.start_ns)
        exact_end = datetime_from_ns(window.end_ns + 999)  # spans.time is truncated to µs
        statements = [
            red_reader.error_counts(call.project, baseline, start, end, operations=False),
            red_reader.error_counts(call.project, baseline, start, end, operations=True),
            red_reader.complete_until(call.project),
        ]
        if call.cold is not None:  # the cold objects the examples may come from, on the way
            statements.append(
                cold_manifest.objects(
                    call.project,
                    (cold_spans.SIGNAL, cold_logs.SIGNAL),
                    ns_from_datetime(exact_start) - TRACE_REACH_NS,
                    ns_from_datetime(exact_end) + TRACE_REACH_NS,
                )
            )
        service_rows, operation_rows, (until,), *manifest = await call.fetch_many(statements)
        objects = [ColdObject.from_row(row) for row in manifest[0]] if manifest else []
        ranked = rises(service_rows, operations=False)
        by_service: dict[str, list[Rise]] = {}
        for rise in rises(operation_rows, operations=True):
            by_service.setdefault(rise.service, []).append(rise)
        page = ranked[offset : offset + limit]
        response = pb.GetErrorSpikesResponse()
        if until[0] is not None:
            set_timestamp(response.complete_until, ns_from_datetime(until[0]))
        if offset + limit < len(ranked):
            response.next_page_token = tokens.encode("spikes", bound_to, [offset + limit])
        found = _Examples(call, exact_start, exact_end, examples, objects)
        spans = await found.error_spans(page)
        logs = await found.explaining_logs(page, spans)
        for rise, span_rows, log_rows in zip(page, spans, logs, strict=True):
            spike = rise.message()
            spike.operations.extend(op.message() for op in by_service.get(rise.service, ()))
            for row in span_rows:
                convert.fill_span(spike.example_spans.add(), row)
            for log_row in log_rows:
                convert.fill_log_record(spike.example_logs.add(), log_row)
            response.spikes.append(spike)
        return response


@dataclass(frozen=True, slots=True)
class _Examples:
    """The example spans and logs of a page of spikes, from both tiers: the window
    ``[start, end)``, how many of each, and the cold objects within ``TRACE_REACH_NS`` of
    the window."""

    call: QueryCall
    start: datetime
    end: datetime
    limit: int
    objects: Sequence[ColdObject]

    def _cold(self, signal: str) -> list[ColdObject]:
        return [o for o in self.objects if o.signal == signal]

    async def error_spans(self, page: Sequence[Rise]) -> list[list[SpanRow]]:
        """Per rise, the newest error spans of its service in the window."""
        if not page:
            return []
        found = await self.call.fetch_many(
            [
                trace_reader.error_spans(
                    self.call.project, r.service, self.start, self.end, self.limit
                )
                for r in page
            ]
        )
        out = [[SpanRow(*row) for row in rows] for rows in found]
        objects = self._cold(cold_spans.SIGNAL)
        if not objects:
            return out
        ranges = [
            SpanRange.between(self.start, self.end, service=r.service, errors_only=True)
            for r in page
        ]
        tables = await cold_spans.in_ranges(self.call, ranges, cold_spans.COLUMNS, objects)
        for hot, cold in zip(out, tables, strict=True):
            if cold:
                both = pa.concat_tables(cold)
                newest = pc.sort_indices(both, [("time", "descending")])[: self.limit]
                hot.extend(cold_spans.span_rows(both, newest.to_pylist()))
                # spans.time is the start truncated to µs: the SQL's order, newest first
                hot.sort(key=lambda span: (span.start_time_unix_nano or 0) // 1000, reverse=True)
                del hot[self.limit :]
        return out

    async def explaining_logs(
        self, page: Sequence[Rise], spans: Sequence[Sequence[SpanRow]]
    ) -> list[list[LogRow]]:
        """Per rise, log records newest first: those of its example spans' traces, then
        its service's ERROR records of the window (``trace_reader.explaining_logs``)."""
        if not page:
            return []
        traces = [sorted({s.trace_id for s in rows}) for rows in spans]
        found = await self.call.fetch_many(
            [
                trace_reader.explaining_logs(
                    self.call.project,
                    ids,
                    r.service,
                    start=self.start,
                    end=self.end,
                    min_severity=ERROR_SEVERITY,
                    limit=self.limit,
                )
                for r, ids in zip(page, traces, strict=True)
            ]
        )
        # The traces' records: anywhere in time in the hot tier, as the SQL reads them;
        # within TRACE_REACH_NS of the window in the cold one, by their key blooms.
        cold_of_traces: list[list[LogRow]] = [[] for _ in page]
        if self._cold(cold_logs.SIGNAL):
            cold_of_traces = await cold_spans.logs_of_each(
                self.call,
                traces,
                self.limit,
                newest_first=True,
                start_ns=ns_from_datetime(self.start) - TRACE_REACH_NS,
                end_ns=ns_from_datetime(self.end) + TRACE_REACH_NS,
            )
        out = []
        for rise, ids, rows, cold in zip(page, traces, found, cold_of_traces, strict=True):
            of_traces = [LogRow(*row[:-1]) for row in rows if row[-1] == 0]
            of_service = [LogRow(*row[:-1]) for row in rows if row[-1] == 1]
            if self.call.cold is not None:
                of_traces = _newest([*of_traces, *cold], self.limit)
                if len(of_traces) < self.limit:
                    of_service += await self._error_logs(rise.service, ids, len(of_traces))
            out.append([*_newest(of_traces, self.limit), *_newest(of_service, self.limit)])
        return [rows[: self.limit] for rows in out]

    async def _error_logs(self, service: str, traces: Sequence[bytes], taken: int) -> list[LogRow]:
        """The newest cold ERROR records of ``service`` in the window not of ``traces``.
        Those of the traces are at most the ``taken`` records already listed, so reading
        ``limit + taken`` leaves enough once they are set aside."""
        objects = self._cold(cold_logs.SIGNAL)
        if not objects:
            return []
        flt = LogFilter(self.call.project, service=service, min_severity=ERROR_SEVERITY)
        found = await cold_logs.scan(
            self.call,
            Scope(flt, micros(self.start), micros(self.end)),
            newest_first=True,
            after=None,
            want=self.limit + taken,
            objects=objects,
        )
        excluded = set(traces)
        return [r for r in found if r.trace_id is None or r.trace_id not in excluded]


def _newest(records: list[LogRow], limit: int) -> list[LogRow]:
    return sorted(records, key=lambda r: r.key, reverse=True)[:limit]
