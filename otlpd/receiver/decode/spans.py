"""Spans to ``storage.model.SPAN_COLUMNS`` rows, with their events and links as JSON.

Span names, status messages and event names are masked like string attribute values
(``redaction``): they repeat, so each distinct one is masked once and remembered.
"""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any

from otlpd.receiver.anyvalue import AttributeEncoder
from otlpd.receiver.decode.checks import (
    MAX_INTEGER,
    MAX_SPAN_KIND,
    MAX_STATUS_CODE,
    NUL_ESCAPE,
    ZERO_SPAN_ID,
    ZERO_TRACE_ID,
    bad_enum,
    bad_id,
    hex_or_null,
    nul,
)
from otlpd.receiver.decode.state import Records, Run, Scope
from otlpd.receiver.rejections import RecordRejected


def decode_spans(run: Run, scope: Scope, i: int, j: int, spans: Records) -> None:
    """Appends a row per good span of one scope to ``run``; refuses the others."""
    shared = run.shared
    append = run.batch.spans.append
    complete = run.completion.complete
    encoder = run.attributes
    encode = encoder.encode
    dropped = encoder.dropped
    max_attributes = encoder.max_attributes
    mask = encoder.mask_name
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
    for k, s in spans:
        try:
            trace_id = s.trace_id
            if len(trace_id) != 16 or trace_id == ZERO_TRACE_ID:
                raise bad_id("trace_id", trace_id, 16)
            span_id = s.span_id
            if len(span_id) != 8 or span_id == ZERO_SPAN_ID:
                raise bad_id("span_id", span_id, 8)
            parent = s.parent_span_id
            if not parent or parent == ZERO_SPAN_ID:
                parent = None
            elif len(parent) != 8:
                raise bad_id("parent_span_id", parent, 8, optional=True)
            start = s.start_time_unix_nano
            if start < lo or start > hi:
                raise run.bad_time("start_time_unix_nano", start)
            end = s.end_time_unix_nano
            if end < start or end > hi:
                raise run.bad_end(start, end)
            kind = s.kind
            if not 0 <= kind <= MAX_SPAN_KIND:
                raise bad_enum("kind", kind, MAX_SPAN_KIND)
            status = s.status
            code = status.code
            if not 0 <= code <= MAX_STATUS_CODE:
                raise bad_enum("status code", code, MAX_STATUS_CODE)
            name = s.name
            trace_state = s.trace_state
            message = status.message
            if "\x00" in name or "\x00" in trace_state or "\x00" in message:
                raise nul("name, trace_state or status message")
            if mask is not None:
                name = mask(name)
                if message:
                    message = mask(message)
            raws = s.attributes
            attributes, found = encode(raws)
            events = s.events
            events_json = _events(encoder, events) if events else None
            links = s.links
            links_json = _links(encoder, links) if links else None
            dropped_attributes = s.dropped_attributes_count
            if len(raws) > max_attributes:
                dropped_attributes = dropped(raws, dropped_attributes)
            dropped_events = s.dropped_events_count
            dropped_links = s.dropped_links_count
            if dropped_attributes | dropped_events | dropped_links > MAX_INTEGER:
                dropped_attributes = min(dropped_attributes, MAX_INTEGER)
                dropped_events = min(dropped_events, MAX_INTEGER)
                dropped_links = min(dropped_links, MAX_INTEGER)
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
                    scope_dropped,
                )
            )
        except RecordRejected as e:
            run.rejections.add(e, f"resource {i}, scope {j}, span {k}")


def _events(encoder: AttributeEncoder, events: Any) -> str:
    encode = encoder.encode
    mask = encoder.mask_name
    max_attributes = encoder.max_attributes
    parts = []
    for event in events:
        name = event.name
        raws = event.attributes
        dropped = event.dropped_attributes_count
        if len(raws) > max_attributes:
            dropped = encoder.dropped(raws, dropped)
        parts.append(
            f'{{"time_unix_nano":{event.time_unix_nano},'
            f'"name":{encode_basestring(mask(name) if mask else name)},'
            f'"attributes":{encode(raws)[0]},'
            f'"dropped_attributes_count":{dropped}}}'
        )
    text = ",".join(parts)
    # Attribute fragments hold no NUL (the encoder refused them): only a name can.
    if NUL_ESCAPE in text and any("\x00" in event.name for event in events):
        raise nul("event name")
    return f"[{text}]"


def _links(encoder: AttributeEncoder, links: Any) -> str:
    encode = encoder.encode
    dropped = encoder.dropped
    parts = []
    for link in links:
        trace_id = link.trace_id
        if trace_id and len(trace_id) != 16:
            raise bad_id("link trace_id", trace_id, 16, optional=True)
        span_id = link.span_id
        if span_id and len(span_id) != 8:
            raise bad_id("link span_id", span_id, 8, optional=True)
        trace_state = link.trace_state
        if "\x00" in trace_state:
            raise nul("link trace_state")
        raws = link.attributes
        attributes = encode(raws)[0]
        parts.append(
            f'{{"trace_id":{hex_or_null(trace_id)},"span_id":{hex_or_null(span_id)},'
            f'"trace_state":{encode_basestring(trace_state)},"attributes":{attributes},'
            f'"dropped_attributes_count":{dropped(raws, link.dropped_attributes_count)},'
            f'"flags":{link.flags}}}'
        )
    return f"[{','.join(parts)}]"
