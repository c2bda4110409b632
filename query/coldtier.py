"""The query side of the cold tier: which objects answer a call, and their rows.

The manifest is asked through the call's PostgreSQL reads (``QueryCall.fetch``: same
deadline, same error mapping); the objects are read on threads of this tier's own
(``OTLPD_COLD_READ_THREADS``), which bounds how many objects the whole server reads at
once and so the memory their columns take, through one block cache
(``OTLPD_COLD_CACHE_BYTES``, ``storage.blockcache``).

What goes wrong is answered as for the hot tier: an object store that cannot be reached
is UNAVAILABLE with RetryInfo, a call out of time is DEADLINE_EXCEEDED or
RESOURCE_EXHAUSTED. An object the manifest named a moment ago that is gone from the store
was deleted by cold retention in between: it is read as empty, as the manifest now says.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from query.call import QueryCall
from storage import keybloom
from storage.api import StorageError, StorageTimeout
from storage.blockcache import BlockCache
from storage.cold_reader import ColdReader, ranges
from storage.objectstore import ObjectStore
from storage.postgres import cold_manifest
from storage.postgres.cold_manifest import ColdObject

log = logging.getLogger(__name__)

T = TypeVar("T")

# Chooses, from an object's footer, the row groups that may hold what a read wants.
Choose = Callable[[pq.FileMetaData], Sequence[int]]


@dataclass(frozen=True, slots=True)
class Lookup:
    """Which objects of ``signals`` (newest first) may hold ``keys`` of ``kind``, by the
    manifest's key blooms (``storage.keybloom``): ``statement()`` is one read of them, to
    send alone (``ColdTier.holding_any``) or with the call's other reads in one round trip,
    and ``answer(rows)`` its answer: per key, each object that may hold it with the row
    groups that may (None: the blooms of ``kind`` are per object; ``Read.keys`` finds its
    row groups). Only objects with rows in ``[start_ns, end_ns)`` (None: open)."""

    kind: int
    keys: tuple[bytes, ...]
    signals: tuple[str, ...]
    start_ns: int | None = None
    end_ns: int | None = None

    def statement(self, project: str) -> cold_manifest.Statement:
        shards = sorted({keybloom.shard_of(key) for key in self.keys})
        return cold_manifest.key_blooms(
            project, self.kind, shards, self.signals, start_ns=self.start_ns, end_ns=self.end_ns
        )

    def answer(
        self, rows: Sequence[Sequence[Any]]
    ) -> dict[bytes, list[tuple[ColdObject, list[int] | None]]]:
        shards = {key: keybloom.shard_of(key) for key in self.keys}
        per_group = keybloom.PER_ROW_GROUP[self.kind]
        found: dict[bytes, list[tuple[ColdObject, list[int] | None]]] = {k: [] for k in self.keys}
        for row in rows:
            segment_bits, hashes, bits, shard = int(row[9]), int(row[10]), bytes(row[11]), row[12]
            obj: ColdObject | None = None
            for key in self.keys:
                if shards[key] != shard:
                    continue
                groups = keybloom.maybe_in(key, segment_bits, hashes, bits)
                if groups:
                    obj = obj or ColdObject.from_row(tuple(row))
                    found[key].append((obj, groups if per_group else None))
        return found


@dataclass(frozen=True, slots=True)
class Span:
    """One row group of an object and the time range of its rows (ns, inclusive)."""

    group: int
    low_ns: int
    high_ns: int


@dataclass(frozen=True, slots=True)
class Read:
    """One object to read: its columns, and which row groups: ``groups`` known beforehand
    (a word bloom's), narrowed to those whose Parquet bloom filter on ``keys[0]`` may hold
    one of the values ``keys[1]``, then by ``choose`` (from the footer's statistics)."""

    obj: ColdObject
    columns: Sequence[str]
    groups: Sequence[int] | None = None
    choose: Choose | None = None
    keys: tuple[str, Sequence[bytes]] | None = None
    # The rows of each row group to keep (``storage.cold_reader.ColdReader.read``), run on
    # the reading thread.
    keep: Callable[[pa.Table], pa.Table] | None = None


class ColdTier:
    """Cold objects for the query API: the manifest's answers and the objects' rows."""

    def __init__(
        self, open_store: Callable[[], ObjectStore], *, cache_bytes: int, threads: int
    ) -> None:
        """``open_store`` is called on the first read (in a thread: it may reach S3), so
        a store that is down fails the reads that need it, never start-up."""
        self._open_store = open_store
        self._reader: ColdReader | None = None
        self._opening = threading.Lock()
        self.cache = BlockCache(cache_bytes)
        self.threads = threads
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="otlpd-cold")

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _open(self) -> ColdReader:
        with self._opening:
            if self._reader is None:
                self._reader = ColdReader(self._open_store(), self.cache)
            return self._reader

    async def objects(
        self,
        call: QueryCall,
        signal: str | Sequence[str],
        start_ns: int | None,
        end_ns: int | None,
    ) -> list[ColdObject]:
        """The objects of ``signal`` (or of several, in one read) that may hold rows in
        ``[start_ns, end_ns)``, newest first (by their newest row)."""
        rows = await call.fetch(*cold_manifest.objects(call.project, signal, start_ns, end_ns))
        return [ColdObject.from_row(row) for row in rows]

    async def one(self, call: QueryCall, object_id: int) -> ColdObject | None:
        """The object ``object_id`` of the call's project, while the manifest names it."""
        rows = await call.fetch(*cold_manifest.one_object(call.project, object_id))
        return ColdObject.from_row(rows[0]) if rows else None

    async def holding(
        self,
        call: QueryCall,
        kind: int,
        key: bytes,
        signals: tuple[str, ...],
        start_ns: int | None = None,
    ) -> list[tuple[ColdObject, list[int] | None]]:
        """The objects of ``signals`` (newest first) whose key blooms say they may hold
        ``key`` (``storage.keybloom``), each with the row groups that may (None: the
        blooms of ``kind`` are per object; ``Read.keys`` finds its row groups)."""
        return (await self.holding_any(call, kind, [key], signals, start_ns=start_ns))[key]

    async def holding_any(
        self,
        call: QueryCall,
        kind: int,
        keys: Sequence[bytes],
        signals: tuple[str, ...],
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> dict[bytes, list[tuple[ColdObject, list[int] | None]]]:
        """``holding`` for several keys of one kind, in one read of the manifest; only
        objects with rows in ``[start_ns, end_ns)`` (None: open)."""
        lookup = Lookup(kind, tuple(keys), signals, start_ns, end_ns)
        if not keys:
            return lookup.answer([])
        return lookup.answer(await call.fetch(*lookup.statement(call.project)))

    async def plan(self, call: QueryCall, reads: Sequence[Read]) -> list[list[Span]]:
        """Per read, the row groups it would read, each with the time range its statistics
        give (``storage.cold_reader.ranges``; the object's where a group has none): what a
        scan needs to read the row groups of many objects newest (or oldest) first."""
        return await self._run(call, [(self._plan_one, read) for read in reads])

    async def read(self, call: QueryCall, reads: Sequence[Read]) -> list[pa.Table]:
        """The rows of every read (each with ``storage.cold_reader.ROW``), in order, read
        ``threads`` objects at a time within the call's time."""
        return await self._run(call, [(self._read_one, read) for read in reads])

    async def _run(
        self, call: QueryCall, work: Sequence[tuple[Callable[[QueryCall, Read], T], Read]]
    ) -> list[T]:
        """Each ``function(call, read)`` on the tier's threads, within the call's time."""
        if not work:
            return []
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + call.seconds_left()[0]

        def timed(function: Callable[[QueryCall, Read], T], read: Read) -> T:
            if time.monotonic() >= deadline:
                raise StorageTimeout("out of time before reading a cold object")
            return function(call, read)

        futures = [
            loop.run_in_executor(self._executor, timed, function, read) for function, read in work
        ]
        try:
            return list(await asyncio.gather(*futures))
        except StorageTimeout as exc:
            raise call.out_of_time() from exc
        except StorageError as exc:
            raise call.failed(exc) from exc

    def _groups(self, call: QueryCall, read: Read) -> tuple[Any, Sequence[int]] | None:
        """The object's footer and the row groups ``read`` wants of it (None: the object
        is gone)."""
        reader = self._open()
        stats = call.cold_stats
        try:
            metadata = reader.metadata(read.obj, stats)
            groups: Sequence[int] = (
                range(metadata.num_row_groups) if read.groups is None else read.groups
            )
            if read.keys is not None:
                column, values = read.keys
                holding = set(reader.groups_holding(read.obj, metadata, column, values, stats))
                groups = [g for g in groups if g in holding]
        except FileNotFoundError:
            log.info("cold object %s is gone (cold retention); read as empty", read.obj.key)
            return None
        if read.choose is not None:
            chosen = set(read.choose(metadata))
            groups = [g for g in groups if g in chosen]
        return metadata, groups

    def _plan_one(self, call: QueryCall, read: Read) -> list[Span]:
        found = self._groups(call, read)
        if found is None:
            return []
        metadata, groups = found
        times = ranges(metadata, "time")
        spans = []
        for g in groups:
            low, high = times[g] or (read.obj.min_ns, read.obj.max_ns)
            spans.append(Span(g, int(low), int(high)))
        return spans

    def _read_one(self, call: QueryCall, read: Read) -> pa.Table:
        found = self._groups(call, read)
        if found is None:
            return _no_rows(read.columns)
        metadata, groups = found
        reader = self._open()
        try:
            return reader.read(
                read.obj, metadata, groups, read.columns, call.cold_stats, keep=read.keep
            )
        except FileNotFoundError:
            log.info("cold object %s is gone (cold retention); read as empty", read.obj.key)
            return _no_rows(read.columns)


def _no_rows(columns: Sequence[str]) -> Any:
    from storage.cold_reader import ROW

    return pa.table({name: pa.array([], pa.null()) for name in [*columns, ROW]})


def true(condition: Any) -> np.ndarray:
    """A boolean Arrow array as numpy, null as false (as SQL's WHERE takes NULL)."""
    return np.asarray(pc.fill_null(condition, False), dtype=bool)


def all_true(rows: int, conditions: Sequence[Any]) -> np.ndarray:
    """The rows (of ``rows``) where every condition (boolean Arrow arrays) holds."""
    keep = np.ones(rows, dtype=bool)
    for condition in conditions:
        keep &= true(condition)
    return keep
