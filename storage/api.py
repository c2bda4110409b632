"""The seams between otlpd and its stores: the protocols the receiver and pipeline rely on.

otlpd's pipeline knows these protocols, never PostgreSQL: a store is anything that keeps
their contracts, and the contract suite in ``tests/storage`` holds every implementation
to them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from storage.model import RowBatch


class StorageError(Exception):
    """Base of every error a store raises; the pipeline maps each kind to an answer."""


class StorageUnavailable(StorageError):
    """The store cannot be reached or is failing for reasons unrelated to the data.

    Retrying the same rows later may succeed: the client is told UNAVAILABLE with
    RetryInfo, and nothing of the write was kept.
    """


class StorageDataError(StorageError):
    """The store refused the data itself (a constraint, an out-of-range value).

    Retrying the same rows will fail again. The pipeline splits a group commit that
    fails this way so that only the offending request is refused.
    """


class StorageTimeout(StorageError):
    """A read ran past the time it was given and was cancelled in the store.

    The query layer decides what that means to the client: its own deadline passed, or the
    query is too costly for the server's budget.
    """


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What one committed transaction held, for metrics."""

    spans: int
    logs: int
    points: int
    series: int
    resources: int
    sessions: int
    copy_seconds: float
    commit_seconds: float


class Writer(Protocol):
    """Stores row batches durably, one transaction per call.

    ``write`` blocks (it is called from a writer thread so that the event loop keeps
    serving while libpq waits on the network) and is safe to call from several threads
    at once. It returns only after the transaction that holds *every* row of *every*
    batch has committed; if it raises, none of them was kept. Writing the same batch
    twice stores its records twice: deduplication, where wanted, happens at query time.

    What a batch needs besides the transaction (time partitions) is made by ``prepare``,
    one batch at a time, before the batch joins a group commit: a problem there (a lock
    not granted in time) fails that batch alone and never stalls the others. ``write``
    still makes anything missing, for what changed behind the writer's back.
    """

    def ready(self, batch: RowBatch) -> bool:
        """True when ``prepare(batch)`` has nothing to do. Cheap; never blocks."""
        ...

    def prepare(self, batch: RowBatch) -> None:
        """Makes what ``batch`` needs before it is written; blocking, may wait for locks.

        Raises ``StorageUnavailable`` when that cannot be done now (retry later).
        """
        ...

    def write(self, batches: Sequence[RowBatch]) -> WriteStats: ...

    def close(self) -> None: ...


class SessionDirectory(Protocol):
    """Remembers which project and user a session belongs to.

    A record that carries only ``session.id`` is completed from it. Lookups may be
    served from a bounded cache, so a session's owner learned on another replica may
    be seen a little late; that is the price of not asking the database per record.
    """

    async def lookup(self, session_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
        """Maps each known session id to ``(project_id, user_id)``; unknown ids are absent."""
        ...
