"""CreateChannel, ListChannels, UpdateChannel, DeleteChannel: where notifications go.

A channel is validated here field by field (errors name ``channel.webhook.url``,
``channel.email.to[2]``, ...) and stored as the JSON of its kind's message. What may be a
secret is never answered and never audited: a webhook's header values, a Slack
incoming-webhook URL's path (its credential) and the user-info of any URL read
``[REDACTED]``. ``UpdateChannel`` compares the stored channel with the new one, secrets
included, so it can say whether anything changed (and which fields) without saying what
the secret was; that is how ``otlpd rules apply`` stays idempotent without reading
secrets back.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from alerting import convert
from alerting.ids import looks_like_id, new_id
from alerting.proto import pb
from otlpd.errors import AlreadyExists, BadArgument, Conflict, FailedPrecondition, NotFound
from query import arguments, tokens
from query.scope import Caller
from storage.postgres import alert_config as store
from storage.postgres.alert_config import ChannelRecord
from storage.postgres.alert_store import AlertStore

REDACTED: Final = "[REDACTED]"
MAX_NAME_CHARS: Final = 200
MAX_URL_CHARS: Final = 2000
MAX_HEADERS: Final = 32
MAX_HEADER_VALUE_CHARS: Final = 4096
MAX_RECIPIENTS: Final = 50
LIST_DEFAULT_LIMIT: Final = 100
# RFC 9110 field names are tokens; these few are the transport's, not the caller's.
_TOKEN: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RESERVED_HEADERS: Final = frozenset({"content-length", "host", "transfer-encoding", "connection"})
# RFC 5322 addr-spec in its common form: dot-atom local part @ a host name.
_ADDRESS: Final = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_TOKEN_KIND: Final = "channels"


def name(value: str, field: str) -> str:
    """A rule's or channel's name: 1 to 200 characters, no control characters."""
    if not value.strip():
        raise BadArgument(field, "must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise BadArgument(field, f"must be at most {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise BadArgument(field, "must not contain control characters")
    return value


def _url(value: str, field: str, *, schemes: tuple[str, ...]) -> str:
    if not value:
        raise BadArgument(field, "is required")
    if len(value) > MAX_URL_CHARS:
        raise BadArgument(field, f"must be at most {MAX_URL_CHARS} characters")
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in value):
        raise BadArgument(field, "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise BadArgument(field, f"is not a URL: {exc}") from exc
    if parts.scheme not in schemes:
        raise BadArgument(field, f"must be an {' or '.join(s + '://' for s in schemes)} URL")
    if not parts.hostname:
        raise BadArgument(field, "must name a host")
    del port
    return value


def _headers(headers: dict[str, str], field: str) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise BadArgument(field, f"at most {MAX_HEADERS} headers")
    for key, value in headers.items():
        if not _TOKEN.fullmatch(key):
            raise BadArgument(f"{field}[{key!r}]", "is not an HTTP header name")
        if key.lower() in _RESERVED_HEADERS:
            raise BadArgument(f"{field}[{key!r}]", "is set by the sender itself")
        if len(value) > MAX_HEADER_VALUE_CHARS:
            raise BadArgument(f"{field}[{key!r}]", f"at most {MAX_HEADER_VALUE_CHARS} characters")
        if any(unicodedata.category(c) == "Cc" and c != "\t" for c in value):
            raise BadArgument(f"{field}[{key!r}]", "must not contain control characters")
    return dict(headers)


def _recipients(to: list[str], field: str) -> list[str]:
    if not to:
        raise BadArgument(field, "at least one address is required")
    if len(to) > MAX_RECIPIENTS:
        raise BadArgument(field, f"at most {MAX_RECIPIENTS} addresses")
    for i, address in enumerate(to):
        if len(address) > 254 or not _ADDRESS.fullmatch(address):
            raise BadArgument(f"{field}[{i}]", f"{address!r} is not an e-mail address")
    return list(to)


def validate(channel: pb.Channel, field: str = "channel") -> tuple[str, str, dict[str, Any]]:
    """``(name, kind, config)`` of a valid channel; ``BadArgument`` naming the field."""
    checked = name(channel.name, f"{field}.name")
    kind = channel.WhichOneof("kind")
    if kind == "webhook":
        url = _url(channel.webhook.url, f"{field}.webhook.url", schemes=("http", "https"))
        headers = _headers(dict(channel.webhook.headers), f"{field}.webhook.headers")
        config: dict[str, Any] = {"url": url, "headers": headers}
    elif kind == "slack":
        config = {"url": _url(channel.slack.url, f"{field}.slack.url", schemes=("https",))}
    elif kind == "email":
        config = {"to": _recipients(list(channel.email.to), f"{field}.email.to")}
    else:
        raise BadArgument(field, "one of webhook, slack or email is required")
    return checked, kind, config


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def masked(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it may be shown: secrets replaced by ``[REDACTED]``."""
    if kind == "webhook":
        return {
            "url": _without_userinfo(config["url"]),
            "headers": dict.fromkeys(config.get("headers", {}), REDACTED),
        }
    if kind == "slack":
        parts = urlsplit(config["url"])
        host = parts.netloc.rsplit("@", 1)[-1]
        return {"url": urlunsplit((parts.scheme, host, f"/{REDACTED}", "", ""))}
    return {"to": list(config["to"])}


def to_proto(record: ChannelRecord) -> pb.Channel:
    """The channel as answered: secrets masked."""
    channel = pb.Channel(id=record.channel_id, name=record.name, version=record.version)
    shown = masked(record.kind, record.config)
    if record.kind == "webhook":
        channel.webhook.url = shown["url"]
        channel.webhook.headers.update(shown["headers"])
    elif record.kind == "slack":
        channel.slack.url = shown["url"]
    else:
        channel.email.to.extend(shown["to"])
    convert.set_time(channel.created_at, record.created_at)
    convert.set_time(channel.updated_at, record.updated_at)
    return channel


def changed_fields(
    before: tuple[str, str, dict[str, Any]], after: tuple[str, str, dict[str, Any]]
) -> list[str]:
    """The fields of ``after`` that differ from ``before``: names, never values."""
    (old_name, old_kind, old), (new_name, new_kind, new) = before, after
    fields = ["name"] if old_name != new_name else []
    if old_kind != new_kind:
        return [*fields, new_kind]
    for key in sorted(set(old) | set(new)):
        if key == "headers":
            old_h, new_h = old.get(key, {}), new.get(key, {})
            fields += [
                f"{new_kind}.headers.{h}"
                for h in sorted(set(old_h) | set(new_h))
                if old_h.get(h) != new_h.get(h)
            ]
        elif old.get(key) != new.get(key):
            fields.append(f"{new_kind}.{key}")
    return fields


def _audited(record: ChannelRecord | tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(record, ChannelRecord):
        channel_name, kind, config = record.name, record.kind, record.config
    else:
        channel_name, kind, config = record
    return {"name": channel_name, kind: masked(kind, config)}


class ChannelCalls:
    """The channel RPCs over the alerting store."""

    def __init__(self, store: AlertStore, max_limit: int) -> None:
        self._store = store
        self._max_limit = max_limit

    async def create(self, caller: Caller, request: pb.CreateChannelRequest) -> Any:
        channel_name, kind, config = validate(request.channel)
        project = caller.project
        if request.validate_only:
            async with self._store.transaction() as conn:
                if await store.name_taken(conn, "channels", project, channel_name, ""):
                    raise AlreadyExists(f"channel.name: a channel named {channel_name!r} exists")
                now = await store.now(conn)
            record = ChannelRecord("", channel_name, kind, config, 1, now, now)
            return pb.CreateChannelResponse(channel=to_proto(record))
        async with self._store.transaction() as conn:
            created = await store.insert_channel(
                conn, project, channel_id=new_id(), name=channel_name, kind=kind, config=config
            )
            if created is None:
                raise AlreadyExists(f"channel.name: a channel named {channel_name!r} exists")
            await store.audit(
                conn,
                project,
                actor=caller.actor,
                action="channel.create",
                subject=created.channel_id,
                before=None,
                after=_audited(created),
            )
        return pb.CreateChannelResponse(channel=to_proto(created))

    async def list(self, caller: Caller, request: pb.ListChannelsRequest) -> Any:
        limit = arguments.limit(request.limit, default=LIST_DEFAULT_LIMIT, maximum=self._max_limit)
        bound_to = tokens.fingerprint(caller.project, request)
        cursor = tokens.decode(request.page_token, _TOKEN_KIND, bound_to)
        after = None if cursor is None else str(cursor[0])
        async with self._store.transaction() as conn:
            found = await store.channels(conn, caller.project, after_name=after, limit=limit + 1)
        response = pb.ListChannelsResponse(channels=[to_proto(c) for c in found[:limit]])
        if len(found) > limit:
            response.next_page_token = tokens.encode(_TOKEN_KIND, bound_to, [found[limit - 1].name])
        return response

    async def update(self, caller: Caller, request: pb.UpdateChannelRequest) -> Any:
        wanted = validate(request.channel)
        channel_id, version = request.channel.id, request.channel.version
        if not channel_id:
            raise BadArgument("channel.id", "is required")
        if version <= 0:
            raise BadArgument("channel.version", "is required: the version the change is based on")
        project = caller.project
        async with self._store.transaction() as conn:
            current = (
                await store.channel(conn, project, channel_id, lock=True)
                if looks_like_id(channel_id)
                else None
            )
            if current is None:
                raise NotFound(f"no channel with id {channel_id!r}")
            if current.version != version:
                raise Conflict(
                    f"channel.version: {version} is not the current version ({current.version}); "
                    "read the channel again"
                )
            fields = changed_fields((current.name, current.kind, current.config), wanted)
            if not fields:
                return pb.UpdateChannelResponse(channel=to_proto(current), changed=False)
            if "name" in fields and await store.name_taken(
                conn, "channels", project, wanted[0], channel_id
            ):
                raise AlreadyExists(f"channel.name: a channel named {wanted[0]!r} exists")
            if request.validate_only:
                preview = ChannelRecord(
                    channel_id, *wanted, current.version + 1, current.created_at, current.updated_at
                )
                return pb.UpdateChannelResponse(
                    channel=to_proto(preview), changed=True, changed_fields=fields
                )
            updated = await store.update_channel(
                conn, project, channel_id=channel_id, name=wanted[0], kind=wanted[1],
                config=wanted[2],
            )  # fmt: skip
            await store.audit(
                conn,
                project,
                actor=caller.actor,
                action="channel.update",
                subject=channel_id,
                before=_audited(current),
                after=_audited(updated),
            )
        return pb.UpdateChannelResponse(
            channel=to_proto(updated), changed=True, changed_fields=fields
        )

    async def delete(self, caller: Caller, request: pb.DeleteChannelRequest) -> Any:
        project = caller.project
        async with self._store.transaction() as conn:
            current = (
                await store.channel(conn, project, request.id, lock=True)
                if looks_like_id(request.id)
                else None
            )
            if current is None:
                raise NotFound(f"no channel with id {request.id!r}")
            users = await store.rules_using(conn, project, request.id)
            if users:
                shown = ", ".join(repr(u) for u in users[:10])
                raise FailedPrecondition(
                    f"channel {current.name!r} is used by rule(s) {shown}: "
                    "remove it from them first"
                )
            await store.delete_channel(conn, project, request.id)
            await store.audit(
                conn,
                project,
                actor=caller.actor,
                action="channel.delete",
                subject=request.id,
                before=_audited(current),
                after=None,
            )
        return pb.DeleteChannelResponse()
