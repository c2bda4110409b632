"""Rate limits: token buckets per project and per token, for records/s and bytes/s.

Every Export is charged, after decoding, its number of records and its request bytes
against up to four buckets: the project's records and bytes (``ProjectSettings.rate_limit``,
the server's ``OTLPD_RATE_LIMIT_*`` unless the project sets its own) and the token's
(``Principal.token_rate_limit``). A rate of 0 is unlimited: that bucket is not kept at all.

The buckets allow debt. A bucket holds ``OTLPD_RATE_LIMIT_BURST`` seconds of its rate;
a request is admitted while the level is above 0, and its whole size is taken even if the
level goes negative; requests are refused while it is negative, until the refill brings it
back above 0. So a request larger than a whole bucket still passes when the bucket is full
(with a strict bucket it never could: OTLP exporters send batches of 512 records by
default, more than a 100 records/s bucket holds), and the rate is still kept over time:
what is admitted in ``t`` seconds is at most ``burst x rate + t x rate`` plus one
request. A refused request takes nothing from any bucket (all are checked before any is
charged), so a client that waits as told is not pushed back further by its own retries.
The refusal is ``Throttled``: gRPC UNAVAILABLE with RetryInfo, OTLP/HTTP 429 with
Retry-After, both of which OTLP exporters honour.

Bounded: at most ``max_buckets`` buckets (100,000, a few MB), the least recently used
evicted first. An evicted bucket comes back full, so a caller idle long enough to be
evicted may burst once more than it otherwise could; with fewer active projects and
tokens than the bound, which is the expected case by far, nothing is ever evicted.

Replicas. Every process keeps its own buckets and enforces the full configured rate on
its own: N replicas (or ``--workers N``) admit up to N times the rate between them. Set
``OTLPD_RATE_LIMIT_*`` (and per-project limits) to the total you want divided by the
number of processes. Sharing the buckets would cost a round trip (or a coordination
protocol) per Export for a limit whose job is to stop a runaway client, not to meter
it: exact counts are the usage accounting's job.

Called on the event loop for every Export: a few dictionary operations (measured: ~5 us
an Export with all four limits set, against ~5 ms to decode 512 spans; ~0.2 us with none),
with no await in between, so it needs no lock (one loop per process; not thread-safe).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from otlpd.access import Principal, RateLimit
from otlpd.errors import Throttled

# The shortest wait we ask for: shorter would have clients spin on a bucket that a single
# request of theirs drains again; 0.1 s keeps the retry rate of one client under 10/s.
MIN_RETRY_AFTER = 0.1

_RECORDS = "records"
_BYTES = "bytes"


class _Bucket:
    """A level (may be negative: debt) as of the clock reading ``at``."""

    __slots__ = ("at", "level")

    def __init__(self, level: float, at: float) -> None:
        self.level = level
        self.at = at


class RateLimiter:
    """Token buckets for every project and token that sent recently, within ``max_buckets``."""

    def __init__(
        self,
        burst_seconds: float,
        *,
        max_buckets: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst_seconds <= 0:
            raise ValueError(f"burst_seconds must be > 0, got {burst_seconds}")
        if max_buckets < 4:  # one request touches up to four: none may evict another
            raise ValueError(f"max_buckets must be >= 4, got {max_buckets}")
        self._burst = burst_seconds
        self._max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str, str], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """Buckets kept now (at most ``max_buckets``)."""
        return len(self._buckets)

    def take(self, project: str, principal: Principal, records: int, nbytes: int) -> None:
        """Charges one request of ``records`` records and ``nbytes`` bytes to ``project``
        and to ``principal``'s token, or raises ``Throttled`` and charges nothing."""
        project_limit = principal.settings.rate_limit
        token_limit = principal.token_rate_limit
        token = principal.token_id
        if project_limit.unlimited and (token is None or token_limit.unlimited):
            return  # the common case without limits: no clock, no buckets
        now = self._clock()
        charged: list[tuple[_Bucket, int]] = []
        worst: tuple[float, str] | None = None
        owners: list[tuple[str, str, RateLimit]] = [("project", project, project_limit)]
        if token is not None:
            owners.append(("token", token, token_limit))
        for kind, name, limit in owners:
            units: tuple[tuple[str, float, int], ...] = (
                (_RECORDS, limit.records_per_second, records),
                (_BYTES, limit.bytes_per_second, nbytes),
            )
            for unit, rate, amount in units:
                if rate <= 0 or amount <= 0:
                    continue
                bucket = self._refilled((kind, name, unit), rate, now)
                if bucket.level > 0:
                    charged.append((bucket, amount))
                    continue
                wait = -bucket.level / rate
                if worst is None or wait > worst[0]:
                    worst = (wait, _over(kind, name, project, rate, unit))
        if worst is not None:
            retry_after = _retry_after(worst[0])
            raise Throttled(f"{worst[1]}; retry in {retry_after:g}s", retry_after)
        for bucket, amount in charged:
            bucket.level -= amount

    def _refilled(self, key: tuple[str, str, str], rate: float, now: float) -> _Bucket:
        """The bucket of ``key`` filled up to ``now`` at ``rate`` (a new one is full)."""
        capacity = rate * self._burst
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = _Bucket(capacity, now)
            if len(buckets) > self._max_buckets:
                buckets.popitem(last=False)
            return bucket
        buckets.move_to_end(key)
        # min(): a rate lowered since (new project settings) also lowers what is held.
        bucket.level = min(capacity, bucket.level + max(0.0, now - bucket.at) * rate)
        bucket.at = now
        return bucket


def _retry_after(wait: float) -> float:
    """``wait`` rounded up to a tenth of a second, at least ``MIN_RETRY_AFTER``: clients
    that retry a moment early would only be refused again."""
    return max(MIN_RETRY_AFTER, math.ceil(round(wait * 10, 6)) / 10)


def _over(kind: str, name: str, project: str, rate: float, unit: str) -> str:
    who = f"project {name}" if kind == "project" else f"token {name} of project {project}"
    amount = f"{rate:,.0f}" if rate >= 100 else f"{rate:g}"
    return f"{who} is over its limit of {amount} {unit}/s"
