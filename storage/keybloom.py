"""Key blooms: which cold objects, and which row groups in them, may hold a key.

``GetTrace`` takes no time range and ``GetSessionTimeline`` none either, so without an
index every lookup would open every cold object of the project; a word searched over a
day would read every log body of the day. Each object instead gets, when it is tiered,
bloom filters of its distinct keys, kept in PostgreSQL (``cold_key_blooms``, migration
0008): trace ids (``TRACE``), session ids (``SESSION``) and the words of log bodies
(``WORD``). The keys are split into ``SHARDS`` shards by a hash, as Tempo shards the bloom
filters of its blocks, so a lookup reads one small row per object (the key's shard)
instead of whole filters. A row holds one filter per *segment*, concatenated: the whole
object for ids, each row group for words.

Parameters, per kind (``PARAMETERS``):

* Trace and session ids: one filter per object, 20 bits per key and 14 probes, a
  false-positive rate of about 1 in 15,000 (0.5 ** 14; measured 1 in 19,000 with 20,000
  keys an object, 1 in 6,000 with 2,000, whose shards are too small for their filters'
  double hashing to spread the probes as well): a lookup tests every object of the
  project, ~720 a month of hourly ones, so one lookup in twenty opens an object it did not
  need. Within an object, the row groups are found by the file's own bloom filters
  (``storage.parquet_bloom``): a trace's spans lie in the row groups of the services they
  ran in (rows sort by service first), so per-row-group filters here would hold almost
  every span's trace id once, ~3 bytes a span, where one per object holds each trace once
  (~0.25 bytes a span of 10-span traces, against the ~42 of its Parquet row).
* Words: one filter per row group, 10 bits and 7 probes (about 1%): a search tests only
  the objects of its time range. Words are what PostgreSQL's ``\\m``/``\\M`` call
  words (``word_tokens``), lowercased; a row group with more than ``MAX_WORDS`` distinct
  words gets a filter that admits every word (all bits set) rather than an unbounded one.

The hash is BLAKE2b of the key's bytes (16 bytes): keys are the client's, and need not be
random (a 64-bit trace id padded with zeros), so the key itself is never the hash. Bits
are numbered as numpy's ``packbits(bitorder="little")`` numbers them; positions use
double hashing over unsigned 64-bit arithmetic that wraps, the same in ``build`` and
``maybe_in``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

SHARDS: Final = 128

TRACE: Final = 1  # cold_key_blooms.kind of trace ids
SESSION: Final = 2  # of session ids
WORD: Final = 3  # of the words of log bodies

PARAMETERS: Final = {TRACE: (20, 14), SESSION: (20, 14), WORD: (10, 7)}  # bits a key, probes
PER_ROW_GROUP: Final = {TRACE: False, SESSION: False, WORD: True}  # else one per object
MAX_WORDS: Final = 100_000

# A word: a run of letters, digits and underscores (PostgreSQL's word characters for \m
# and \M), lowercased. The export finds them with pyarrow (storage.parquet) and a search
# with this; tests/storage/test_keybloom.py holds the two to the same words.
_WORD: Final = re.compile(r"\w+")

_SHARD_BITS: Final = 7  # log2(SHARDS): the low bits of the first word pick the shard
_ROUND: Final = 64


@dataclass(frozen=True, slots=True)
class ShardBloom:
    """One row of ``cold_key_blooms``: a shard's filter for each row group of an object."""

    kind: int
    shard: int
    segment_bits: int
    hashes: int
    bits: bytes


def _digests(keys: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) 64-bit words of each key's hash; the second made odd, so that
    double hashing visits distinct positions."""
    raw = b"".join(hashlib.blake2b(key, digest_size=16).digest() for key in keys)
    words = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
    return words[:, 0].copy(), words[:, 1] | np.uint64(1)


def _positions(first: np.ndarray, second: np.ndarray, hashes: int, bits: int) -> np.ndarray:
    """``(len(first), hashes)`` bit positions in a filter of ``bits`` bits."""
    base = first >> np.uint64(_SHARD_BITS)
    steps = np.arange(hashes, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = base[:, None] + steps[None, :] * second[:, None]
    positions: np.ndarray = (mixed % np.uint64(bits)).astype(np.int64)
    return positions


def shard_of(key: bytes) -> int:
    """The shard that holds ``key``."""
    first, _ = _digests([key])
    return int(first[0] & np.uint64(SHARDS - 1))


def word_tokens(text: str) -> list[str]:
    """The words of ``text`` as the word blooms hold them."""
    return [word.lower() for word in _WORD.findall(text)]


def build(kind: int, row_groups: Sequence[Iterable[bytes] | None]) -> list[ShardBloom]:
    """The shard rows of one object whose segment ``i`` (a row group, or the whole object:
    ``PER_ROW_GROUP``) holds the keys ``row_groups[i]`` (distinct or not; None: unknown,
    every key may be there). A shard no segment has a key of gets no row, unless a
    segment's keys are unknown."""
    bits_per_key, hashes = PARAMETERS[kind]
    hashed = [None if keys is None else _digests(set(keys)) for keys in row_groups]
    rows: list[ShardBloom] = []
    for shard in range(SHARDS):
        members: list[tuple[np.ndarray, np.ndarray] | None] = []
        for found in hashed:
            if found is None:
                members.append(None)
                continue
            first, second = found
            chosen = (first & np.uint64(SHARDS - 1)) == np.uint64(shard)
            members.append((first[chosen], second[chosen]))
        most = max((len(m[0]) for m in members if m is not None), default=0)
        if not most and all(m is not None for m in members):
            continue
        bits = max(_ROUND, -(-most * bits_per_key // _ROUND) * _ROUND)
        segments = []
        for member in members:
            flags = np.zeros(bits, dtype=bool)
            if member is None:
                flags[:] = True
            elif len(member[0]):
                flags[_positions(member[0], member[1], hashes, bits).ravel()] = True
            segments.append(np.packbits(flags, bitorder="little").tobytes())
        rows.append(ShardBloom(kind, shard, bits, hashes, b"".join(segments)))
    return rows


def maybe_in(key: bytes, segment_bits: int, hashes: int, bits: bytes) -> list[int]:
    """The segments whose filter in ``bits`` (a shard row of ``key``'s shard) may hold
    ``key``; a segment not listed certainly does not."""
    first, second = _digests([key])
    positions = _positions(first, second, hashes, segment_bits)[0]
    flags = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), bitorder="little")
    groups = len(flags) // segment_bits
    if not groups:
        return []
    table = flags[: groups * segment_bits].reshape(groups, segment_bits)
    return [int(g) for g in np.flatnonzero(table[:, positions].all(axis=1))]
