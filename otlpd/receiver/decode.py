"""OTLP Export requests (serialized protobuf) to storage rows, with the correlation envelope.

One ``Decoder`` per process, shared by every receiver; each call decodes one request into
a ``RowBatch`` (``storage.model`` documents the row contract) and says which records it
refused and why, for the OTLP partial-success answer. A record that breaks a rule is
refused alone; the rest of its request is kept.

This is the hot path of ingestion, so the loops below read each protobuf field once, keep
what they reuse in locals, build a row as one tuple and leave attribute lists to
``anyvalue.AttributeEncoder`` (see ``messages`` for why attributes arrive as raw bytes).
Decoding is deterministic for a given ``SessionCache`` state: a request is decoded again
once the session directory has answered for the sessions it left unresolved.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from hashlib import blake2b
from json.encoder import encode_basestring
from typing import Any, Final

from google.protobuf.message import DecodeError

from otlpd.envelope import (
    NOTHING_FOUND,
    SERVICE,
    Completion,
    EnvelopeKeys,
    Found,
    SessionCache,
)
from otlpd.errors import InvalidRequest
from otlpd.receiver import messages, salvage
from otlpd.receiver.anyvalue import (
    AttributeEncoder,
    body_text,
    finite,
    json_text,
    scalar_text,
)
from otlpd.receiver.rejections import RecordRejected, Rejections
from storage.model import MetricType, Row, RowBatch

_NUL_ESCAPE: Final = "\\u0000"  # how JSON text holds U+0000
_ZERO_TRACE_ID: Final = bytes(16)
_ZERO_SPAN_ID: Final = bytes(8)
# series_id = the first 8 bytes of BLAKE2b("<project>\0<attributes>\0<identity>"), big-endian,
# masked to 63 bits (a non-negative bigint). <attributes> is the point attributes' JSON with
# its keys in canonical (sorted) order; <identity> the JSON array [metric name, MetricType,
# unit, temporality, monotonic, resource JSON (sorted), scope name, scope version]. NUL
# cannot occur in either JSON text nor in a project id, so the encoding is unambiguous.
# Every process computes the same id; changing any of this orphans the stored series.
_ID_MASK: Final = (1 << 63) - 1
_SERIES_ID_CACHE: Final = 50_000
# resource_id = the same 63 bits of BLAKE2b("<attributes>\0<schema_url>\0<dropped>"):
# the resource attributes' JSON in canonical (sorted) order, the schema URL ("" when
# absent) and dropped_attributes_count in decimal (as stored: saturated to integer). NUL
# cannot occur in the first two, so the encoding is unambiguous. No project: the records
# of one resource may belong to several projects, each of which gets a row with this id.
# Every process computes the same id; changing any of this orphans the stored resources.
_MAX_SPAN_KIND: Final = 5  # SPAN_KIND_CONSUMER
_MAX_STATUS_CODE: Final = 2  # STATUS_CODE_ERROR
_MAX_SEVERITY: Final = 24  # SEVERITY_NUMBER_FATAL4
_MAX_TEMPORALITY: Final = 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
# OTLP counts are uint32/uint64; PostgreSQL's integer and bigint are signed. Dropped counts
# beyond integer are saturated (they say "at least this many"); a time or count beyond
# bigint means a broken record, which is refused.
_MAX_INTEGER: Final = 2**31 - 1
_MAX_BIGINT: Final = 2**63 - 1

_METRIC_TYPES: Final = {
    "gauge": MetricType.GAUGE,
    "sum": MetricType.SUM,
    "histogram": MetricType.HISTOGRAM,
    "exponential_histogram": MetricType.EXPONENTIAL_HISTOGRAM,
    "summary": MetricType.SUMMARY,
}
_AGGREGATED: Final = frozenset(("sum", "histogram", "exponential_histogram"))
_METRIC_DATA_FIELDS: Final = (5, 7, 9, 10, 11)  # Metric.gauge ... Metric.summary


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What a record may hold and when it may have happened, or it is refused."""

    max_attribute_value_bytes: int = 64 * 1024  # a string/bytes attribute value above this
    max_body_bytes: int = 1024 * 1024  # a log body (as JSON text) above this
    accept_past_ns: int = 24 * 3600 * 10**9  # records older than now - this
    accept_future_ns: int = 3600 * 10**9  # records newer than now + this

    def __post_init__(self) -> None:
        for name in ("max_attribute_value_bytes", "max_body_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("accept_past_ns", "accept_future_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(slots=True)
class Decoded:
    """The rows of one request, and what was refused.

    ``error_message`` is empty when there is nothing to say; it may be non-empty with
    ``rejected == 0`` to warn (a metric without data), as the OTLP spec allows.
    ``unresolved_sessions`` are the sessions that records needed to complete their
    envelope and that the ``SessionCache`` knew nothing of: look them up, ``learn`` the
    answer and decode again.
    """

    batch: RowBatch
    rejected: int
    error_message: str
    unresolved_sessions: set[str]


@dataclass(frozen=True, slots=True)
class _Resource:
    """What the records of one resource share."""

    json: str
    schema_url: str | None
    service: str | None
    found: Found
    dropped_attributes_count: int
    id: int

    def refer(self, resources: dict[tuple[str, int], Row], project: str, time: int) -> None:
        """Adds this resource's row for ``project`` to ``resources`` unless it is there.

        The decoders call it when a stored record's project differs from the previous
        record's, not per record, so ``time`` is that of the first record of the request
        that referred to it, not the earliest.
        """
        key = (project, self.id)
        if key not in resources:
            row = (project, self.id, self.json, self.schema_url, self.dropped_attributes_count)
            resources[key] = (*row, time)


# Completion.complete: (session, project, user, service, time) -> (project, user).
Completer = Callable[[str, str | None, str | None, str | None, int], tuple[str, str | None]]


@dataclass(frozen=True, slots=True)
class _Scope:
    """What the records of one instrumentation scope share, with inherited envelope values."""

    resource: _Resource
    name: str | None
    version: str | None
    attributes: str | None
    schema_url: str | None
    session: str | None
    user: str | None
    project: str | None

    def envelope(
        self, found: Found | None, complete: Completer, time: int, default_project: str
    ) -> tuple[str, str | None, str | None]:
        """A good record's ``(project, session, user)``: its own values, else the scope's
        (which fall back to the resource's), else its session owner's, else the default.
        Records the session sighting at ``time``."""
        if found is None:
            session, user, project = self.session, self.user, self.project
        else:
            session = found[0] or self.session
            user = found[1] or self.user
            project = found[2] or self.project
        if session is None:
            return project or default_project, None, user
        project, user = complete(session, project, user, self.resource.service, time)
        return project, session, user


class _Run:
    """The state of one decode call."""

    __slots__ = ("batch", "completion", "hi", "lo", "now", "rejections")

    def __init__(
        self, completion: Completion, rejections: Rejections, lo: int, now: int, hi: int
    ) -> None:
        self.batch = RowBatch(sessions=completion.sessions)
        self.completion = completion
        self.rejections = rejections
        self.lo = lo
        self.now = now
        self.hi = hi

    def result(self) -> Decoded:
        return Decoded(
            self.batch,
            self.rejections.count,
            self.rejections.message(),
            self.completion.unresolved,
        )


@dataclass(frozen=True, slots=True)
class _Metric:
    """What the points of one metric share."""

    position: tuple[int, int, int, str]  # resource, scope and metric index, metric name
    identity: str  # the series identity but project and point attributes, as JSON text
    head: tuple[Any, ...]  # series row columns from metric_name to service_name
    tail: tuple[Any, ...]  # series row columns from resource to metadata
    values: Callable[[Any], tuple[Any, ...]]  # point row columns from value to quantiles
    with_exemplars: bool  # a summary's points have none


Records = Iterable[tuple[int, Any]]  # (index in its scope, lazy record message)


@dataclass(frozen=True, slots=True)
class _Signal:
    """How one signal's request is laid out."""

    name: str  # request message name, for errors
    noun: str
    plural: str
    request: Any  # lazy request class
    resources: str  # field of the request
    scopes: str  # field of a resource
    records: str  # field of a scope
    record_noun: str  # what the records of a scope are called in positions
    record: Any  # lazy record class, to parse records one by one in salvage


_TRACES: Final = _Signal(
    "ExportTraceServiceRequest",
    "span",
    "spans",
    messages.TracesRequest,
    "resource_spans",
    "scope_spans",
    "spans",
    "span",
    messages.Span,
)
_LOGS: Final = _Signal(
    "ExportLogsServiceRequest",
    "log record",
    "log records",
    messages.LogsRequest,
    "resource_logs",
    "scope_logs",
    "log_records",
    "log record",
    messages.LogRecord,
)
_METRICS: Final = _Signal(
    "ExportMetricsServiceRequest",
    "data point",
    "data points",
    messages.MetricsRequest,
    "resource_metrics",
    "scope_metrics",
    "metrics",
    "metric",
    messages.Metric,
)


def _points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def _raw_points(metric: bytes) -> int:
    """The data points of a serialized ``Metric`` (best effort: it may be malformed)."""
    count = 0
    try:
        for number, data in salvage.embedded(metric):
            if number in _METRIC_DATA_FIELDS:
                count += salvage.count_embedded(data, (1,))
    except salvage.WireError:
        pass
    return count


def _bad_id(name: str, value: bytes, size: int, optional: bool = False) -> RecordRejected:
    reason = f"invalid {name}"
    if len(value) == size:
        return RecordRejected(reason, f"{name} is all zero")
    expected = f"empty or {size}" if optional else f"{size}"
    return RecordRejected(reason, f"{name} must be {expected} bytes, got {len(value)}")


def _duration(ns: int) -> str:
    seconds = ns / 1e9
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def _bad_time(name: str, value: int, run: _Run) -> RecordRejected:
    if value == 0:
        return RecordRejected("invalid time", f"{name} is 0")
    if value < run.lo:
        when, limit = "before", run.now - run.lo
    else:
        when, limit = "after", run.hi - run.now
    delta = abs(run.now - value)
    return RecordRejected(
        "time out of range",
        f"{name} {value} is {_duration(delta)} {when} the server clock "
        f"(accepted: {_duration(limit)})",
    )


def _bad_end(start: int, end: int, run: _Run) -> RecordRejected:
    if end < start:
        return RecordRejected(
            "end before start", f"end_time_unix_nano {end} is before start_time_unix_nano {start}"
        )
    return _bad_time("end_time_unix_nano", end, run)


def _too_big(name: str, value: int) -> RecordRejected:
    return RecordRejected("count out of range", f"{name} {value} is beyond 2^63-1")


def _metric_where(i: int, j: int, k: int, name: str) -> str:
    return f"resource {i}, scope {j}, metric {k} ({name[:64]!r})"


def _enum(name: str, value: int, maximum: int) -> RecordRejected:
    return RecordRejected(f"invalid {name}", f"{name} {value} is not in 0..{maximum}")


def _nul(what: str) -> RecordRejected:
    return RecordRejected("NUL character", f"{what} contains a NUL character")


def _hex(value: bytes) -> str:
    return f'"{value.hex()}"' if value else "null"


class Decoder:
    """Decodes OTLP Export requests into row batches; one per process, any thread."""

    def __init__(
        self,
        keys: EnvelopeKeys,
        limits: DecodeLimits,
        default_project: str,
        sessions: SessionCache,
    ) -> None:
        if not default_project or "\x00" in default_project:
            raise ValueError(f"default_project must be a non-empty text, got {default_project!r}")
        self._limits = limits
        self._default_project = default_project
        self._sessions = sessions
        self._attributes = AttributeEncoder(keys, limits.max_attribute_value_bytes)
        self._encode = self._attributes.encode
        # (project, attributes JSON, identity JSON) -> series_id: a metric's series repeat
        # in every export, and a dict hit is cheaper than hashing them again. Bounded by
        # clearing, like the attribute fragment cache.
        self._series_ids: dict[tuple[str, str, str], int] = {}
        self._record_decoders: dict[_Signal, Callable[[_Run, _Scope, int, int, Records], None]]
        self._record_decoders = {
            _TRACES: self._spans,
            _LOGS: self._logs,
            _METRICS: self._metrics,
        }

    def traces(self, payload: bytes, now_ns: int) -> Decoded:
        """Decodes a serialized ``ExportTraceServiceRequest``; ``now_ns`` is the server clock."""
        return self._decode(_TRACES, payload, now_ns)

    def logs(self, payload: bytes, now_ns: int) -> Decoded:
        """Decodes a serialized ``ExportLogsServiceRequest``."""
        return self._decode(_LOGS, payload, now_ns)

    def metrics(self, payload: bytes, now_ns: int) -> Decoded:
        """Decodes a serialized ``ExportMetricsServiceRequest``."""
        return self._decode(_METRICS, payload, now_ns)

    # -- request, resources, scopes -----------------------------------------------------

    def _decode(self, signal: _Signal, payload: bytes, now_ns: int) -> Decoded:
        limits = self._limits
        run = _Run(
            Completion(self._sessions, self._default_project, {}),
            Rejections(signal.noun, signal.plural),
            max(1, now_ns - limits.accept_past_ns),
            now_ns,
            now_ns + limits.accept_future_ns,
        )
        request = signal.request()
        try:
            request.ParseFromString(payload)
        except DecodeError:
            self._salvage(run, signal, payload)
            return run.result()
        decode_records = self._record_decoders[signal]
        for i, resource_x in enumerate(getattr(request, signal.resources)):
            scopes = getattr(resource_x, signal.scopes)
            try:
                resource = self._resource(resource_x.resource, resource_x.schema_url)
            except RecordRejected as e:
                count = sum(self._count(signal, getattr(s, signal.records)) for s in scopes)
                run.rejections.add(e, f"resource {i}", count)
                continue
            for j, scope_x in enumerate(scopes):
                records = getattr(scope_x, signal.records)
                try:
                    scope = self._scope(resource, scope_x.scope, scope_x.schema_url)
                except RecordRejected as e:
                    run.rejections.add(e, f"resource {i}, scope {j}", self._count(signal, records))
                    continue
                decode_records(run, scope, i, j, enumerate(records))
        return run.result()

    @staticmethod
    def _count(signal: _Signal, records: Any) -> int:
        if signal is _METRICS:
            return sum(_points(m) for m in records)
        return len(records)

    def _resource(self, resource: Any, schema_url: str) -> _Resource:
        # Sorted, so that a series and a resource_id are the same whatever order the
        # resource attributes came in.
        attributes, found = self._attributes.encode_sorted(resource.attributes)
        if "\x00" in schema_url:
            raise _nul("resource schema_url")
        found = found or NOTHING_FOUND
        dropped = min(resource.dropped_attributes_count, _MAX_INTEGER)
        digest = blake2b(
            f"{attributes}\x00{schema_url}\x00{dropped}".encode(), digest_size=8
        ).digest()
        resource_id = int.from_bytes(digest, "big") & _ID_MASK
        return _Resource(
            attributes, schema_url or None, found[SERVICE], found, dropped, resource_id
        )

    def _scope(self, resource: _Resource, scope: Any, schema_url: str) -> _Scope:
        name = scope.name
        version = scope.version
        if "\x00" in name or "\x00" in version or "\x00" in schema_url:
            raise _nul("scope name, version or schema_url")
        attributes = None
        found = NOTHING_FOUND
        if scope.attributes:
            attributes, scope_found = self._attributes.encode_sorted(scope.attributes)
            found = scope_found or NOTHING_FOUND
        inherited = resource.found
        return _Scope(
            resource,
            name or None,
            version or None,
            attributes,
            schema_url or None,
            found[0] or inherited[0],
            found[1] or inherited[1],
            found[2] or inherited[2],
        )

    # -- salvage --------------------------------------------------------------------------

    def _salvage(self, run: _Run, signal: _Signal, payload: bytes) -> None:
        """Decodes what can be parsed of a request that does not parse as a whole."""
        try:
            parts = salvage.split(payload)
        except salvage.WireError as e:
            raise InvalidRequest(f"payload is not a valid {signal.name}: {e}") from None
        add = run.rejections.add
        decode_records = self._record_decoders[signal]
        for part in parts:
            i = part.index
            try:
                resource = self._resource(
                    _parse(messages.Resource, part.resource, "resource"),
                    _text(part.schema_url, "resource schema_url"),
                )
            except RecordRejected as e:
                count = sum(self._count_raw(signal, s.records) for s in part.scopes)
                add(e, f"resource {i}", count)
                continue
            if part.error is not None:
                add(RecordRejected("malformed protobuf", part.error), f"resource {i}")
            for scope_part in part.scopes:
                j = scope_part.index
                try:
                    scope = self._scope(
                        resource,
                        _parse(messages.Scope, scope_part.scope, "scope"),
                        _text(scope_part.schema_url, "scope schema_url"),
                    )
                except RecordRejected as e:
                    add(e, f"resource {i}, scope {j}", self._count_raw(signal, scope_part.records))
                    continue
                if scope_part.error is not None:
                    error = RecordRejected("malformed protobuf", scope_part.error)
                    add(error, f"resource {i}, scope {j}")
                records = []
                for k, data in enumerate(scope_part.records):
                    try:
                        records.append((k, _parse(signal.record, data, signal.record_noun)))
                    except RecordRejected as e:
                        where = f"resource {i}, scope {j}, {signal.record_noun} {k}"
                        add(e, where, self._count_raw(signal, [data]))
                decode_records(run, scope, i, j, records)

    @staticmethod
    def _count_raw(signal: _Signal, records: list[bytes]) -> int:
        if signal is _METRICS:
            return sum(_raw_points(m) for m in records)
        return len(records)

    # -- spans ----------------------------------------------------------------------------

    def _spans(self, run: _Run, scope: _Scope, i: int, j: int, spans: Records) -> None:
        append = run.batch.spans.append
        complete = run.completion.complete
        encode = self._encode
        lo = run.lo
        hi = run.hi
        resource = scope.resource
        service = resource.service
        resource_id = resource.id
        refer = resource.refer
        resources = run.batch.resources
        last_project: str | None = None  # of the last record stored: see _Resource.refer
        scope_name = scope.name
        scope_version = scope.version
        scope_attributes = scope.attributes
        scope_schema_url = scope.schema_url
        envelope = scope.envelope
        default_project = self._default_project
        for k, s in spans:
            try:
                trace_id = s.trace_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
                    raise _bad_id("trace_id", trace_id, 16)
                span_id = s.span_id
                if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
                    raise _bad_id("span_id", span_id, 8)
                parent = s.parent_span_id
                if not parent or parent == _ZERO_SPAN_ID:
                    parent = None
                elif len(parent) != 8:
                    raise _bad_id("parent_span_id", parent, 8, optional=True)
                start = s.start_time_unix_nano
                if start < lo or start > hi:
                    raise _bad_time("start_time_unix_nano", start, run)
                end = s.end_time_unix_nano
                if end < start or end > hi:
                    raise _bad_end(start, end, run)
                kind = s.kind
                if not 0 <= kind <= _MAX_SPAN_KIND:
                    raise _enum("kind", kind, _MAX_SPAN_KIND)
                status = s.status
                code = status.code
                if not 0 <= code <= _MAX_STATUS_CODE:
                    raise _enum("status code", code, _MAX_STATUS_CODE)
                name = s.name
                trace_state = s.trace_state
                message = status.message
                if "\x00" in name or "\x00" in trace_state or "\x00" in message:
                    raise _nul("name, trace_state or status message")
                attributes, found = encode(s.attributes)
                events = s.events
                events_json = self._events(events) if events else None
                links = s.links
                links_json = self._links(links) if links else None
                dropped_attributes = s.dropped_attributes_count
                dropped_events = s.dropped_events_count
                dropped_links = s.dropped_links_count
                if dropped_attributes | dropped_events | dropped_links > _MAX_INTEGER:
                    dropped_attributes = min(dropped_attributes, _MAX_INTEGER)
                    dropped_events = min(dropped_events, _MAX_INTEGER)
                    dropped_links = min(dropped_links, _MAX_INTEGER)
                # The record is good: from here on it counts (sessions, cache).
                project, session, user = envelope(found, complete, start, default_project)
                if project != last_project:
                    refer(resources, project, start)
                    last_project = project
                append(
                    (
                        project,
                        start,
                        start,
                        end,
                        end - start,
                        trace_id,
                        span_id,
                        parent,
                        trace_state or None,
                        s.flags,
                        service,
                        session,
                        user,
                        name,
                        kind,
                        code,
                        message or None,
                        attributes,
                        events_json,
                        links_json,
                        dropped_attributes,
                        dropped_events,
                        dropped_links,
                        resource_id,
                        scope_name,
                        scope_version,
                        scope_attributes,
                        scope_schema_url,
                    )
                )
            except RecordRejected as e:
                run.rejections.add(e, f"resource {i}, scope {j}, span {k}")

    def _events(self, events: Any) -> str:
        encode = self._encode
        text = ",".join(
            [
                f'{{"time_unix_nano":{event.time_unix_nano},'
                f'"name":{encode_basestring(event.name)},'
                f'"attributes":{encode(event.attributes)[0]},'
                f'"dropped_attributes_count":{event.dropped_attributes_count}}}'
                for event in events
            ]
        )
        # Attribute fragments hold no NUL (the encoder refused them): only a name can.
        if _NUL_ESCAPE in text and any("\x00" in event.name for event in events):
            raise _nul("event name")
        return f"[{text}]"

    def _links(self, links: Any) -> str:
        encode = self._encode
        parts = []
        for link in links:
            trace_id = link.trace_id
            if trace_id and len(trace_id) != 16:
                raise _bad_id("link trace_id", trace_id, 16, optional=True)
            span_id = link.span_id
            if span_id and len(span_id) != 8:
                raise _bad_id("link span_id", span_id, 8, optional=True)
            trace_state = link.trace_state
            if "\x00" in trace_state:
                raise _nul("link trace_state")
            attributes = encode(link.attributes)[0]
            parts.append(
                f'{{"trace_id":{_hex(trace_id)},"span_id":{_hex(span_id)},'
                f'"trace_state":{encode_basestring(trace_state)},"attributes":{attributes},'
                f'"dropped_attributes_count":{link.dropped_attributes_count},'
                f'"flags":{link.flags}}}'
            )
        return f"[{','.join(parts)}]"

    # -- logs -----------------------------------------------------------------------------

    def _logs(self, run: _Run, scope: _Scope, i: int, j: int, records: Records) -> None:
        append = run.batch.logs.append
        complete = run.completion.complete
        encode = self._encode
        max_body = self._limits.max_body_bytes
        now = run.now
        lo = run.lo
        hi = run.hi
        resource = scope.resource
        service = resource.service
        resource_id = resource.id
        refer = resource.refer
        resources = run.batch.resources
        last_project: str | None = None  # of the last record stored: see _Resource.refer
        scope_name = scope.name
        scope_version = scope.version
        scope_attributes = scope.attributes
        scope_schema_url = scope.schema_url
        envelope = scope.envelope
        default_project = self._default_project
        for k, r in records:
            try:
                time_unix_nano = r.time_unix_nano
                observed = r.observed_time_unix_nano
                time = time_unix_nano or observed or now
                if time < lo or time > hi:
                    name = "time_unix_nano" if time_unix_nano else "observed_time_unix_nano"
                    raise _bad_time(name, time, run)
                if observed > hi:
                    raise _bad_time("observed_time_unix_nano", observed, run)
                trace_id = r.trace_id
                if not trace_id or trace_id == _ZERO_TRACE_ID:
                    trace_id = None
                elif len(trace_id) != 16:
                    raise _bad_id("trace_id", trace_id, 16, optional=True)
                span_id = r.span_id
                if not span_id or span_id == _ZERO_SPAN_ID:
                    span_id = None
                elif len(span_id) != 8:
                    raise _bad_id("span_id", span_id, 8, optional=True)
                severity = r.severity_number
                if not 0 <= severity <= _MAX_SEVERITY:
                    raise _enum("severity_number", severity, _MAX_SEVERITY)
                severity_text = r.severity_text
                event_name = r.event_name
                if "\x00" in severity_text or "\x00" in event_name:
                    raise _nul("severity_text or event_name")
                body = r.body
                attributes, found = encode(r.attributes)
                row_body = body_text(body, max_body) if body else None
                # The record is good: from here on it counts (sessions, cache).
                project, session, user = envelope(found, complete, time, default_project)
                if project != last_project:
                    refer(resources, project, time)
                    last_project = project
                append(
                    (
                        project,
                        time,
                        time_unix_nano,
                        observed,
                        trace_id,
                        span_id,
                        r.flags,
                        service,
                        session,
                        user,
                        severity,
                        severity_text or None,
                        row_body,
                        attributes,
                        event_name or None,
                        min(r.dropped_attributes_count, _MAX_INTEGER),
                        resource_id,
                        scope_name,
                        scope_version,
                        scope_attributes,
                        scope_schema_url,
                    )
                )
            except RecordRejected as e:
                run.rejections.add(e, f"resource {i}, scope {j}, log record {k}")

    # -- metrics --------------------------------------------------------------------------

    def _metrics(self, run: _Run, scope: _Scope, i: int, j: int, metrics: Records) -> None:
        resource = scope.resource
        for k, metric in metrics:
            name = metric.name
            kind = metric.WhichOneof("data")
            if kind is None:
                where = _metric_where(i, j, k, name)
                run.rejections.warn(f"metric has no data of a known kind ({where})")
                continue
            data = getattr(metric, kind)
            points = data.data_points
            if not points:
                continue
            try:
                unit = metric.unit
                description = metric.description
                if "\x00" in name or "\x00" in unit or "\x00" in description:
                    raise _nul("metric name, unit or description")
                temporality = None
                if kind in _AGGREGATED:
                    temporality = data.aggregation_temporality
                    if not 0 <= temporality <= _MAX_TEMPORALITY:
                        raise _enum("aggregation_temporality", temporality, _MAX_TEMPORALITY)
                monotonic = data.is_monotonic if kind == "sum" else None
                metadata = None
                if metric.metadata:
                    metadata = self._attributes.encode_sorted(metric.metadata)[0]
            except RecordRejected as e:
                run.rejections.add(e, _metric_where(i, j, k, name), len(points))
                continue
            metric_type = _METRIC_TYPES[kind]
            info = _Metric(
                position=(i, j, k, name),
                # Everything that identifies the series but its project and attributes;
                # interned so that the series id cache keeps one copy per metric.
                identity=sys.intern(
                    json_text(
                        [
                            name,
                            metric_type,
                            unit,
                            temporality,
                            monotonic,
                            resource.json,
                            scope.name,
                            scope.version,
                        ]
                    )
                ),
                head=(
                    name,
                    metric_type,
                    unit or None,
                    description or None,
                    temporality,
                    monotonic,
                    resource.service,
                ),
                tail=(resource.json, scope.name, scope.version, metadata),
                values=_POINT_VALUES[kind],
                with_exemplars=kind != "summary",
            )
            self._points(run, scope, info, points)

    def _points(self, run: _Run, scope: _Scope, metric: _Metric, points: Any) -> None:
        identity = metric.identity
        head = metric.head
        tail = metric.tail
        values = metric.values
        with_exemplars = metric.with_exemplars
        append = run.batch.points.append
        series_rows = run.batch.series
        complete = run.completion.complete
        encode = self._attributes.encode_sorted
        series_ids = self._series_ids
        lo = run.lo
        hi = run.hi
        service = scope.resource.service
        envelope = scope.envelope
        default_project = self._default_project
        for p, point in enumerate(points):
            try:
                time = point.time_unix_nano
                if time < lo or time > hi:
                    raise _bad_time("time_unix_nano", time, run)
                start = point.start_time_unix_nano
                if start > time:
                    raise RecordRejected(
                        "start after time",
                        f"start_time_unix_nano {start} is after time_unix_nano {time}",
                    )
                attributes, found = encode(point.attributes)
                exemplars = point.exemplars if with_exemplars else None
                trace_id = span_id = exemplars_json = None
                if exemplars:
                    exemplars_json, trace_id, span_id = self._exemplars(exemplars)
                kind_values = values(point)
                project, session, user = envelope(found, complete, time, default_project)
                series_id = series_ids.get((project, attributes, identity))
                if series_id is None:
                    series_id = _series_id(project, attributes, identity)
                    if len(series_ids) >= _SERIES_ID_CACHE:
                        series_ids.clear()
                    series_ids[project, attributes, identity] = series_id
                key = (project, series_id)
                known = series_rows.get(key)
                if known is None or time < known[-1]:
                    series_rows[key] = (project, series_id, *head, attributes, *tail, time)
                append(
                    (
                        project,
                        time,
                        time,
                        start,
                        series_id,
                        service,
                        trace_id,
                        span_id,
                        session,
                        user,
                        point.flags,
                        *kind_values,
                        exemplars_json,
                    )
                )
            except RecordRejected as e:
                run.rejections.add(e, f"{_metric_where(*metric.position)}, point {p}")

    def _exemplars(self, exemplars: Any) -> tuple[str, bytes | None, bytes | None]:
        """The exemplars as JSON, and the ids of the first one that has a trace id."""
        encode = self._encode
        first_trace_id = first_span_id = None
        parts = []
        for exemplar in exemplars:
            trace_id = exemplar.trace_id
            if trace_id:
                if len(trace_id) != 16:
                    raise _bad_id("exemplar trace_id", trace_id, 16, optional=True)
                if trace_id == _ZERO_TRACE_ID:
                    trace_id = b""
            span_id = exemplar.span_id
            if span_id and len(span_id) != 8:
                raise _bad_id("exemplar span_id", span_id, 8, optional=True)
            if trace_id and first_trace_id is None:
                first_trace_id = trace_id
                first_span_id = span_id or None
            which = exemplar.WhichOneof("value")
            if which == "as_int":
                value = str(exemplar.as_int)
            elif which == "as_double":
                value = scalar_text(finite(exemplar.as_double))
            else:
                value = "null"
            attributes = encode(exemplar.filtered_attributes)[0]
            parts.append(
                f'{{"time_unix_nano":{exemplar.time_unix_nano},"value":{value},'
                f'"trace_id":{_hex(trace_id)},"span_id":{_hex(span_id)},'
                f'"filtered_attributes":{attributes}}}'
            )
        return f"[{','.join(parts)}]", first_trace_id, first_span_id


# The kind-specific columns of a point row, from ``value`` to ``quantiles``.


def _number_values(point: Any) -> tuple[Any, ...]:
    which = point.WhichOneof("value")
    if which == "as_double":
        value, value_int = point.as_double, None
    elif which == "as_int":
        value_int = point.as_int
        value = float(value_int)
    else:
        value = value_int = None
    return (value, value_int, *_NONE_14)


def _histogram_values(point: Any) -> tuple[Any, ...]:
    bucket_counts = list(point.bucket_counts)
    bounds = list(point.explicit_bounds)
    if len(bucket_counts) != len(bounds) + 1 and (bucket_counts or bounds):
        raise RecordRejected(
            "invalid buckets",
            f"{len(bucket_counts)} bucket_counts for {len(bounds)} explicit_bounds "
            "(must be one more, or both empty)",
        )
    count = point.count
    if count > _MAX_BIGINT:
        raise _too_big("count", count)
    if bucket_counts and max(bucket_counts) > _MAX_BIGINT:
        raise _too_big("a bucket count", max(bucket_counts))
    return (
        None,
        None,
        count,
        point.sum if point.HasField("sum") else None,
        point.min if point.HasField("min") else None,
        point.max if point.HasField("max") else None,
        bucket_counts,
        bounds,
        *_NONE_8,
    )


def _exponential_values(point: Any) -> tuple[Any, ...]:
    positive = point.positive
    negative = point.negative
    count = point.count
    zero_count = point.zero_count
    positive_counts = list(positive.bucket_counts)
    negative_counts = list(negative.bucket_counts)
    if count | zero_count > _MAX_BIGINT:
        raise _too_big("count or zero_count", max(count, zero_count))
    largest = max(positive_counts + negative_counts, default=0)
    if largest > _MAX_BIGINT:
        raise _too_big("a bucket count", largest)
    return (
        None,
        None,
        count,
        point.sum if point.HasField("sum") else None,
        point.min if point.HasField("min") else None,
        point.max if point.HasField("max") else None,
        None,
        None,
        point.scale,
        zero_count,
        point.zero_threshold,
        positive.offset,
        positive_counts,
        negative.offset,
        negative_counts,
        None,
    )


def _summary_values(point: Any) -> tuple[Any, ...]:
    count = point.count
    if count > _MAX_BIGINT:
        raise _too_big("count", count)
    quantiles = json_text([[finite(q.quantile), finite(q.value)] for q in point.quantile_values])
    return (None, None, count, point.sum, *_NONE_11, quantiles)


_NONE_8: Final = (None,) * 8
_NONE_11: Final = (None,) * 11
_NONE_14: Final = (None,) * 14
_POINT_VALUES: Final[dict[str, Callable[[Any], tuple[Any, ...]]]] = {
    "gauge": _number_values,
    "sum": _number_values,
    "histogram": _histogram_values,
    "exponential_histogram": _exponential_values,
    "summary": _summary_values,
}


def _parse(cls: Any, data: bytes, what: str) -> Any:
    """``data`` parsed as the lazy ``cls``, or the record refused with the reason."""
    try:
        return cls.FromString(data)
    except DecodeError:
        descriptor = cls.DESCRIPTOR
        detail = salvage.explain(data, descriptor)
        reason = "invalid UTF-8" if "UTF-8" in detail else "malformed protobuf"
        raise RecordRejected(reason, f"{what}: {detail}") from None


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise RecordRejected("invalid UTF-8", f"invalid UTF-8 in {what}") from None


def _series_id(project: str, attributes: str, identity: str) -> int:
    """The series id documented at ``_ID_MASK``'s neighbours (see storage.model)."""
    digest = blake2b(f"{project}\x00{attributes}\x00{identity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _ID_MASK
