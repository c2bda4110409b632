"""The Parquet files' own bloom filters: which row groups of a file may hold a value.

otlpd's files carry a split-block bloom filter per row group on the columns readers look
values up in (``storage.parquet``: trace and session ids). pyarrow writes them but has no
API to read them, so this module probes them as the Parquet format defines them
(parquet-format, "BloomFilter.md"):

* a filter is a ``BloomFilterHeader`` (Thrift compact protocol; its first field is the
  bitset's size in bytes) followed by the bitset, located by the column chunk's
  ``bloom_filter_offset`` and ``bloom_filter_length``;
* a value is hashed with XXH64 (seed 0) over its plain encoding without a length prefix
  (for ``FIXED_LEN_BYTE_ARRAY`` and ``BYTE_ARRAY``, its bytes);
* the hash's upper 32 bits pick a block of 256 bits (eight 32-bit words), the lower 32 bits
  times each of eight salts pick one bit per word; the value may be present only if all
  eight are set.

``tests/storage/test_parquet_bloom.py`` holds this to DuckDB's ``parquet_bloom_probe`` on
the same files. The filters of a column lie side by side after the row groups, so the
filters of every row group are one read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Final

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import xxhash

_SALT: Final = (
    0x47B6137B,
    0x44974D91,
    0x8824AD5B,
    0xA2B7289D,
    0x705495C7,
    0x2DF1424B,
    0x9EFC4947,
    0x5C6BFB31,
)
_BLOCK: Final = struct.Struct("<8I")
_NUM_BYTES_FIELD: Final = 0x15  # field 1 (delta 1), type i32 (5), compact protocol


def _bitset_size(blob: bytes) -> int:
    """numBytes of a ``BloomFilterHeader`` (its first field, a zigzag varint)."""
    if not blob or blob[0] != _NUM_BYTES_FIELD:
        raise ValueError("not a Parquet bloom filter header")
    shift = value = 0
    for byte in blob[1:11]:
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
    raise ValueError("a Parquet bloom filter header with a malformed size")


def may_hold(bitset: bytes, value: bytes) -> bool:
    """Whether the split-block bloom filter ``bitset`` may hold ``value``."""
    h = xxhash.xxh64_intdigest(value, seed=0)
    blocks = len(bitset) // 32
    block = ((h >> 32) * blocks) >> 32
    key = h & 0xFFFFFFFF
    words = _BLOCK.unpack_from(bitset, block * 32)
    return all(words[i] >> (((key * salt) & 0xFFFFFFFF) >> 27) & 1 for i, salt in enumerate(_SALT))


def row_groups_holding(
    metadata: pq.FileMetaData,
    column: str,
    values: Sequence[bytes],
    read_at: Callable[[int, int], bytes],
) -> list[int]:
    """The row groups whose filter on ``column`` may hold one of ``values`` (every row
    group that has no filter counts as holding them); ``read_at(offset, length)`` reads
    the file."""
    index = metadata.schema.to_arrow_schema().get_field_index(column)
    places = []
    for g in range(metadata.num_row_groups):
        chunk = metadata.row_group(g).column(index)
        offset, length = chunk.bloom_filter_offset, chunk.bloom_filter_length
        places.append((g, offset, length) if offset and length and offset > 0 else (g, 0, 0))
    filtered = [(g, o, n) for g, o, n in places if n]
    blob = b""
    start = 0
    if filtered:
        start = min(o for _, o, _ in filtered)
        blob = read_at(start, max(o + n for _, o, n in filtered) - start)
    found = []
    for g, offset, length in places:
        if not length:
            found.append(g)
            continue
        raw = blob[offset - start : offset - start + length]
        bitset = raw[length - _bitset_size(raw) :]
        if any(may_hold(bitset, value) for value in values):
            found.append(g)
    return found
