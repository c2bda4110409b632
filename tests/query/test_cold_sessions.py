"""GetSessionTimeline over the cold tier: a session whose spans, logs and exemplars were
sent through the OTLP receiver 50 h ago (and some now) reads the same after its old hour
is tiered, page by page, and still when its ``sessions`` row is gone."""

from __future__ import annotations

import os
import time
from typing import Any

import grpc
import psycopg
import pytest

from query.proto import pb
from tests.query.conftest import OLD_HOUR_NS, ColdTierServer, without_ids
from tests.query.test_sessions import log, send_gauge, timeline
from tests.query.test_traces import MS, S, send_logs, send_spans

SESSION = "sess-cold-1"


def _send(server: ColdTierServer, *, hot_too: bool = True) -> None:
    at = OLD_HOUR_NS + 120 * 10**9
    resource = {"session.id": SESSION, "user.id": "ada"}
    trace = os.urandom(16)
    send_spans(
        server.server,
        [S(trace, f"step {i}", at + i * 10 * MS) for i in range(6)],
        service="web",
        resource=resource,
    )
    send_logs(
        server.server,
        [log(at + i * 10 * MS + MS, f"did step {i}") for i in range(6)],
        service="web",
        resource=resource,
    )
    send_logs(  # the same microsecond as the first log: the tiers' tiebreak
        server.server, [log(at + MS, "same time, other resource")], service="api", resource=resource
    )
    send_gauge(
        server.server,
        "checkout.latency",
        at + 35 * MS,
        12.5,
        {"service.name": "web", **resource},
        trace_id=trace,
        span_id=os.urandom(8),
    )
    if hot_too:
        now = time.time_ns()
        send_logs(server.server, [log(now, "came back today")], service="web", resource=resource)


def _pages(server: ColdTierServer, limit: int) -> list[Any]:
    return [without_ids(item) for item in timeline(server.query, SESSION, limit=limit)]


def _time(item: Any) -> int:
    return item.time.ToNanoseconds()  # type: ignore[no-any-return]


def _order(item: Any) -> tuple[int, bytes]:
    return _time(item), item.SerializeToString()


def _session(server: ColdTierServer) -> pb.Session:
    answer = server.query.GetSessionTimeline(pb.GetSessionTimelineRequest(session_id=SESSION))
    return answer.session  # type: ignore[no-any-return]


def test_a_session_reads_the_same_after_tiering_page_by_page(cold_tier: ColdTierServer) -> None:
    _send(cold_tier)
    before = {limit: _pages(cold_tier, limit) for limit in (1, 4, 100)}
    assert len(before[100]) == 15
    assert before[1] == before[4] == before[100]
    session_before = _session(cold_tier)

    moved = cold_tier.tier()
    assert moved.objects == 3  # spans, logs and metric points of the old hour

    after = {limit: _pages(cold_tier, limit) for limit in (1, 4, 100)}
    # Pages cut anywhere, even between the two records of one microsecond, neither repeat
    # nor skip; the tiers may order those two differently (each tier's own tiebreak).
    assert after[1] == after[4] == after[100]
    assert sorted(after[100], key=_order) == sorted(before[100], key=_order)
    assert [_time(i) for i in after[100]] == [_time(i) for i in before[100]]
    assert _session(cold_tier) == session_before
    answer = cold_tier.query.GetSessionTimeline(pb.GetSessionTimelineRequest(session_id=SESSION))
    assert answer.cold.objects == 3


def test_a_pruned_session_row_is_described_from_its_cold_items(
    cold_tier: ColdTierServer,
) -> None:
    _send(cold_tier, hot_too=False)
    cold_tier.tier()
    with psycopg.connect(cold_tier.server.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM sessions WHERE session_id = %s", (SESSION,))
    session = _session(cold_tier)
    assert (session.user_id, list(session.services)) == ("ada", ["api", "web"])
    assert session.first_seen.ToNanoseconds() == OLD_HOUR_NS + 120 * 10**9
    assert len(_pages(cold_tier, 5)) == 14
    with pytest.raises(grpc.RpcError) as caught:  # another project has no such session
        cold_tier.query.GetSessionTimeline(
            pb.GetSessionTimelineRequest(session_id=SESSION),
            metadata=(("x-otlpd-project", "b"),),
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
