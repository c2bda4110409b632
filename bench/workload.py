"""Pre-built, serialized OTLP Export requests that look like production telemetry.

The load generator must spend its CPU on sending, not on building protobufs, so every
request is built and serialized once, before its case runs, and replayed as bytes.
Timestamps are taken relative to ``now_ns`` at build time and spread over the preceding
minute; a case lasts minutes at most, well inside otlpd's accept window (24 h back, 1 h
ahead), so nothing is patched per request.

Replaying the pool stores the same span and log ids more than once: otlpd keeps
duplicates (deduplication is a query-time concern), so that changes nothing in what
is measured. Metric series, on the other hand, are *meant* to repeat: the points cycle
over a bounded set of series so that otlpd's series deduplication does real work.

A *case* (:data:`CASES`) is a signal and a *variant* of who the records belong to:

* ``sessions``: every record carries ``session.id`` (one of 1,000 live sessions) and the
  ``user.id`` of that session (every session has a user), the RUM-heavy shape;
* ``churn``: every record carries ``session.id`` and a random ``user.id`` of its own, so
  nearly every record names a user never seen before;
* ``plain``: no ``session.id`` and no ``user.id``, backend-only telemetry;
* ``scrape`` (metrics only): the earlier metrics workload, 1,280 series with exponential
  histograms and summaries and no session attributes.

Everything else (resources, the other attributes, sizes) is the same in every variant.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

SIGNALS: Final = ("traces", "logs", "metrics")

RECORDS_PER_REQUEST: Final = 512
# Four resources per request, 128 records each: a collector's batch usually mixes a few
# services, and per-resource work (serializing the resource once) is part of the cost.
RESOURCES_PER_REQUEST: Final = 4

_SECOND: Final = 1_000_000_000
_SESSIONS: Final = 1000
_USERS: Final = 400

VARIANTS: Final = ("sessions", "churn", "plain", "scrape")

# The session-heavy metrics: 10 pods x 4 blocks x 128 series = 5,120 series; a resource
# of a request is one block of one pod (32 sums, 32 histograms, 64 gauges).
_METRIC_PODS: Final = 10
_METRIC_BLOCKS: Final = 4

_BACKEND_SERVICES: Final = ("checkout", "cart", "payments", "catalog", "auth")
_CLIENT_APPS: Final = (
    ("web-frontend", "browser"),
    ("ios-app", "ios"),
    ("android-app", "android"),
)
_ROUTES: Final = (
    ("GET", "/api/v1/products/{id}"),
    ("GET", "/api/v1/products"),
    ("POST", "/api/v1/cart/items"),
    ("DELETE", "/api/v1/cart/items/{id}"),
    ("POST", "/api/v1/checkout"),
    ("GET", "/api/v1/users/{id}"),
    ("POST", "/api/v1/auth/token"),
    ("GET", "/healthz"),
)
_STATUSES: Final = (200, 200, 200, 200, 200, 201, 204, 304, 400, 404, 500, 503)
_DB_STATEMENTS: Final = (
    "SELECT * FROM products WHERE id = $1",
    "SELECT id, qty FROM cart_items WHERE cart_id = $1",
    "INSERT INTO orders (user_id, total) VALUES ($1, $2) RETURNING id",
    "UPDATE inventory SET qty = qty - $1 WHERE sku = $2",
)


@dataclass(frozen=True, slots=True)
class Case:
    """A benchmark case: which signal, in which :data:`VARIANTS` variant."""

    name: str
    signal: str
    variant: str
    about: str


CASES: Final = {
    c.name: c
    for c in (
        Case(
            "spans-sessions",
            "traces",
            "sessions",
            "every span: session.id (1,000 live sessions) and that session's user.id",
        ),
        Case(
            "spans-churn",
            "traces",
            "churn",
            "every span: session.id and a random user.id (a new user nearly every span)",
        ),
        Case("spans-plain", "traces", "plain", "no session.id, no user.id"),
        Case(
            "logs",
            "logs",
            "sessions",
            "every record: session.id (1,000 live sessions) and that session's user.id",
        ),
        Case(
            "metrics",
            "metrics",
            "sessions",
            "gauges, sums, histograms over 5,120 series; every point: session.id, user.id",
        ),
        Case(
            "metrics-scrape",
            "metrics",
            "scrape",
            "1,280 series incl. exponential histograms and summaries; no session attributes",
        ),
    )
}
DEFAULT_CASES: Final = ("spans-sessions", "spans-churn", "spans-plain", "logs", "metrics")


@dataclass(frozen=True, slots=True)
class Workload:
    """A pool of serialized Export requests for one signal, replayed round robin.

    ``records[i]`` is what request ``i`` carries: spans, log records or data points,
    the unit every throughput figure is counted in.
    """

    signal: str
    requests: Sequence[bytes]
    records: Sequence[int]
    variant: str = "sessions"

    @property
    def mean_records(self) -> float:
        """Records per request, averaged over the pool."""
        return sum(self.records) / len(self.records)

    @property
    def mean_bytes(self) -> float:
        """Serialized bytes per request, averaged over the pool."""
        return sum(len(r) for r in self.requests) / len(self.requests)


def build_case(case: str, requests: int, now_ns: int, seed: int = 1) -> Workload:
    """Builds the requests of one of :data:`CASES`."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; expected one of {', '.join(CASES)}")
    c = CASES[case]
    return build(c.signal, requests, now_ns, seed, c.variant)


def build(
    signal: str, requests: int, now_ns: int, seed: int = 1, variant: str = "sessions"
) -> Workload:
    """Builds ``requests`` serialized Export requests of ``signal`` (traces|logs|metrics)."""
    # Metrics have no churn: a new user per point would be a new series per point.
    allowed = ("sessions", "scrape") if signal == "metrics" else VARIANTS[:3]
    if variant not in allowed:
        raise ValueError(f"unknown variant {variant!r} of {signal}; expected one of {allowed}")
    builders: dict[str, Callable[[_Gen, int], tuple[bytes, int]]] = {
        "traces": _Gen.traces,
        "logs": _Gen.logs,
        "metrics": _Gen.metrics,
    }
    if signal not in builders:
        raise ValueError(f"unknown signal {signal!r}; expected one of {', '.join(SIGNALS)}")
    gen = _Gen(random.Random(seed), now_ns, variant)
    built = [builders[signal](gen, i) for i in range(requests)]
    return Workload(signal, [b for b, _ in built], [n for _, n in built], variant)


_Value = str | bool | int | float | list[str]


def _kv(key: str, value: _Value) -> common_pb2.KeyValue:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        any_value = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = common_pb2.AnyValue(int_value=value)
    elif isinstance(value, float):
        any_value = common_pb2.AnyValue(double_value=value)
    elif isinstance(value, list):
        array = common_pb2.ArrayValue(values=[common_pb2.AnyValue(string_value=v) for v in value])
        any_value = common_pb2.AnyValue(array_value=array)
    else:
        any_value = common_pb2.AnyValue(string_value=value)
    return common_pb2.KeyValue(key=key, value=any_value)


def _attrs(pairs: dict[str, _Value]) -> list[common_pb2.KeyValue]:
    return [_kv(k, v) for k, v in pairs.items()]


class _Gen:
    """Deterministic generator state: the RNG, the time base and the pools ids come from."""

    def __init__(self, rng: random.Random, now_ns: int, variant: str = "sessions") -> None:
        self.rng = rng
        self.now_ns = now_ns
        self.variant = variant
        self.sessions = [f"sess-{rng.randbytes(8).hex()}" for _ in range(_SESSIONS)]
        # A session belongs to one user (a user has a few sessions).
        self.session_user = [f"user-{rng.randrange(_USERS):04d}" for _ in range(_SESSIONS)]
        self.scope = common_pb2.InstrumentationScope(
            name="io.opentelemetry.instrumentation.http", version="2.9.0"
        )
        # Cumulative counters keep growing from one request to the next.
        self.counters: dict[tuple[str, int, int], int] = {}

    def who(self, session: int) -> dict[str, _Value]:
        """The ``session.id`` and ``user.id`` a record of ``session`` carries in the variant."""
        if self.variant in ("plain", "scrape"):
            return {}
        if self.variant == "churn":
            user = f"user-{self.rng.randbytes(8).hex()}"
        else:
            user = self.session_user[session]
        return {"session.id": self.sessions[session], "user.id": user}

    # Resources ----------------------------------------------------------------------

    def backend_resource(self, index: int) -> tuple[resource_pb2.Resource, str]:
        """A pod of one backend service, with the k8s attributes an operator adds."""
        service = _BACKEND_SERVICES[index % len(_BACKEND_SERVICES)]
        pod = index % 10
        attrs = _attrs(
            {
                "project.id": "shop-backend",
                "service.name": service,
                "service.namespace": "shop",
                "service.version": f"1.{4 + pod % 3}.2",
                "service.instance.id": f"{service}-7d9f8b6c5-{pod:02d}x",
                "deployment.environment.name": "production",
                "k8s.cluster.name": "prod-eu-west-1",
                "k8s.namespace.name": "shop",
                "k8s.deployment.name": service,
                "k8s.pod.name": f"{service}-7d9f8b6c5-{pod:02d}x",
                "k8s.node.name": f"ip-10-0-{pod}-17.eu-west-1.compute.internal",
                "cloud.provider": "aws",
                "cloud.region": "eu-west-1",
                "host.arch": "amd64",
                "telemetry.sdk.language": "python",
                "telemetry.sdk.name": "opentelemetry",
                "telemetry.sdk.version": "1.27.0",
            }
        )
        return resource_pb2.Resource(attributes=attrs), service

    def client_resource(self, index: int) -> tuple[resource_pb2.Resource, str]:
        """A browser or mobile app install, with device attributes."""
        service, platform = _CLIENT_APPS[index % len(_CLIENT_APPS)]
        pairs: dict[str, _Value] = {
            "project.id": "shop-apps",
            "service.name": service,
            "service.version": "3.12.0",
            "deployment.environment.name": "production",
            "telemetry.sdk.language": "webjs" if platform == "browser" else "swift",
        }
        if platform == "browser":
            pairs |= {
                "browser.brands": ["Chromium 129", "Google Chrome 129"],
                "browser.platform": "macOS",
                "browser.mobile": False,
                "browser.language": "en-GB",
                "user_agent.original": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
            }
        else:
            pairs |= {
                "device.id": self.rng.randbytes(8).hex(),
                "device.model.identifier": "iPhone15,3" if platform == "ios" else "SM-S918B",
                "device.manufacturer": "Apple" if platform == "ios" else "Samsung",
                "os.name": "iOS" if platform == "ios" else "Android",
                "os.version": "17.5.1" if platform == "ios" else "14",
                "app.build_id": "20240917.3",
            }
        return resource_pb2.Resource(attributes=_attrs(pairs)), service

    def resource(self, request: int, slot: int) -> tuple[resource_pb2.Resource, str, bool]:
        """The ``slot``-th resource of a request: three backends and one client app."""
        index = request * RESOURCES_PER_REQUEST + slot
        if slot == RESOURCES_PER_REQUEST - 1:
            res, service = self.client_resource(index)
            return res, service, True
        res, service = self.backend_resource(index)
        return res, service, False

    # Traces -------------------------------------------------------------------------

    def traces(self, request: int) -> tuple[bytes, int]:
        """One Export of 512 spans: traces of 4..16 spans, parents before children."""
        rng = self.rng
        per_resource = RECORDS_PER_REQUEST // RESOURCES_PER_REQUEST
        msg = trace_service_pb2.ExportTraceServiceRequest()
        for slot in range(RESOURCES_PER_REQUEST):
            resource, service, is_client = self.resource(request, slot)
            rs = msg.resource_spans.add(resource=resource)
            rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
            ss = rs.scope_spans.add(scope=self.scope)
            spans: list[trace_pb2.Span] = []
            while len(spans) < per_resource:
                size = min(rng.randint(4, 16), per_resource - len(spans))
                spans.extend(self.trace(size, service, is_client))
            ss.spans.extend(spans)
        return msg.SerializeToString(), RECORDS_PER_REQUEST

    def trace(self, size: int, service: str, is_client: bool) -> list[trace_pb2.Span]:
        """``size`` spans of one trace: a server root and nested internal/client children."""
        rng = self.rng
        trace_id = rng.randbytes(16)
        session = rng.randrange(_SESSIONS)
        method, route = rng.choice(_ROUTES)
        status = rng.choice(_STATUSES)
        start = self.now_ns - rng.randrange(60 * _SECOND)
        root_duration = rng.randrange(2_000_000, 400_000_000)
        spans: list[trace_pb2.Span] = []
        span_ids: list[bytes] = []
        for i in range(size):
            span_id = rng.randbytes(8)
            parent = span_ids[rng.randrange(len(span_ids))] if span_ids else b""
            offset = 0 if i == 0 else rng.randrange(root_duration // 2)
            duration = root_duration if i == 0 else rng.randrange(100_000, root_duration // 2)
            kind = (
                trace_pb2.Span.SPAN_KIND_SERVER
                if i == 0
                else rng.choice(
                    (trace_pb2.Span.SPAN_KIND_INTERNAL, trace_pb2.Span.SPAN_KIND_CLIENT)
                )
            )
            pairs: dict[str, _Value] = {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
                "url.path": route.replace("{id}", str(rng.randrange(100_000))),
                "net.peer.name": f"{service}.shop.svc.cluster.local",
                **self.who(session),
                "app.cache_hit": rng.random() < 0.3,
                "app.queue_ms": round(rng.expovariate(1 / 3.0), 3),
                "thread.id": rng.randrange(1, 64),
            }
            if kind == trace_pb2.Span.SPAN_KIND_CLIENT:
                pairs["db.system"] = "postgresql"
                pairs["db.statement"] = rng.choice(_DB_STATEMENTS)
            if is_client and i == 0:
                pairs["app.screen"] = rng.choice(("home", "product", "cart", "checkout"))
            span = trace_pb2.Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=f"{method} {route}" if i == 0 else f"{service}.step{i}",
                kind=kind,
                start_time_unix_nano=start + offset,
                end_time_unix_nano=start + offset + duration,
                attributes=_attrs(pairs),
                flags=0x101,
            )
            if status >= 500 and i == 0:
                span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
                span.status.message = f"upstream returned {status}"
            if rng.random() < 0.15:
                span.events.add(
                    name="exception",
                    time_unix_nano=start + offset + duration // 2,
                    attributes=_attrs(
                        {
                            "exception.type": "TimeoutError",
                            "exception.message": f"timed out after {rng.randrange(1, 30)}s",
                            "exception.escaped": False,
                        }
                    ),
                )
            spans.append(span)
            span_ids.append(span_id)
        return spans

    # Logs ---------------------------------------------------------------------------

    def logs(self, request: int) -> tuple[bytes, int]:
        """One Export of 512 log records; half carry a trace and span id."""
        rng = self.rng
        per_resource = RECORDS_PER_REQUEST // RESOURCES_PER_REQUEST
        severities = (
            (logs_pb2.SEVERITY_NUMBER_INFO, "INFO"),
            (logs_pb2.SEVERITY_NUMBER_INFO, "INFO"),
            (logs_pb2.SEVERITY_NUMBER_INFO, "INFO"),
            (logs_pb2.SEVERITY_NUMBER_DEBUG, "DEBUG"),
            (logs_pb2.SEVERITY_NUMBER_WARN, "WARN"),
            (logs_pb2.SEVERITY_NUMBER_ERROR, "ERROR"),
        )
        msg = logs_service_pb2.ExportLogsServiceRequest()
        for slot in range(RESOURCES_PER_REQUEST):
            resource, service, _ = self.resource(request, slot)
            rl = msg.resource_logs.add(resource=resource)
            sl = rl.scope_logs.add(scope=common_pb2.InstrumentationScope(name=f"{service}.app"))
            records: list[logs_pb2.LogRecord] = []
            for _ in range(per_resource):
                number, text = rng.choice(severities)
                session = rng.randrange(_SESSIONS)
                method, route = rng.choice(_ROUTES)
                millis = round(rng.expovariate(1 / 40.0), 2)
                t = self.now_ns - rng.randrange(60 * _SECOND)
                pairs: dict[str, _Value] = {
                    "log.logger": f"{service}.handlers",
                    "code.function": rng.choice(("handle", "load", "save", "authorize")),
                    "http.route": route,
                    **self.who(session),
                    "thread.id": rng.randrange(1, 64),
                    "duration_ms": millis,
                    "retry": rng.random() < 0.05,
                }
                record = logs_pb2.LogRecord(
                    time_unix_nano=t,
                    observed_time_unix_nano=t + rng.randrange(1_000_000, 50_000_000),
                    severity_number=number,
                    severity_text=text,
                    body=common_pb2.AnyValue(
                        string_value=f"{method} {route} handled in {millis} ms "
                        f"(order {rng.randrange(10**6)}, items={rng.randrange(1, 9)})"
                    ),
                    attributes=_attrs(pairs),
                )
                if rng.random() < 0.5:
                    record.trace_id = rng.randbytes(16)
                    record.span_id = rng.randbytes(8)
                    record.flags = 1
                records.append(record)
            sl.log_records.extend(records)
        return msg.SerializeToString(), RECORDS_PER_REQUEST

    # Metrics ------------------------------------------------------------------------

    def metrics(self, request: int) -> tuple[bytes, int]:
        """One Export of 512 points: the session-heavy set, or the ``scrape`` variant's."""
        if self.variant == "scrape":
            return self.scrape_metrics(request)
        return self.session_metrics(request)

    def session_metrics(self, request: int) -> tuple[bytes, int]:
        """One Export of 512 points over 5,120 series, each with a session and its user.

        A series is one of 10 pods x 4 blocks x 128: per block 32 sums, 32 histograms (10
        buckets) and 64 gauges, every point tagged with the ``session.id`` and ``user.id``
        of the session its series belongs to (a session has a few series). A request
        carries 4 (pod, block) resources; after 10 requests every series has been sent.
        """
        msg = metrics_service_pb2.ExportMetricsServiceRequest()
        points = 0
        for slot in range(RESOURCES_PER_REQUEST):
            index = request * RESOURCES_PER_REQUEST + slot
            pod = index % _METRIC_PODS
            group = pod * _METRIC_BLOCKS + (index // _METRIC_PODS) % _METRIC_BLOCKS
            resource, _ = self.backend_resource(pod)
            t = self.now_ns - 60 * _SECOND + (request % 60) * _SECOND
            start = self.now_ns - 3600 * _SECOND
            rm = msg.resource_metrics.add(resource=resource)
            sm = rm.scope_metrics.add(scope=self.scope)
            points += self._http_metrics(sm, group, start, t, tagged=True)
            points += self._gauges(sm, t, queues=38, group=group)
        return msg.SerializeToString(), points

    def _tags(self, group: int | None, series: int) -> dict[str, _Value]:
        """The session attributes of the ``series``-th attribute set of ``group`` (if any)."""
        if group is None:
            return {}
        return self.who((group * 96 + series) % _SESSIONS)

    def scrape_metrics(self, request: int) -> tuple[bytes, int]:
        """One Export of ~512 points over a bounded set of series (10 pods x 128 series).

        Per resource: 32 sums, 32 histograms (10 buckets), 60 gauges, 2 exponential
        histograms and 2 summaries. Each request is a later scrape of 4 of the 10 pods.
        """
        msg = metrics_service_pb2.ExportMetricsServiceRequest()
        points = 0
        for slot in range(RESOURCES_PER_REQUEST):
            pod = (request * RESOURCES_PER_REQUEST + slot) % 10
            resource, _ = self.backend_resource(pod)
            t = self.now_ns - 60 * _SECOND + (request % 60) * _SECOND
            start = self.now_ns - 3600 * _SECOND
            rm = msg.resource_metrics.add(resource=resource)
            sm = rm.scope_metrics.add(scope=self.scope)
            points += self._http_metrics(sm, pod, start, t)
            points += self._gauges(sm, t)
            points += self._exp_histograms(sm, pod, t)
            points += self._summaries(sm, start, t)
        return msg.SerializeToString(), points

    def _http_metrics(
        self, sm: metrics_pb2.ScopeMetrics, pod: int, start: int, t: int, tagged: bool = False
    ) -> int:
        """Sums and histograms per route and status; ``tagged``: ``pod`` is a series group."""
        rng = self.rng
        group = pod if tagged else None
        cumulative = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        count = sm.metrics.add(name="http.server.request.count", unit="{request}")
        count.sum.aggregation_temporality = cumulative
        count.sum.is_monotonic = True
        hist = sm.metrics.add(
            name="http.server.request.duration", unit="s", description="Duration of requests"
        )
        hist.histogram.aggregation_temporality = cumulative
        bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]  # 10 buckets
        n = 0
        for r, (method, route) in enumerate(_ROUTES):
            for status in (200, 404, 500, 503):
                attrs = _attrs(
                    {
                        "http.request.method": method,
                        "http.route": route,
                        "http.response.status_code": status,
                        **self._tags(group, n // 2),
                    }
                )
                key = ("http", pod, r * 1000 + status)
                total = self.counters.get(key, 0) + rng.randrange(0, 500)
                self.counters[key] = total
                count.sum.data_points.add(
                    attributes=attrs, start_time_unix_nano=start, time_unix_nano=t, as_int=total
                )
                buckets = [rng.randrange(0, 200) for _ in range(len(bounds) + 1)]
                hist.histogram.data_points.add(
                    attributes=attrs,
                    start_time_unix_nano=start,
                    time_unix_nano=t,
                    count=sum(buckets),
                    sum=sum(buckets) * rng.uniform(0.01, 0.3),
                    min=0.001,
                    max=rng.uniform(1.0, 4.0),
                    bucket_counts=buckets,
                    explicit_bounds=bounds,
                )
                n += 2
        return n

    def _gauges(
        self, sm: metrics_pb2.ScopeMetrics, t: int, queues: int = 34, group: int | None = None
    ) -> int:
        """CPU, pool, queue and memory gauges; with ``group``, tagged with sessions."""
        rng = self.rng
        n = 0
        cpu = sm.metrics.add(name="system.cpu.utilization", unit="1")
        for core in range(4):
            for state in ("user", "system", "idle", "iowait"):
                cpu.gauge.data_points.add(
                    attributes=_attrs(
                        {
                            "cpu.logical_number": core,
                            "cpu.mode": state,
                            **self._tags(group, 32 + n),
                        }
                    ),
                    time_unix_nano=t,
                    as_double=rng.random(),
                )
                n += 1
        pool = sm.metrics.add(name="db.client.connection.count", unit="{connection}")
        for name in ("primary", "replica-1", "replica-2", "analytics"):
            for state in ("idle", "used"):
                pool.gauge.data_points.add(
                    attributes=_attrs(
                        {
                            "db.client.connection.pool.name": name,
                            "state": state,
                            **self._tags(group, 32 + n),
                        }
                    ),
                    time_unix_nano=t,
                    as_int=rng.randrange(0, 20),
                )
                n += 1
        queue = sm.metrics.add(name="messaging.queue.depth", unit="{message}")
        for q in range(queues):
            queue.gauge.data_points.add(
                attributes=_attrs(
                    {"messaging.destination.name": f"orders-{q:02d}", **self._tags(group, 32 + n)}
                ),
                time_unix_nano=t,
                as_int=rng.randrange(0, 10_000),
            )
            n += 1
        mem = sm.metrics.add(name="process.memory.usage", unit="By")
        for kind in ("rss", "heap"):
            mem.gauge.data_points.add(
                attributes=_attrs({"memory.type": kind, **self._tags(group, 32 + n)}),
                time_unix_nano=t,
                as_int=rng.randrange(100 << 20, 900 << 20),
            )
            n += 1
        return n

    def _exp_histograms(self, sm: metrics_pb2.ScopeMetrics, pod: int, t: int) -> int:
        rng = self.rng
        m = sm.metrics.add(name="rpc.server.duration", unit="ms")
        m.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        for method in ("GetProduct", "PlaceOrder"):
            positive = [rng.randrange(0, 50) for _ in range(20)]
            dp = m.exponential_histogram.data_points.add(
                attributes=_attrs({"rpc.system": "grpc", "rpc.method": method}),
                start_time_unix_nano=t - 10 * _SECOND,
                time_unix_nano=t,
                count=sum(positive) + 3,
                sum=sum(positive) * 12.5,
                scale=3,
                zero_count=3,
                min=0.0,
                max=950.0,
            )
            dp.positive.offset = 20 + pod
            dp.positive.bucket_counts.extend(positive)
        return 2

    def _summaries(self, sm: metrics_pb2.ScopeMetrics, start: int, t: int) -> int:
        rng = self.rng
        m = sm.metrics.add(name="jvm.gc.pause", unit="ms")
        for gc in ("young", "old"):
            dp = m.summary.data_points.add(
                attributes=_attrs({"jvm.gc.name": gc}),
                start_time_unix_nano=start,
                time_unix_nano=t,
                count=rng.randrange(100, 1000),
                sum=rng.uniform(1000.0, 9000.0),
            )
            for q in (0.5, 0.9, 0.99):
                dp.quantile_values.add(quantile=q, value=rng.uniform(1.0, 80.0) * (1 + q))
        return 2
