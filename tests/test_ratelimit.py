"""The token buckets of ``otlpd.ratelimit``, on a clock the tests move by hand.

End to end (a real server, its RetryInfo, the SDK exporter's retries, two replicas):
tests/test_ratelimit_e2e.py.
"""

from __future__ import annotations

import pytest

from otlpd.access import Principal, ProjectSettings, RateLimit
from otlpd.errors import Throttled
from otlpd.ratelimit import MIN_RETRY_AFTER, RateLimiter


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def principal(
    records: float = 0.0,
    nbytes: float = 0.0,
    *,
    token: str | None = None,
    token_records: float = 0.0,
    token_bytes: float = 0.0,
) -> Principal:
    return Principal(
        project="p",
        token_id=token,
        scopes=frozenset(),
        settings=ProjectSettings(rate_limit=RateLimit(records, nbytes)),
        token_rate_limit=RateLimit(token_records, token_bytes),
    )


def admitted(
    limiter: RateLimiter, who: Principal, records: int, nbytes: int = 1, *, project: str = "p"
) -> bool:
    try:
        limiter.take(project, who, records, nbytes)
    except Throttled:
        return False
    return True


def test_unlimited_keeps_no_buckets() -> None:
    limiter = RateLimiter(1.0)
    for _ in range(100):
        limiter.take("p", principal(), 10**6, 10**9)
    limiter.take("p", principal(token="t"), 10**6, 10**9)
    assert len(limiter) == 0


def test_the_rate_is_kept_over_time() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    who = principal(records=100)
    sent = 0
    # A client that tries 10 records every 10 ms for 10 s: 10x the limit.
    for _ in range(1000):
        if admitted(limiter, who, 10):
            sent += 10
        clock.advance(0.01)
    # burst (100) + 10 s x 100/s, plus at most one request of debt.
    assert 1000 <= sent <= 100 + 1000 + 10


def test_a_full_bucket_admits_its_burst_at_once_then_refuses() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, clock=clock)  # 2 s x 50/s = 100 records
    who = principal(records=50)
    assert [admitted(limiter, who, 25) for _ in range(5)] == [True] * 4 + [False]
    clock.advance(0.5)  # 25 back
    assert admitted(limiter, who, 25)
    assert not admitted(limiter, who, 25)


def test_a_request_larger_than_the_bucket_passes_when_full_and_leaves_debt() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    who = principal(records=100)
    assert admitted(limiter, who, 512)  # more than the bucket holds: debt of 412
    with pytest.raises(Throttled) as refused:
        limiter.take("p", who, 1, 1)
    assert refused.value.retry_after == pytest.approx(4.2)  # 412 / 100 per s, rounded up
    clock.advance(4.0)
    assert not admitted(limiter, who, 1)  # still 12 in debt
    clock.advance(0.2)
    assert admitted(limiter, who, 1)


def test_retry_after_is_rounded_up_to_a_tenth_and_at_least_a_tenth() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    who = principal(records=1000)
    assert admitted(limiter, who, 1001)  # 1 in debt: 1 ms of refill
    with pytest.raises(Throttled) as refused:
        limiter.take("p", who, 1, 1)
    assert refused.value.retry_after == MIN_RETRY_AFTER
    assert str(refused.value) == "project p is over its limit of 1,000 records/s; retry in 0.1s"
    clock.advance(0.01)
    assert admitted(limiter, who, 1330)  # back above 0 (9): 1,321 in debt
    with pytest.raises(Throttled) as refused:
        limiter.take("p", who, 1, 1)
    assert refused.value.retry_after == pytest.approx(1.4)


def test_a_refused_request_charges_no_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    who = principal(records=100, nbytes=1000)
    assert admitted(limiter, who, 10, 1100)  # records: 90 left; bytes: 100 in debt
    for _ in range(50):  # refused for bytes; had they charged, records would be 410 in debt
        assert not admitted(limiter, who, 10, 1)
    clock.advance(0.11)  # bytes: 10 (not 10 - 50); records: full
    assert admitted(limiter, who, 100, 1)


def test_refusals_do_not_push_the_wait_further() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    who = principal(records=10)
    assert admitted(limiter, who, 20)  # 10 in debt: 1 s
    waits = []
    for _ in range(5):
        with pytest.raises(Throttled) as refused:
            limiter.take("p", who, 20, 1)
        waits.append(refused.value.retry_after)
        clock.advance(0.1)
    assert waits == pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6])


def test_the_message_names_the_limit_the_caller_is_over() -> None:
    limiter = RateLimiter(1.0, clock=Clock())
    who = principal(nbytes=1024**2, token="tok1", token_records=2.5)
    limiter.take("p", who, 3, 10)  # token records: 0.5 in debt
    with pytest.raises(Throttled, match=r"^token tok1 of project p is over its limit of 2\.5 "):
        limiter.take("p", who, 1, 10)
    limiter = RateLimiter(1.0, clock=Clock())
    limiter.take("p", who, 1, 2 * 1024**2)  # project bytes: 1 MiB in debt, 1 s
    with pytest.raises(Throttled) as refused:
        limiter.take("p", who, 1, 10)
    assert str(refused.value) == ("project p is over its limit of 1,048,576 bytes/s; retry in 1s")


def test_the_longest_wait_is_the_one_reported() -> None:
    limiter = RateLimiter(1.0, clock=Clock())
    who = principal(records=10, token="t", token_records=100)
    limiter.take("p", who, 110, 1)  # project: 100 in debt (10 s); token: 10 (0.1 s)
    with pytest.raises(Throttled) as refused:
        limiter.take("p", who, 1, 1)
    assert refused.value.retry_after == pytest.approx(10.0)
    assert str(refused.value).startswith("project p ")


def test_projects_and_tokens_have_buckets_of_their_own() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    first = principal(records=1000, token="t1", token_records=10)
    second = principal(records=1000, token="t2", token_records=10)
    assert admitted(limiter, first, 10)
    assert not admitted(limiter, first, 1)  # its token is spent
    assert admitted(limiter, second, 10)  # another token of the same project is not
    # The project's own bucket (1000) was charged by both tokens: 20 taken.
    untokened = principal(records=1000)
    assert admitted(limiter, untokened, 980)
    assert not admitted(limiter, untokened, 1)
    # Another project is untouched by all of it.
    limiter.take("q", untokened, 1000, 1)
    with pytest.raises(Throttled, match=r"^project q "):
        limiter.take("q", untokened, 1, 1)


def test_buckets_are_bounded_and_the_evicted_come_back_full() -> None:
    limiter = RateLimiter(1.0, max_buckets=4, clock=Clock())
    who = principal(records=10)
    assert admitted(limiter, who, 10, project="a")
    assert not admitted(limiter, who, 1, project="a")  # a: spent
    for project in ("b", "c", "d"):
        assert admitted(limiter, who, 1, project=project)
    assert len(limiter) == 4
    assert admitted(limiter, who, 1, project="e")  # evicts the least recently used: a
    assert len(limiter) == 4
    assert admitted(limiter, who, 1, project="a")  # came back full (and evicted b)
    assert len(limiter) == 4


def test_recently_used_buckets_are_kept() -> None:
    limiter = RateLimiter(1.0, max_buckets=4, clock=Clock())
    who = principal(records=10)
    assert admitted(limiter, who, 10, project="a")
    for project in ("b", "c", "d"):
        assert admitted(limiter, who, 1, project=project)
    assert not admitted(limiter, who, 1, project="a")  # a is now the most recent
    assert admitted(limiter, who, 1, project="e")  # so b is evicted instead
    assert not admitted(limiter, who, 1, project="a")  # and a, kept, is still spent


def test_a_lowered_rate_lowers_what_the_bucket_holds() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    limiter.take("p", principal(records=1000), 1, 1)
    lowered = principal(records=10)
    assert admitted(limiter, lowered, 10)
    assert not admitted(limiter, lowered, 1)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="burst_seconds"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="max_buckets"):
        RateLimiter(1.0, max_buckets=3)
