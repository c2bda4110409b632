"""Usage per project: committed records and their request bytes, counted in memory per
UTC day and signal, added to PostgreSQL every ``OTLPD_USAGE_FLUSH``.

``UsageMeter.add`` runs once per committed Export, on the event loop: it updates a dict
and two Prometheus counters, never touches the network. ``run`` writes what accumulated
in one statement per period (``storage.postgres.usage``); counts that fail to be written
are put back and written with the next ones, so an outage of PostgreSQL delays usage but
does not lose it.

Bounded. The counts are keyed by ``(project, day, signal)``, and projects are named by
clients while auth is off, so the number of keys is the client's choice. At
``max_keys / 2`` keys the meter writes early. If writes keep failing and ``max_keys`` keys
are held, a new key's counts are *folded* into the project ``OTHER_PROJECT`` (``""``, an
id no record can have) of the same day and signal: totals stay exact, and only the
attribution of counts beyond ``max_keys`` projects-days-signals is lost. The Prometheus
counters have the same problem and answer it the same way: beyond ``max_labelled``
projects, counts go to the label ``OTHER_LABEL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any, Final, Protocol

from otlpd.instruments import Instruments

log = logging.getLogger(__name__)

OTHER_PROJECT: Final = ""
OTHER_LABEL: Final = "(other)"
_EPOCH: Final = date(1970, 1, 1)
_DAY_SECONDS: Final = 86_400


class UsageStore(Protocol):
    """Where usage is kept (``storage.postgres.usage.PostgresUsage``)."""

    async def write(self, counts: Mapping[tuple[str, date, str], tuple[int, int]]) -> None:
        """Adds ``(records, bytes)`` per ``(project, UTC day, signal)`` to the stored
        totals in one transaction; if it raises (a ``StorageError``), nothing was added."""
        ...


class UsageMeter:
    """Counts committed records per project, UTC day and signal; writes them periodically.

    ``add`` must be called on the event loop that runs ``run``. At shutdown, cancel
    ``run`` (a write in progress is finished first) and then await ``flush``.
    """

    def __init__(
        self,
        store: UsageStore,
        *,
        flush_every: float = 10.0,
        instruments: Instruments | None = None,
        max_keys: int = 10_000,
        max_labelled: int = 1_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if flush_every <= 0 or max_keys <= 1 or max_labelled <= 0:
            raise ValueError("flush_every, max_keys and max_labelled must be positive")
        self._store = store
        self._flush_every = flush_every
        self._max_keys = max_keys
        self._early = max_keys // 2
        self._max_labelled = max_labelled
        self._clock = clock
        self._metrics = instruments
        # (project, days since the epoch in UTC, signal) -> [records, bytes]
        self._pending: dict[tuple[str, int, str], list[int]] = {}
        self._labelled: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._labelled_projects: set[str] = set()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failing = False

    @property
    def pending(self) -> int:
        """Keys counted and not yet written."""
        return len(self._pending)

    def add(self, project: str, signal: str, records: int, nbytes: int) -> None:
        """Counts ``records`` committed records of ``nbytes`` request bytes, today (UTC)."""
        self._count((project, int(self._clock() // _DAY_SECONDS), signal), records, nbytes)
        if self._metrics is not None:
            records_total, bytes_total = self._children(project, signal)
            records_total.inc(records)
            bytes_total.inc(nbytes)

    def _count(self, key: tuple[str, int, str], records: int, nbytes: int) -> None:
        counts = self._pending.get(key)
        if counts is None:
            if len(self._pending) >= self._max_keys:
                key = (OTHER_PROJECT, key[1], key[2])
                counts = self._pending.get(key)
            if counts is None:
                counts = self._pending[key] = [0, 0]
                if len(self._pending) >= self._early:
                    self._wake.set()
        counts[0] += records
        counts[1] += nbytes

    def _children(self, project: str, signal: str) -> tuple[Any, Any]:
        """The two counters of ``project`` and ``signal``, made once (a label lookup in
        prometheus_client takes a lock and a tuple: not per Export)."""
        found = self._labelled.get((project, signal))
        if found is not None:
            return found
        assert self._metrics is not None
        label = project
        if project not in self._labelled_projects:
            if len(self._labelled_projects) < self._max_labelled:
                self._labelled_projects.add(project)
            else:
                label = OTHER_LABEL
                found = self._labelled.get((label, signal))
                if found is not None:
                    return found
        found = (
            self._metrics.usage_records.labels(label, signal),
            self._metrics.usage_bytes.labels(label, signal),
        )
        self._labelled[(label, signal)] = found
        return found

    async def flush(self) -> bool:
        """Writes everything counted so far; False (counts kept for later) if it failed."""
        async with self._lock:
            if not self._pending:
                return True
            taken, self._pending = self._pending, {}
            counts = {
                (project, _EPOCH + timedelta(days=day), signal): (c[0], c[1])
                for (project, day, signal), c in taken.items()
            }
            try:
                await self._store.write(counts)
            except asyncio.CancelledError:
                self._restore(taken)
                raise
            except Exception as exc:
                self._restore(taken)
                if not self._failing:
                    log.warning(
                        "cannot write usage (%d keys kept, retried every %.0fs): %s",
                        len(self._pending),
                        self._flush_every,
                        exc,
                    )
                    self._failing = True
                return False
            if self._failing:
                log.info("usage written again")
                self._failing = False
            return True

    def _restore(self, taken: dict[tuple[str, int, str], list[int]]) -> None:
        for key, (records, nbytes) in taken.items():
            self._count(key, records, nbytes)

    async def run(self) -> None:
        """Writes every ``flush_every`` seconds (sooner when many keys are held) until
        cancelled; a write under way when cancelled is finished first, so that its
        counts are neither lost nor written twice."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_every):
                    await self._wake.wait()
            self._wake.clear()
            write = asyncio.ensure_future(self.flush())
            try:
                written = await asyncio.shield(write)
            except asyncio.CancelledError:
                await write
                raise
            if not written:
                # Not early again until a write succeeds: the store is failing.
                await asyncio.sleep(self._flush_every)
                self._wake.clear()
