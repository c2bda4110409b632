"""Log RPCs over the cold tier: records sent through the OTLP receiver 50 h ago, tiered to
Parquet, answer SearchLogs, GetLogVolume and GetLogContext as they did from PostgreSQL."""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
from google.protobuf import duration_pb2, timestamp_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from query.proto import pb
from tests.query.conftest import HOUR_NS, OLD_HOUR_NS, ColdTierServer, without_ids
from tests.query.test_traces import attrs, send_logs

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 10**9, nanos=ns % 10**9)


def _record(at: int, body: Any, severity: int = 9, **fields: Any) -> logs_pb2.LogRecord:
    record = logs_pb2.LogRecord(
        time_unix_nano=at,
        severity_number=severity,
        attributes=attrs(fields.pop("attributes", {})),
        **fields,
    )
    if isinstance(body, dict):
        record.body.kvlist_value.values.extend(attrs(body))
    else:
        record.body.string_value = body
    return record


def _send_old_and_new(server: ColdTierServer) -> None:
    """Records of two services 50 h back (and a few now), bodies that exercise every way
    of matching: plain ASCII, non-ASCII, escaped characters, a structured body."""
    at = OLD_HOUR_NS + 600 * 10**9
    checkout = [
        _record(at + i * 10**9, f"payment failed for order {i}", 17 if i % 3 == 0 else 9)
        for i in range(30)
    ]
    checkout += [
        _record(at + 40 * 10**9, "Größe über alles: payment declined", 13),
        _record(at + 41 * 10**9, 'quoted "payment"\nfailed\ttoday', 9),
        _record(at + 42 * 10**9, {"event": "payment failed", "code": 402}, 17),
        _record(
            at + 43 * 10**9,
            "with trace",
            9,
            trace_id=TRACE,
            span_id=SPAN,
            attributes={"user.id": "u-7", "session.id": "sess-9", "tier": "gold"},
        ),
        _record(at + 44 * 10**9, "payments were refunded", 9, attributes={"retries": 3}),
    ]
    send_logs(server.server, checkout, service="checkout")
    send_logs(
        server.server,
        [_record(at + i * 10**9 + 500_000, f"cart updated item {i}", 9) for i in range(20)],
        service="cart",
    )
    now = time.time_ns()
    send_logs(
        server.server,
        [_record(now - i * 10**6, f"payment failed live {i}", 17) for i in range(5)],
        service="checkout",
    )


REQUESTS: list[dict[str, Any]] = [
    {},
    {"q": "payment"},
    {"q": "payment failed"},
    {"q": '"payment failed"'},
    {"q": "pay*"},
    {"q": "über"},
    {"q": "payment", "service": "cart"},
    {"service": "cart"},
    {"min_severity": 17},
    {"trace_id": TRACE},
    {"span_id": SPAN},
    {"session_id": "sess-9"},
    {"user_id": "u-7"},
    {"attributes": [pb.AttributeFilter(key="tier", value="gold")]},
    {"attributes": [pb.AttributeFilter(key="retries", value="3")]},
    {"attributes": [pb.AttributeFilter(key="tier", value="silver")]},
    {"q": "nosuchword"},
]


def _all_pages(server: ColdTierServer, limit: int, **filter_fields: Any) -> list[pb.LogRecord]:
    window = {"start_time": _ts(OLD_HOUR_NS - HOUR_NS), "end_time": _ts(time.time_ns() + 10**9)}
    records: list[pb.LogRecord] = []
    token = ""
    while True:
        answer = server.query.SearchLogs(
            pb.SearchLogsRequest(
                filter=pb.LogFilter(**filter_fields), limit=limit, page_token=token, **window
            )
        )
        records.extend(answer.records)
        token = answer.next_page_token
        if not token:
            return records


def _volume(server: ColdTierServer, **filter_fields: Any) -> pb.GetLogVolumeResponse:
    answer: pb.GetLogVolumeResponse = server.query.GetLogVolume(
        pb.GetLogVolumeRequest(
            start_time=_ts(OLD_HOUR_NS),
            end_time=_ts(OLD_HOUR_NS + HOUR_NS),
            step=duration_pb2.Duration(seconds=300),
            filter=pb.LogFilter(**filter_fields),
        )
    )
    return answer


def _old_partitions(url: str) -> list[str]:
    name = "logs_p" + time.strftime("%Y%m%dt%H00", time.gmtime(OLD_HOUR_NS / 1e9))
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT relname FROM pg_class WHERE relname = %s", (name,)).fetchall()
    return [str(r[0]) for r in rows]


def test_every_log_answer_is_the_same_after_tiering(cold_tier: ColdTierServer) -> None:
    _send_old_and_new(cold_tier)
    before_pages = {
        i: [without_ids(r) for r in _all_pages(cold_tier, 7, **request)]
        for i, request in enumerate(REQUESTS)
    }
    before_volume = {i: without_ids(_volume(cold_tier, **r)) for i, r in enumerate(REQUESTS)}
    assert len(before_pages[0]) == 60
    assert [len(before_pages[i]) for i in (1, 5, 9, 15, 16)] == [38, 1, 1, 0, 0]
    assert _old_partitions(cold_tier.server.database_url)

    moved = cold_tier.tier()
    assert moved.objects == 1 and moved.rows == 55  # one project, one hour of logs
    assert not _old_partitions(cold_tier.server.database_url)
    window = {"start_time": _ts(OLD_HOUR_NS), "end_time": _ts(OLD_HOUR_NS + HOUR_NS)}
    first = cold_tier.query.SearchLogs(pb.SearchLogsRequest(**window)).cold
    assert (first.objects, first.row_groups) == (1, 1) and first.bytes > 0

    for i, request in enumerate(REQUESTS):
        after = [without_ids(r) for r in _all_pages(cold_tier, 7, **request)]
        assert after == before_pages[i], request
        assert without_ids(_volume(cold_tier, **request)) == before_volume[i], request
    again = cold_tier.query.SearchLogs(pb.SearchLogsRequest(**window)).cold
    assert (again.objects, again.row_groups, again.bytes) == (1, 1, 0)  # from the cache


def test_a_page_token_crosses_from_hot_to_cold_without_gaps_or_repeats(
    cold_tier: ColdTierServer,
) -> None:
    _send_old_and_new(cold_tier)
    cold_tier.tier()
    everything = _all_pages(cold_tier, 1000, q="payment")
    paged = _all_pages(cold_tier, 3, q="payment")
    assert [r.id for r in paged] == [r.id for r in everything]
    assert len({r.id for r in paged}) == len(paged) == 38
    times = [(r.time.seconds, r.time.nanos) for r in paged]
    assert times == sorted(times, reverse=True)


def test_context_of_a_cold_record_is_its_neighbours_in_either_tier(
    cold_tier: ColdTierServer,
) -> None:
    _send_old_and_new(cold_tier)

    def context_of(body: str) -> pb.GetLogContextResponse:
        (found,) = _all_pages(cold_tier, 100, q=f'"{body}"')
        answer: pb.GetLogContextResponse = cold_tier.query.GetLogContext(
            pb.GetLogContextRequest(id=found.id, before=3, after=2)
        )
        return answer

    hot = context_of("payment failed for order 10")
    cold_tier.tier()
    cold = context_of("payment failed for order 10")
    assert without_ids(cold) == without_ids(hot)
    assert [r.body.string_value for r in cold.before] == [
        f"payment failed for order {i}" for i in (7, 8, 9)
    ]
    assert cold.cold.objects == 1
    # A record id of the cold tier names its object: unknown or mangled ones are NOT_FOUND.
    for bad in ("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "not-an-id"):
        try:
            cold_tier.query.GetLogContext(pb.GetLogContextRequest(id=bad))
        except Exception as exc:
            assert "NOT_FOUND" in str(exc.code())  # type: ignore[attr-defined]
        else:
            raise AssertionError("an unknown id was found")


def test_a_rare_word_reads_only_the_row_groups_its_bloom_admits(
    cold_tier: ColdTierServer,
) -> None:
    """Word blooms: a word no body has reads no row group; a word one body has reads the
    row groups that may hold it, not the others."""
    _send_old_and_new(cold_tier)
    cold_tier.tier()
    window = {"start_time": _ts(OLD_HOUR_NS), "end_time": _ts(OLD_HOUR_NS + HOUR_NS)}
    absent = cold_tier.query.SearchLogs(
        pb.SearchLogsRequest(filter=pb.LogFilter(q="zyzzyva"), **window)
    )
    assert not absent.records and absent.cold.row_groups == 0
    one = cold_tier.query.SearchLogs(
        pb.SearchLogsRequest(filter=pb.LogFilter(q="refunded"), **window)
    )
    assert [r.body.string_value for r in one.records] == ["payments were refunded"]
    assert one.cold.row_groups == 1


def test_projects_never_see_each_others_cold_records(cold_tier: ColdTierServer) -> None:
    at = OLD_HOUR_NS + 60 * 10**9
    send_logs(cold_tier.server, [_record(at, "secret of a")], service="s", project="a")
    send_logs(cold_tier.server, [_record(at, "secret of b")], service="s", project="b")
    moved = cold_tier.tier()
    assert moved.objects == 2
    window = {"start_time": _ts(OLD_HOUR_NS), "end_time": _ts(OLD_HOUR_NS + HOUR_NS)}
    for project in ("a", "b"):
        answer = cold_tier.query.SearchLogs(
            pb.SearchLogsRequest(filter=pb.LogFilter(q="secret"), **window),
            metadata=(("x-otlpd-project", project),),
        )
        assert [r.body.string_value for r in answer.records] == [f"secret of {project}"]
    none = cold_tier.query.SearchLogs(
        pb.SearchLogsRequest(filter=pb.LogFilter(q="secret"), **window),
        metadata=(("x-otlpd-project", "c"),),
    )
    assert not none.records and none.cold.objects == 0
    # Nor by id: b cannot read a's record through GetLogContext.
    (record_of_a,) = cold_tier.query.SearchLogs(
        pb.SearchLogsRequest(**window), metadata=(("x-otlpd-project", "a"),)
    ).records
    try:
        cold_tier.query.GetLogContext(
            pb.GetLogContextRequest(id=record_of_a.id), metadata=(("x-otlpd-project", "b"),)
        )
    except Exception as exc:
        assert "NOT_FOUND" in str(exc.code())  # type: ignore[attr-defined]
    else:
        raise AssertionError("project b read a record of project a")


def test_a_deleted_object_is_an_empty_answer_not_an_error(cold_tier: ColdTierServer) -> None:
    """Cold retention deletes the manifest row first, then the object; a query between the
    two finds the object gone and answers without it."""
    _send_old_and_new(cold_tier)
    cold_tier.tier()
    root = cold_tier.store_url.removeprefix("file://")
    for folder, _, files in os.walk(root):
        for name in files:
            os.unlink(os.path.join(folder, name))
    window = {"start_time": _ts(OLD_HOUR_NS), "end_time": _ts(OLD_HOUR_NS + HOUR_NS)}
    answer = cold_tier.query.SearchLogs(pb.SearchLogsRequest(**window))
    assert not answer.records
