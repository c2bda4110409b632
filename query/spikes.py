"""GetErrorSpikes: services and operations whose error rate rose against their own
baseline, ranked, with the error spans and log records that explain the rise.

Counts come from the RED rollups (requests: server and consumer spans), for the window
and for the baseline before it. The rank is the *excess errors*: the window's errors
minus those its requests would have had at the baseline's rate. It grows with both the
rise and the traffic, so a busy checkout failing 2% more ranks above a quiet cron job
going from 0 to 1 failure, which a ratio alone would put first. A service without
baseline traffic has a baseline rate of 0. The two-proportion z statistic is reported
beside it, to tell a significant rise from noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from otlpd.errors import BadArgument
from query import arguments, convert, tokens
from query.call import QueryCall
from query.convert import set_timestamp
from query.proto import pb
from query.red import MINUTE_NS, minute_grid
from query.settings import QuerySettings
from storage.postgres import red_reader, trace_reader
from storage.postgres.partitions import datetime_from_ns, ns_from_datetime
from storage.postgres.records import LogRow, SpanRow

WINDOW_DEFAULT_NS: Final = 15 * MINUTE_NS
BASELINE_FACTOR: Final = 4
SPIKES_DEFAULT_LIMIT: Final = 10
EXAMPLES_DEFAULT: Final = 5
MAX_EXAMPLES: Final = 100
ERROR_SEVERITY: Final = 17  # OTLP SeverityNumber ERROR


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
    """GetErrorSpikes over the rollups and the hot tier; stateless."""

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
        service_rows, operation_rows, (until,) = await call.fetch_many(
            [
                red_reader.error_counts(call.project, baseline, start, end, operations=False),
                red_reader.error_counts(call.project, baseline, start, end, operations=True),
                red_reader.complete_until(call.project),
            ]
        )
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
        # Examples: the exact window asked for, not the minutes around it.
        exact_start = datetime_from_ns(window.start_ns)
        exact_end = datetime_from_ns(window.end_ns + 999)  # spans.time is truncated to µs
        span_reads = [
            trace_reader.error_spans(call.project, r.service, exact_start, exact_end, examples)
            for r in page
        ]
        found = await call.fetch_many(span_reads) if span_reads else []
        spans = [[SpanRow(*row) for row in rows] for rows in found]
        log_reads = [
            trace_reader.explaining_logs(
                call.project,
                sorted({s.trace_id for s in rows}),
                r.service,
                start=exact_start,
                end=exact_end,
                min_severity=ERROR_SEVERITY,
                limit=examples,
            )
            for r, rows in zip(page, spans, strict=True)
        ]
        logs = await call.fetch_many(log_reads) if log_reads else []
        for rise, span_rows, log_rows in zip(page, spans, logs, strict=True):
            spike = rise.message()
            spike.operations.extend(op.message() for op in by_service.get(rise.service, ()))
            spike.example_spans.extend(convert.span(row) for row in span_rows)
            spike.example_logs.extend(convert.log_record(LogRow(*row[:-1])) for row in log_rows)
            response.spikes.append(spike)
        return response
