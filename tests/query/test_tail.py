"""TailLogs against real otlpd processes: records sent through the OTLP receiver, tailed
on the query port, from this process's otlpd or from another one on the same database."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import psycopg
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from query.proto import pb, pb_grpc
from tests.conftest import RunningOtlpd, free_port, terminate_backends
from tests.test_main import OtlpdProcess, base_env

SEEN_WITHIN = 1.0  # seconds from Export OK to the record on a tail (the bound)


# --- sending ---------------------------------------------------------------------------


def kv(key: str, v: str | int) -> common_pb2.KeyValue:
    if isinstance(v, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=v))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=v))


def record(
    body: str,
    *,
    severity: int = 9,
    trace_id: bytes = b"",
    span_id: bytes = b"",
    **attributes: str | int,
) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        time_unix_nano=time.time_ns(),
        severity_number=severity,  # type: ignore[arg-type]
        body=common_pb2.AnyValue(string_value=body),
        trace_id=trace_id,
        span_id=span_id,
        attributes=[kv(k, v) for k, v in attributes.items()],
    )


def export(
    target: str, groups: list[tuple[str, str, list[logs_pb2.LogRecord]]], timeout: float = 30
) -> None:
    """One Export of ``(project, service, records)`` groups; returns once it is committed."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    for project, service, records in groups:
        resource = resource_pb2.Resource(
            attributes=[kv("service.name", service), kv("project.id", project)]
        )
        scope = request.resource_logs.add(resource=resource).scope_logs.add()
        scope.log_records.extend(records)
    with grpc.insecure_channel(target) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)  # type: ignore[no-untyped-call]
        response = stub.Export(request, timeout=timeout)
    assert not response.partial_success.rejected_log_records, response


# --- tailing ---------------------------------------------------------------------------


class Tail:
    """A TailLogs stream read by a thread of its own, each message stamped on receipt."""

    def __init__(self, port: int, project: str, **filter_fields: Any) -> None:
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.QueryServiceStub(self._channel)  # type: ignore[no-untyped-call]
        request = pb.TailLogsRequest(filter=pb.LogFilter(**filter_fields))
        self.call = stub.TailLogs(request, metadata=(("x-otlpd-project", project),))
        self.messages: queue.Queue[tuple[float, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        _, first = self.messages.get(timeout=10)
        assert isinstance(first, pb.TailLogsResponse), first
        assert not first.records and not first.HasField("lagged"), "the first message is empty"

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.put((time.monotonic(), message))
        except grpc.RpcError as exc:
            self.messages.put((time.monotonic(), exc))
        else:
            self.messages.put((time.monotonic(), None))  # the server ended it, OK

    def records(self, n: int, timeout: float = 10) -> list[tuple[float, pb.LogRecord]]:
        """The next ``n`` records with their receipt times; fails on lag or error."""
        got: list[tuple[float, pb.LogRecord]] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            when, message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            assert isinstance(message, pb.TailLogsResponse), message
            assert not message.HasField("lagged"), message
            got.extend((when, r) for r in message.records)
        assert len(got) == n, [r.body.string_value for _, r in got]
        return got

    def bodies(self, n: int) -> set[str]:
        return {r.body.string_value for _, r in self.records(n)}

    def quiet(self) -> bool:
        return self.messages.empty()

    def close(self) -> None:
        self.call.cancel()
        self._reader.join(10)
        self._channel.close()


@pytest.fixture
def tails() -> Iterator[Callable[..., Tail]]:
    opened: list[Tail] = []

    def open_tail(port: int, project: str = "p1", **filter_fields: Any) -> Tail:
        tail = Tail(port, project, **filter_fields)
        opened.append(tail)
        return tail

    yield open_tail
    for tail in opened:
        tail.close()


@pytest.fixture
def other_otlpd(
    otlpd: RunningOtlpd, tmp_path: Path
) -> Iterator[Callable[..., tuple[OtlpdProcess, int]]]:
    """Factory: ``python -m otlpd serve`` on the database of ``otlpd``, and its query port."""
    started: list[OtlpdProcess] = []

    def start(**variables: str) -> tuple[OtlpdProcess, int]:
        grpc_port, ops_port, query_port = free_port(), free_port(), free_port()
        env = base_env(
            OTLPD_DATABASE_URL=otlpd.database_url,
            OTLPD_GRPC_ADDR=f"127.0.0.1:{grpc_port}",
            OTLPD_METRICS_ADDR=f"127.0.0.1:{ops_port}",
            OTLPD_QUERY_ADDR=f"127.0.0.1:{query_port}",
            OTLPD_HTTP_ADDR=f"127.0.0.1:{free_port()}",
            **variables,
        )
        log = tmp_path / f"otlpd-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "otlpd", "serve"], env=env, stdout=out, stderr=out
            )
        server = OtlpdProcess(proc, grpc_port, ops_port, log, [psutil.Process(proc.pid)])
        started.append(server)
        server.wait_ready()
        return server, query_port

    yield start
    for server in started:
        with contextlib.suppress(psutil.NoSuchProcess):
            server.proc.kill()
        server.proc.wait(10)


# --- tests -----------------------------------------------------------------------------


def test_sees_records_another_process_committed_within_a_second(
    otlpd: RunningOtlpd,
    other_otlpd: Callable[..., tuple[OtlpdProcess, int]],
    tails: Callable[..., Tail],
) -> None:
    other, _ = other_otlpd()
    tail = tails(otlpd.app.ports.query)
    delays = []
    for i in range(5):
        export(other.target, [("p1", "api", [record(f"from the other process {i}")])])
        exported = time.monotonic()
        [(received, rec)] = tail.records(1)
        delays.append(received - exported)
        assert rec.body.string_value == f"from the other process {i}"
        assert rec.service == "api"
        assert rec.id  # usable with GetLogContext
    assert max(delays) < SEEN_WITHIN, delays
    print(f"tail latency from Export OK, other process: max {max(delays) * 1000:.1f} ms")


T1, T2 = bytes(range(16)), bytes(range(1, 17))
S1, S2 = bytes(range(8)), bytes(range(1, 9))

R1 = "payment accepted for order 42"
R2 = "payment declined: card expired"
R3 = "slow query on index payments_idx"
R4 = "100% done_ok 'quoted' \\ back"

FILTER_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {R1, R2, R3, R4}),
    ({"service": "checkout"}, {R1, R2}),
    ({"service": "search"}, {R3, R4}),
    ({"service": "nobody"}, set()),
    ({"min_severity": 13}, {R2, R3}),
    ({"min_severity": 21}, set()),
    ({"trace_id": T1}, {R1}),
    ({"trace_id": bytes(16)}, set()),
    ({"span_id": S2}, {R2}),
    ({"span_id": bytes(8)}, set()),
    ({"session_id": "sess-1"}, {R1, R3}),
    ({"session_id": "sess-9"}, set()),
    ({"user_id": "u-2"}, {R2}),
    ({"user_id": "u-9"}, set()),
    ({"attributes": [pb.AttributeFilter(key="http.status", value="500")]}, {R2}),
    ({"attributes": [pb.AttributeFilter(key="region", value="eu")]}, {R1}),
    ({"attributes": [pb.AttributeFilter(key="region", value="mars")]}, set()),
    ({"q": "payment"}, {R1, R2}),
    ({"q": "PAYMENT declined"}, {R2}),
    ({"q": "pay*"}, {R1, R2, R3}),
    ({"q": '"card expired"'}, {R2}),
    ({"q": '"expired card"'}, set()),
    ({"q": "order 42"}, {R1}),
    ({"q": "100%"}, {R4}),
    ({"q": "done_ok"}, {R4}),
    ({"q": "_"}, set()),  # a word of its own, not a LIKE wildcard
    ({"q": "\\"}, {R4}),
    ({"q": "'quoted'"}, {R4}),
    ({"q": "'); DROP TABLE logs; --"}, set()),
    ({"q": ".*"}, set()),
    ({"q": "\x01card\x02expired"}, {R2}),  # control characters separate words
    ({"service": "checkout", "min_severity": 13, "q": "card"}, {R2}),
]


def test_filters_include_and_exclude(otlpd: RunningOtlpd, tails: Callable[..., Tail]) -> None:
    opened = [(tails(otlpd.app.ports.query, **f), want) for f, want in FILTER_CASES]
    export(
        otlpd.grpc_target,
        [
            (
                "p1",
                "checkout",
                [
                    record(R1, trace_id=T1, span_id=S1, region="eu")
                    | _session("sess-1")
                    | _user("u-1"),
                    record(R2, severity=17, trace_id=T2, span_id=S2, **{"http.status": 500})
                    | _session("sess-2")
                    | _user("u-2"),
                ],
            ),
            ("p1", "search", [record(R3, severity=13) | _session("sess-1"), record(R4)]),
        ],
    )
    for (tail, want), (fields, _) in zip(opened, FILTER_CASES, strict=True):
        if want:
            try:
                got = tail.bodies(len(want))
            except queue.Empty:
                got = set()
            assert got == want, fields
    time.sleep(0.5)  # whatever else would come has come by now
    for (tail, want), (fields, _) in zip(opened, FILTER_CASES, strict=True):
        assert tail.quiet(), f"{fields} got more than {want}"


class _Attr:
    """``record(...) | _user("u-1")``: one more attribute, for keys that are not names."""

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value

    def __ror__(self, r: logs_pb2.LogRecord) -> logs_pb2.LogRecord:
        r.attributes.append(kv(self.key, self.value))
        return r


def _user(value: str) -> _Attr:
    return _Attr("user.id", value)


def _session(value: str) -> _Attr:
    return _Attr("session.id", value)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"q": "x" * 1001}, "filter.q"),
        ({"q": "a\x00b"}, "filter.q"),
        ({"q": '"unbalanced'}, "filter.q"),
        ({"trace_id": b"short"}, "filter.trace_id"),
        ({"span_id": bytes(9)}, "filter.span_id"),
        ({"min_severity": 99}, "filter.min_severity"),
        ({"min_severity": -1}, "filter.min_severity"),
        ({"attributes": [pb.AttributeFilter(key="", value="x")]}, "filter.attributes[0].key"),
    ],
)
def test_bad_filters_are_invalid_arguments(query: Any, fields: dict[str, Any], field: str) -> None:
    call = query.TailLogs(pb.TailLogsRequest(filter=pb.LogFilter(**fields)), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        next(call)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")


def test_a_tail_sees_only_its_own_project(otlpd: RunningOtlpd, tails: Callable[..., Tail]) -> None:
    port = otlpd.app.ports.query
    a, b = tails(port, "project-a"), tails(port, "project-b")
    export(
        otlpd.grpc_target,
        [
            ("project-a", "svc", [record("only for a 1"), record("only for a 2")]),
            ("project-b", "svc", [record("only for b")]),
        ],
    )
    assert a.bodies(2) == {"only for a 1", "only for a 2"}
    assert b.bodies(1) == {"only for b"}
    export(otlpd.grpc_target, [("project-a", "svc", [record("a again")])])
    assert a.bodies(1) == {"a again"}
    time.sleep(0.5)
    assert b.quiet(), "project-b's tail saw project-a's record"


def test_project_from_the_request_field(otlpd: RunningOtlpd, query: Any) -> None:
    call = query.TailLogs(pb.TailLogsRequest(project_id="field-project"), timeout=20)
    assert not next(call).records  # live
    export(otlpd.grpc_target, [("default", "svc", [record("default project")])])
    export(otlpd.grpc_target, [("field-project", "svc", [record("field project")])])
    message = next(call)
    assert [r.body.string_value for r in message.records] == ["field project"]
    call.cancel()


def rss(process: psutil.Process) -> int:
    return int(process.memory_info().rss)


def test_a_stalled_consumer_is_told_it_lagged_and_memory_stays_flat(
    other_otlpd: Callable[..., tuple[OtlpdProcess, int]],
) -> None:
    server, port = other_otlpd(OTLPD_TAIL_BUFFER="8")
    process = server.tree[0]
    body = "x" * 200
    per_export, warmup, exports = 1000, 10, 100

    def ingest(n: int, tag: str) -> None:
        for i in range(n):
            records = [record(f"{tag} {i} {j} {body}") for j in range(per_export)]
            export(server.target, [("p1", "svc", records)])

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        warm = stub.TailLogs(pb.TailLogsRequest(), metadata=(("x-otlpd-project", "p1"),))
        assert not next(warm).records
        ingest(warmup, "warmup")  # the server's caches and the allocator settle
        warm.cancel()
        time.sleep(0.5)

        stalled = stub.TailLogs(pb.TailLogsRequest(), metadata=(("x-otlpd-project", "p1"),))
        assert not next(stalled).records  # live; from here on nobody reads it
        before = rss(process)
        peak = before
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss(process))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        ingest(exports, "stalled")
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        after = rss(process)

        total = exports * per_export
        delivered, skipped, after_lag = 0, 0, 0
        deadline = time.monotonic() + 60
        while delivered + skipped < total and time.monotonic() < deadline:
            message = next(stalled)
            if message.HasField("lagged"):
                skipped += message.lagged.skipped_records
                after_lag = 0
            delivered += len(message.records)
            after_lag += len(message.records)
        stalled.cancel()

    growth = (peak - before) / 2**20
    print(
        f"stalled tail: {total} records in {elapsed:.1f}s; delivered {delivered}, "
        f"skipped {skipped}; RSS {before / 2**20:.0f} MiB -> peak {peak / 2**20:.0f} "
        f"(+{growth:.1f}) -> {after / 2**20:.0f} MiB"
    )
    assert skipped > 0
    assert after_lag > 0, "the lag is told before the records that follow it"
    # With no filter, a skipped commit's count is exactly its records: nothing is lost
    # silently, nothing is sent twice.
    assert delivered + skipped == total
    assert growth < 30, f"RSS grew {growth:.1f} MiB behind a stalled tail"
    assert server.sample("otlpd_tail_lagged_records_total") == skipped


def test_streams_beyond_the_limit_are_refused(
    start_otlpd: Callable[..., RunningOtlpd], tails: Callable[..., Tail]
) -> None:
    server = start_otlpd(tail_max_streams="2")
    port = server.app.ports.query
    first = tails(port)
    tails(port)
    assert server.metric("otlpd_tail_streams") == 2
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as caught:
            next(stub.TailLogs(pb.TailLogsRequest(), timeout=10))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "maximum" in (caught.value.details() or "")
        first.close()
        deadline = time.monotonic() + 5
        while server.metric("otlpd_tail_streams") > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.metric("otlpd_tail_streams") == 1
        again = stub.TailLogs(pb.TailLogsRequest(), timeout=10)
        assert not next(again).records  # a place freed up
        again.cancel()


def test_shuts_down_cleanly_with_open_streams(
    start_otlpd: Callable[..., RunningOtlpd], tails: Callable[..., Tail]
) -> None:
    server = start_otlpd()
    tail = tails(server.app.ports.query)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 15
    _, end = tail.messages.get(timeout=5)
    assert end is None, f"the stream should end OK on shutdown, got {end}"


def test_a_commit_of_too_many_projects_for_the_notice_still_reaches_each_tail(
    otlpd: RunningOtlpd, tails: Callable[..., Tail]
) -> None:
    # Beyond 64 projects in one commit the writer's notice names none ("p": null).
    projects = [f"many-{i}" for i in range(70)]
    first, last = tails(otlpd.app.ports.query, projects[0]), tails(otlpd.app.ports.query, "x")
    with psycopg.connect(otlpd.database_url, autocommit=True) as conn:
        conn.execute("LISTEN otlpd_logs")
        export(otlpd.grpc_target, [(p, "svc", [record(f"for {p}")]) for p in projects])
        payloads = [json.loads(n.payload) for n in conn.notifies(timeout=2, stop_after=1)]
    assert [p["p"] for p in payloads] == [None]  # the case under test
    assert first.bodies(1) == {"for many-0"}
    time.sleep(0.5)
    assert last.quiet()


def test_a_lost_listener_reconnects_and_streams_are_told_they_lagged(
    otlpd: RunningOtlpd, tails: Callable[..., Tail]
) -> None:
    tail = tails(otlpd.app.ports.query)
    assert terminate_backends(otlpd.database_url, "otlpd-tail") == 1
    _, message = tail.messages.get(timeout=10)
    assert isinstance(message, pb.TailLogsResponse)
    assert message.HasField("lagged") and message.lagged.skipped_records == 0  # unknown
    export(otlpd.grpc_target, [("p1", "svc", [record("after the reconnect")])])
    assert tail.bodies(1) == {"after the reconnect"}
