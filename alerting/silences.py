"""CreateSilence, ListSilences, DeleteSilence: Alertmanager's silences, per project.

A silence mutes the notifications of the alerts its matchers match (``alerting.matchers``)
between its start and end. As in Alertmanager, a silence is never deleted: DeleteSilence
expires it now, and it is listed as expired afterwards. A silence that every alert would
match (every matcher matches the empty string) is refused, as Alertmanager refuses it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from alerting import convert, matchers
from alerting.ids import looks_like_id, new_id
from alerting.proto import pb
from otlpd.errors import BadArgument, NotFound
from query import arguments, tokens
from query.scope import Caller
from storage.postgres import alert_config as store
from storage.postgres.alert_config import SilenceRecord
from storage.postgres.alert_store import AlertStore

MAX_COMMENT_CHARS: Final = 1000
MAX_CREATOR_CHARS: Final = 200
MAX_LENGTH: Final = timedelta(days=366)
LIST_DEFAULT_LIMIT: Final = 100
_TOKEN_KIND: Final = "silences"
_STATES: Final = {
    pb.SILENCE_STATE_PENDING: "pending",
    pb.SILENCE_STATE_ACTIVE: "active",
    pb.SILENCE_STATE_EXPIRED: "expired",
}


def state(record: SilenceRecord, now: datetime) -> int:
    """The silence's state at ``now``."""
    if record.ends_at <= now:
        return pb.SILENCE_STATE_EXPIRED
    if record.starts_at > now:
        return pb.SILENCE_STATE_PENDING
    return pb.SILENCE_STATE_ACTIVE


def to_proto(record: SilenceRecord, now: datetime) -> pb.Silence:
    silence = pb.Silence(
        id=record.silence_id,
        matchers=[m.to_proto() for m in matchers.from_json(record.matchers)],
        comment=record.comment,
        created_by=record.created_by,
        state=state(record, now),  # type: ignore[arg-type]
    )
    convert.set_time(silence.start_time, record.starts_at)
    convert.set_time(silence.end_time, record.ends_at)
    convert.set_time(silence.created_at, record.created_at)
    return silence


def audited(record: SilenceRecord) -> dict[str, Any]:
    return {
        "matchers": record.matchers,
        "start_time": record.starts_at.isoformat(),
        "end_time": record.ends_at.isoformat(),
        "comment": record.comment,
        "created_by": record.created_by,
    }


class SilenceCalls:
    """The silence RPCs over the alerting store."""

    def __init__(self, store: AlertStore, max_limit: int) -> None:
        self._store = store
        self._max_limit = max_limit

    async def create(self, caller: Caller, request: pb.CreateSilenceRequest) -> Any:
        wanted = request.silence
        found = matchers.from_proto(wanted.matchers, "silence.matchers", required=True)
        if matchers.matches_everything(found):
            raise BadArgument(
                "silence.matchers",
                "match every alert: at least one must not match the empty string",
            )
        comment = arguments.text(wanted.comment, "silence.comment", max_chars=MAX_COMMENT_CHARS)
        if not comment.strip():
            raise BadArgument("silence.comment", "must say why")
        creator = arguments.text(
            wanted.created_by or caller.actor, "silence.created_by", max_chars=MAX_CREATOR_CHARS
        )
        if not wanted.HasField("end_time"):
            raise BadArgument("silence.end_time", "is required")
        arguments.timestamp_ns(wanted.end_time, "silence.end_time")
        ends = convert.to_datetime(wanted.end_time)
        starts = None
        if wanted.HasField("start_time"):
            arguments.timestamp_ns(wanted.start_time, "silence.start_time")
            starts = convert.to_datetime(wanted.start_time)
        async with self._store.transaction() as conn:
            now = await store.now(conn)
            if ends <= (starts or now):
                raise BadArgument("silence.end_time", "must be after the start and in the future")
            if ends <= now:
                raise BadArgument("silence.end_time", "must be in the future")
            if ends - now > MAX_LENGTH:
                raise BadArgument("silence.end_time", "must be within a year from now")
            created = await store.insert_silence(
                conn,
                caller.project,
                silence_id=new_id(),
                matchers=matchers.to_json(found),
                starts_at=starts,
                ends_at=ends,
                comment=comment,
                created_by=creator,
            )
            await store.audit(
                conn,
                caller.project,
                actor=caller.actor,
                action="silence.create",
                subject=created.silence_id,
                before=None,
                after=audited(created),
            )
        return pb.CreateSilenceResponse(silence=to_proto(created, now))

    async def list(self, caller: Caller, request: pb.ListSilencesRequest) -> Any:
        limit = arguments.limit(request.limit, default=LIST_DEFAULT_LIMIT, maximum=self._max_limit)
        states = []
        for i, value in enumerate(request.states):
            if value not in _STATES:
                raise BadArgument(f"states[{i}]", f"unknown silence state {value}")
            states.append(_STATES[value])
        bound_to = tokens.fingerprint(caller.project, request)
        cursor = tokens.decode(request.page_token, _TOKEN_KIND, bound_to)
        before = None
        if cursor is not None:
            try:
                before = (datetime.fromisoformat(str(cursor[0])), str(cursor[1]))
            except (IndexError, ValueError) as exc:
                raise BadArgument("page_token", "is not a token this server issued") from exc
        async with self._store.transaction() as conn:
            now = await store.now(conn)
            found = await store.list_silences(
                conn, caller.project, states=states, before=before, limit=limit + 1
            )
        response = pb.ListSilencesResponse(silences=[to_proto(s, now) for s in found[:limit]])
        if len(found) > limit:
            last = found[limit - 1]
            response.next_page_token = tokens.encode(
                _TOKEN_KIND, bound_to, [last.created_at.isoformat(), last.silence_id]
            )
        return response

    async def delete(self, caller: Caller, request: pb.DeleteSilenceRequest) -> Any:
        project = caller.project
        async with self._store.transaction() as conn:
            current = (
                await store.silence(conn, project, request.id, lock=True)
                if looks_like_id(request.id)
                else None
            )
            if current is None:
                raise NotFound(f"no silence with id {request.id!r}")
            now = await store.now(conn)
            if current.ends_at <= now:
                return pb.DeleteSilenceResponse(silence=to_proto(current, now))
            expired = await store.expire_silence(conn, project, request.id)
            await store.audit(
                conn,
                project,
                actor=caller.actor,
                action="silence.expire",
                subject=request.id,
                before=audited(current),
                after=audited(expired),
            )
        return pb.DeleteSilenceResponse(silence=to_proto(expired, now))
