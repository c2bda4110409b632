"""A bounded cache of cold objects' bytes, in fixed blocks, and a file view through it.

The cold tier's objects never change once the manifest names them (a key written again
has another checksum, and the checksum is part of every cache key), so what was fetched
once can be kept for as long as there is room. Caching fixed blocks of an object rather
than whole row groups or files serves every reader alike: pyarrow's reads of a footer, of
the column chunks one query needs, of the page indexes; a later query that needs other
columns of the same row group finds the blocks it shares with the first one.

``CachedFile`` is the file object pyarrow reads through (``pyarrow.parquet.ParquetFile``
takes any seekable binary file): each read is served from cached blocks, and the missing
ones are fetched from the store with one ranged GET per run of consecutive missing blocks.

The cache holds at most ``max_bytes`` (``OTLPD_COLD_CACHE_BYTES``), least recently used
out first; parsed footers (``FileMetaData``) are kept the same way, weighed at their
serialized size. Everything here may be called from several threads.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from storage.objectstore import ObjectStore

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

BLOCK_BYTES: Final = 64 * 1024
"""One block. A read of consecutive missing blocks is one ranged GET whatever their
number, so a small block costs no more requests for a whole row group (~330 KB of
adjacent column chunks, storage.parquet) and fetches less it does not need around a
small read (a footer, a bloom filter, a column chunk of a few KB)."""


@dataclass(slots=True)
class FetchStats:
    """What reading one answer cost: objects opened (each once, however often read), row
    groups read and bytes fetched from the store."""

    row_groups: int = 0
    bytes: int = 0
    _opened: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def objects(self) -> int:
        return len(self._opened)

    def add(self, *, opened: str | None = None, row_groups: int = 0, fetched: int = 0) -> None:
        with self._lock:
            if opened is not None:
                self._opened.add(opened)
            self.row_groups += row_groups
            self.bytes += fetched


class BlockCache:
    """Values by key, least recently used out first, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._size

    def get(self, key: Hashable) -> Any:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: Any, weight: int) -> None:
        if weight > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._entries[key] = (value, weight)
            self._size += weight
            while self._size > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped


class CachedFile(io.RawIOBase):
    """A read-only, seekable view of one object (``key`` at version ``sha256``, ``size``
    bytes) whose reads go through ``cache``; what the store sends is counted in ``stats``."""

    def __init__(
        self,
        store: ObjectStore,
        cache: BlockCache,
        key: str,
        *,
        sha256: str,
        size: int,
        stats: FetchStats,
    ) -> None:
        super().__init__()
        self._store = store
        self._cache = cache
        self._key = key
        self._version = sha256
        self._size = size
        self._stats = stats
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read_at(self._position, len(view))
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._position
        data = self.read_at(self._position, size)
        self._position += len(data)
        return data

    def read_at(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the object)."""
        end = min(self._size, offset + length)
        if offset >= end:
            return b""
        first, last = offset // BLOCK_BYTES, (end - 1) // BLOCK_BYTES
        blocks: dict[int, bytes] = {}
        missing: list[int] = []
        for index in range(first, last + 1):
            found = self._cache.get(("block", self._key, self._version, index))
            if found is None:
                missing.append(index)
            else:
                blocks[index] = found
        for run_start, run_end in _runs(missing):
            low = run_start * BLOCK_BYTES
            high = min(self._size, (run_end + 1) * BLOCK_BYTES)
            data = self._store.get_range(self._key, low, high - low)
            self._stats.add(fetched=len(data))
            for index in range(run_start, run_end + 1):
                block = data[
                    (index - run_start) * BLOCK_BYTES : (index - run_start + 1) * BLOCK_BYTES
                ]
                blocks[index] = block
                self._cache.put(("block", self._key, self._version, index), block, len(block))
        joined = b"".join(blocks[i] for i in range(first, last + 1))
        skip = offset - first * BLOCK_BYTES
        return joined[skip : skip + (end - offset)]


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``(first, last)`` of sorted ``indexes``."""
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs
