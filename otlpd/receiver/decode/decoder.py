"""The request walk shared by the three signals: resources, scopes, and the salvage of a
request that does not parse as a whole. Records go to the signal's record decoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import DecodeError

from otlpd.envelope import NOTHING_FOUND, PROJECT, SERVICE, EnvelopeKeys, SessionCache
from otlpd.errors import InvalidRequest
from otlpd.receiver import messages, salvage
from otlpd.receiver.anyvalue import AttributeEncoder
from otlpd.receiver.decode.checks import MAX_INTEGER, nul
from otlpd.receiver.decode.limits import DecodeLimits
from otlpd.receiver.decode.logs import decode_logs
from otlpd.receiver.decode.metrics import decode_metrics
from otlpd.receiver.decode.policy import DEFAULT_POLICY, DecodePolicy
from otlpd.receiver.decode.spans import decode_spans
from otlpd.receiver.decode.state import (
    RecordDecoder,
    Resource,
    Run,
    Scope,
    Shared,
    not_allowed,
)
from otlpd.receiver.redaction import (
    DEFAULT_REDACTION,
    Count,
    Redaction,
    Redactor,
    ignore,
    normalized,
)
from otlpd.receiver.rejections import RecordRejected, Rejections
from storage.ids import resource_id
from storage.model import RowBatch

_METRIC_DATA_FIELDS: Final = (5, 7, 9, 10, 11)  # Metric.gauge ... Metric.summary


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
class _Signal:
    """How one signal's request is laid out, and who decodes its records."""

    name: str  # request message name, for errors
    noun: str
    plural: str
    request: Any  # lazy request class
    resources: str  # field of the request
    scopes: str  # field of a resource
    records: str  # field of a scope
    record_noun: str  # what the records of a scope are called in positions
    record: Any  # lazy record class, to parse records one by one in salvage
    decode: RecordDecoder


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
    decode_spans,
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
    decode_logs,
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
    decode_metrics,
)


class Decoder:
    """Decodes OTLP Export requests into row batches; one per process, any thread.

    ``redaction`` is applied to every value before it is stored (``redaction``);
    ``on_truncated`` and ``on_redacted`` count what was cut (``"attributes"``,
    ``"value"``, ``"body"``, ``"depth"``) and redacted (``"key"``, ``"pattern"``,
    ``"ip"``), so that the decoder knows nothing of where counts go.
    """

    def __init__(
        self,
        keys: EnvelopeKeys,
        limits: DecodeLimits,
        default_project: str,
        sessions: SessionCache,
        *,
        redaction: Redaction = DEFAULT_REDACTION,
        on_truncated: Count = ignore,
        on_redacted: Count = ignore,
    ) -> None:
        if not default_project or "\x00" in default_project:
            raise ValueError(f"default_project must be a non-empty text, got {default_project!r}")
        if len(default_project.encode()) > limits.max_project_bytes:
            raise ValueError(
                f"default_project must be at most {limits.max_project_bytes} bytes, "
                f"got {len(default_project.encode())}"
            )
        envelope_keys = {normalized(k) for k in keys.slots()}
        both = sorted(redaction.keys_named() & envelope_keys)
        if both:
            raise ValueError(f"envelope key {both[0]!r} cannot be redacted or anonymized")
        self._sessions = sessions
        self._limits = limits
        self._keys = keys
        self._redaction = redaction
        self._on_truncated = on_truncated
        self._on_redacted = on_redacted
        self._anonymizing = self._encoder(anonymize_ip=True)
        # Fragments are cached per raw bytes, so a caller that keeps client IPs needs a
        # cache of its own: made on first use, bounded like the first one. Where nothing
        # is anonymized, both are one.
        anonymizes = redaction.anonymize_ip and bool(redaction.ip_keys)
        self._keeping: AttributeEncoder | None = None if anonymizes else self._anonymizing
        self._shared = Shared(limits, default_project)

    def _encoder(self, anonymize_ip: bool) -> AttributeEncoder:
        limits = self._limits
        return AttributeEncoder(
            self._keys,
            limits.max_attribute_value_bytes,
            envelope_limits=limits.envelope_limits(),
            max_attributes=limits.max_attributes,
            max_depth=limits.max_attribute_depth,
            redactor=Redactor(self._redaction, anonymize_ip, self._on_redacted),
            truncated=self._on_truncated,
        )

    def _attributes(self, policy: DecodePolicy) -> AttributeEncoder:
        if policy.anonymize_ip:
            return self._anonymizing
        keeping = self._keeping
        if keeping is None:
            # Two threads may both make one; the last assigned stays, the other is dropped.
            keeping = self._keeping = self._encoder(anonymize_ip=False)
        return keeping

    def traces(self, payload: bytes, now_ns: int, policy: DecodePolicy = DEFAULT_POLICY) -> Decoded:
        """Decodes a serialized ``ExportTraceServiceRequest``; ``now_ns`` is the server clock,
        ``policy`` the caller's (``DecodePolicy``)."""
        return self._decode(_TRACES, payload, now_ns, policy)

    def logs(self, payload: bytes, now_ns: int, policy: DecodePolicy = DEFAULT_POLICY) -> Decoded:
        """Decodes a serialized ``ExportLogsServiceRequest``."""
        return self._decode(_LOGS, payload, now_ns, policy)

    def metrics(
        self, payload: bytes, now_ns: int, policy: DecodePolicy = DEFAULT_POLICY
    ) -> Decoded:
        """Decodes a serialized ``ExportMetricsServiceRequest``."""
        return self._decode(_METRICS, payload, now_ns, policy)

    # -- request, resources, scopes -----------------------------------------------------

    def _decode(
        self, signal: _Signal, payload: bytes, now_ns: int, policy: DecodePolicy
    ) -> Decoded:
        rejections = Rejections(signal.noun, signal.plural)
        attributes = self._attributes(policy)
        run = Run(
            self._shared,
            self._sessions,
            rejections,
            now_ns,
            attributes=attributes,
            project=policy.project,
        )
        request = signal.request()
        try:
            request.ParseFromString(payload)
        except DecodeError:
            self._salvage(run, signal, payload)
            return _result(run)
        decode_records = signal.decode
        for i, resource_x in enumerate(getattr(request, signal.resources)):
            scopes = getattr(resource_x, signal.scopes)
            try:
                resource = self._resource(run, resource_x.resource, resource_x.schema_url)
            except RecordRejected as e:
                count = sum(_count(signal, getattr(s, signal.records)) for s in scopes)
                run.rejections.add(e, f"resource {i}", count)
                continue
            for j, scope_x in enumerate(scopes):
                records = getattr(scope_x, signal.records)
                try:
                    scope = self._scope(run, resource, scope_x.scope, scope_x.schema_url)
                except RecordRejected as e:
                    run.rejections.add(e, f"resource {i}, scope {j}", _count(signal, records))
                    continue
                decode_records(run, scope, i, j, enumerate(records))
        return _result(run)

    def _resource(self, run: Run, resource: Any, schema_url: str) -> Resource:
        # Sorted, so that a series and a resource_id are the same whatever order the
        # resource attributes came in.
        encoder = run.attributes
        raws = resource.attributes
        attributes, found = encoder.encode_sorted(raws)
        if "\x00" in schema_url:
            raise nul("resource schema_url")
        found = found or NOTHING_FOUND
        if run.project is not None and found[PROJECT] not in (None, run.project):
            raise not_allowed(run.project, "resource")
        dropped = min(encoder.dropped(raws, resource.dropped_attributes_count), MAX_INTEGER)
        return Resource(
            attributes,
            schema_url or None,
            found[SERVICE],
            found,
            dropped,
            resource_id(attributes, schema_url, dropped),
        )

    def _scope(self, run: Run, resource: Resource, scope: Any, schema_url: str) -> Scope:
        name = scope.name
        version = scope.version
        if "\x00" in name or "\x00" in version or "\x00" in schema_url:
            raise nul("scope name, version or schema_url")
        attributes = None
        found = NOTHING_FOUND
        raws = scope.attributes
        encoder = run.attributes
        if raws:
            attributes, scope_found = encoder.encode_sorted(raws)
            found = scope_found or NOTHING_FOUND
        inherited = resource.found
        locked = run.project
        if locked is not None and found[PROJECT] not in (None, locked):
            raise not_allowed(locked, "scope")
        return Scope(
            resource,
            name or None,
            version or None,
            attributes,
            schema_url or None,
            min(encoder.dropped(raws, scope.dropped_attributes_count), MAX_INTEGER),
            found[0] or inherited[0],
            found[1] or inherited[1],
            locked or found[2] or inherited[2],
            locked is not None,
        )

    # -- salvage --------------------------------------------------------------------------

    def _salvage(self, run: Run, signal: _Signal, payload: bytes) -> None:
        """Decodes what can be parsed of a request that does not parse as a whole."""
        try:
            parts = salvage.split(payload)
        except salvage.WireError as e:
            raise InvalidRequest(f"payload is not a valid {signal.name}: {e}") from None
        add = run.rejections.add
        decode_records = signal.decode
        for part in parts:
            i = part.index
            try:
                resource = self._resource(
                    run,
                    _parse(messages.Resource, part.resource, "resource"),
                    _text(part.schema_url, "resource schema_url"),
                )
            except RecordRejected as e:
                count = sum(_count_raw(signal, s.records) for s in part.scopes)
                add(e, f"resource {i}", count)
                continue
            if part.error is not None:
                add(RecordRejected("malformed protobuf", part.error), f"resource {i}")
            for scope_part in part.scopes:
                j = scope_part.index
                try:
                    scope = self._scope(
                        run,
                        resource,
                        _parse(messages.Scope, scope_part.scope, "scope"),
                        _text(scope_part.schema_url, "scope schema_url"),
                    )
                except RecordRejected as e:
                    add(e, f"resource {i}, scope {j}", _count_raw(signal, scope_part.records))
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
                        add(e, where, _count_raw(signal, [data]))
                decode_records(run, scope, i, j, records)


def _result(run: Run) -> Decoded:
    run.completion.finish()
    return Decoded(
        run.batch, run.rejections.count, run.rejections.message(), run.completion.unresolved
    )


def _count(signal: _Signal, records: Any) -> int:
    if signal is _METRICS:
        return sum(_points(m) for m in records)
    return len(records)


def _count_raw(signal: _Signal, records: list[bytes]) -> int:
    if signal is _METRICS:
        return sum(_raw_points(m) for m in records)
    return len(records)


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
