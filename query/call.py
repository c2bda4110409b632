"""One query RPC in flight: its project, its time left, and its reads, errors mapped once.

Every read of a query goes through ``QueryCall.fetch``: it gives PostgreSQL the nearer of
the client's deadline and the server's budget (``OTLPD_QUERY_BUDGET``), and turns what
the store raises into ``otlpd.errors``: a statement stopped by the client's deadline is
DEADLINE_EXCEEDED; one stopped by the budget is RESOURCE_EXHAUSTED with advice; an
unreachable store is UNAVAILABLE with RetryInfo. The store's own words never reach the
client (``otlpd.errors.from_storage``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, LiteralString

from otlpd.errors import BadArgument, OtlpdError, QueryDeadline, QueryTooCostly, from_storage
from storage.api import StorageDataError, StorageError, StorageTimeout
from storage.blockcache import FetchStats
from storage.postgres.reading import Query, ReadPool

if TYPE_CHECKING:
    from query.coldtier import ColdTier

ADVICE = "narrow the time range or add a filter (service, trace_id, session_id)"


@dataclass(slots=True)
class QueryCall:
    """The context every query function receives."""

    project: str
    pool: ReadPool
    budget: float
    retry_after: float
    # time.monotonic() when the client's deadline passes; None: no deadline.
    deadline: float | None = None
    started: float = field(default_factory=time.monotonic)
    # The cold tier (None: the server has none), and what this call read of it.
    cold: ColdTier | None = None
    cold_stats: FetchStats = field(default_factory=FetchStats)

    def seconds_left(self) -> tuple[float, bool]:
        """(seconds a statement may still run, whether the client's deadline is the bound)."""
        budget_left = self.budget - (time.monotonic() - self.started)
        if self.deadline is None:
            return budget_left, False
        deadline_left = self.deadline - time.monotonic()
        if deadline_left < budget_left:
            return deadline_left, True
        return budget_left, False

    async def fetch(
        self,
        query: Query,
        params: Sequence[Any] | dict[str, Any],
        *,
        binary: bool = False,
        prepare: bool | None = None,
        generic_plan: bool = False,
    ) -> list[Any]:
        """The rows of one parameterized statement, within the time this call has left."""
        batches = await self.fetch_many(
            [(query, params)], binary=binary, prepare=prepare, generic_plan=generic_plan
        )
        return batches[0]

    async def fetch_many(
        self,
        statements: Sequence[tuple[Query, Sequence[Any] | dict[str, Any]]],
        *,
        binary: bool = False,
        settings: Sequence[LiteralString] = (),
        prepare: bool | None = None,
        generic_plan: bool = False,
    ) -> list[list[Any]]:
        """Several statements on one connection, in order, within the time left
        (``binary``, ``settings``, ``prepare``, ``generic_plan``: see
        ``ReadPool.fetch_many``)."""
        seconds, by_deadline = self.seconds_left()
        if seconds <= 0:
            raise self._out_of_time(by_deadline)
        try:
            return await self.pool.fetch_many(
                statements,
                seconds=seconds,
                binary=binary,
                settings=settings,
                prepare=prepare,
                generic_plan=generic_plan,
            )
        except StorageTimeout as exc:
            raise self._out_of_time(self.seconds_left()[1] or by_deadline) from exc
        except StorageError as exc:
            raise self.failed(exc) from exc

    def failed(self, exc: StorageError) -> OtlpdError:
        """What answers a store's failure during this call."""
        if isinstance(exc, StorageDataError):
            # What PostgreSQL refused of a read is the request's doing (a regular
            # expression it cannot compile, a value out of range): permanent.
            from_storage(exc, self.retry_after)  # logs it under a reference
            return BadArgument("request", "a value in the request was refused")
        return from_storage(exc, self.retry_after)

    def out_of_time(self) -> Exception:
        """What answers a read stopped because this call's time ran out."""
        return self._out_of_time(self.seconds_left()[1])

    def _out_of_time(self, by_deadline: bool) -> Exception:
        if by_deadline:
            return QueryDeadline("the deadline passed before the query finished")
        return QueryTooCostly(
            f"the query needs more than the server's budget of {self.budget:g}s; {ADVICE}"
        )
