"""Log records to ``storage.model.LOG_COLUMNS`` rows, with their bodies as JSON (cut and
redacted by ``anyvalue.ValueRules.body``)."""

from __future__ import annotations

from otlpd.receiver.decode.checks import (
    MAX_INTEGER,
    MAX_SEVERITY,
    ZERO_SPAN_ID,
    ZERO_TRACE_ID,
    bad_enum,
    bad_id,
    nul,
)
from otlpd.receiver.decode.state import Records, Run, Scope
from otlpd.receiver.rejections import RecordRejected


def decode_logs(run: Run, scope: Scope, i: int, j: int, records: Records) -> None:
    """Appends a row per good log record of one scope to ``run``; refuses the others."""
    shared = run.shared
    append = run.batch.logs.append
    complete = run.completion.complete
    encoder = run.attributes
    encode = encoder.encode
    body_text = encoder.rules.body
    max_attributes = encoder.max_attributes
    max_body = shared.limits.max_body_bytes
    now = run.now
    lo = run.lo
    hi = run.hi
    resource = scope.resource
    service = resource.service
    resource_id = resource.id
    refer = resource.refer
    resources = run.batch.resources
    last_project: str | None = None  # of the last record stored: see Resource.refer
    scope_name = scope.name
    scope_version = scope.version
    scope_attributes = scope.attributes
    scope_schema_url = scope.schema_url
    scope_dropped = scope.dropped_attributes_count
    envelope = scope.envelope
    default_project = shared.default_project
    for k, r in records:
        try:
            time_unix_nano = r.time_unix_nano
            observed = r.observed_time_unix_nano
            time = time_unix_nano or observed or now
            if time < lo or time > hi:
                name = "time_unix_nano" if time_unix_nano else "observed_time_unix_nano"
                raise run.bad_time(name, time)
            if observed > hi:
                raise run.bad_time("observed_time_unix_nano", observed)
            trace_id = r.trace_id
            if not trace_id or trace_id == ZERO_TRACE_ID:
                trace_id = None
            elif len(trace_id) != 16:
                raise bad_id("trace_id", trace_id, 16, optional=True)
            span_id = r.span_id
            if not span_id or span_id == ZERO_SPAN_ID:
                span_id = None
            elif len(span_id) != 8:
                raise bad_id("span_id", span_id, 8, optional=True)
            severity = r.severity_number
            if not 0 <= severity <= MAX_SEVERITY:
                raise bad_enum("severity_number", severity, MAX_SEVERITY)
            severity_text = r.severity_text
            event_name = r.event_name
            if "\x00" in severity_text or "\x00" in event_name:
                raise nul("severity_text or event_name")
            body = r.body
            raws = r.attributes
            attributes, found = encode(raws)
            row_body = body_text(body, max_body) if body else None
            dropped = r.dropped_attributes_count
            if len(raws) > max_attributes:
                dropped = encoder.dropped(raws, dropped)
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
                    min(dropped, MAX_INTEGER),
                    resource_id,
                    scope_name,
                    scope_version,
                    scope_attributes,
                    scope_schema_url,
                    scope_dropped,
                )
            )
        except RecordRejected as e:
            run.rejections.add(e, f"resource {i}, scope {j}, log record {k}")
