"""Key blooms: every key is found in its row groups; absent keys rarely are."""

from __future__ import annotations

import random

from storage import keybloom


def _find(rows: list[keybloom.ShardBloom], key: bytes) -> list[int]:
    shard = keybloom.shard_of(key)
    found = [r for r in rows if r.shard == shard]
    if not found:
        return []
    (row,) = found
    return keybloom.maybe_in(key, row.segment_bits, row.hashes, row.bits)


def test_every_key_is_found_in_exactly_its_row_groups_or_a_rare_false_one() -> None:
    rng = random.Random(7)
    groups = [[rng.randbytes(16) for _ in range(2000)] for _ in range(3)]
    groups[2].append(groups[0][0])  # one key in two row groups
    rows = keybloom.build(keybloom.TRACE, groups)
    assert {r.kind for r in rows} == {keybloom.TRACE}
    assert len({r.shard for r in rows}) == len(rows) <= keybloom.SHARDS
    for g, keys in enumerate(groups):
        for key in keys:
            assert g in _find(rows, key)
    assert _find(rows, groups[0][0])[:1] == [0] and 2 in _find(rows, groups[0][0])
    # Absent keys (seeded, so the count is the same on every run): about 1 in 15,000 per
    # filter at an object's size (0.5 ** 14 at 20 bits a key); filters this small (~16
    # keys a shard, sized for the fullest segment) measured about 1 in 6,000, i.e. ~10
    # over 3 filters x 20,000 keys.
    probes = random.Random(1)
    false = sum(len(_find(rows, probes.randbytes(16))) for _ in range(20_000))
    assert false <= 20


def test_a_shard_without_keys_has_no_row_and_finds_nothing() -> None:
    rows = keybloom.build(keybloom.SESSION, [[b"sess-1"], []])
    assert len(rows) == 1
    assert _find(rows, b"sess-1") == [0]
    assert keybloom.build(keybloom.SESSION, [[], []]) == []


def test_the_hash_not_the_key_picks_shard_and_bits() -> None:
    """Ids padded with zeros (64-bit trace ids in 16 bytes) still spread over shards."""
    padded = [bytes(8) + i.to_bytes(8, "big") for i in range(1000)]
    rows = keybloom.build(keybloom.TRACE, [padded])
    assert len(rows) > keybloom.SHARDS // 2
    assert all(_find(rows, key) == [0] for key in padded)


def test_the_export_and_a_search_find_the_same_words() -> None:
    """The export reads words from bodies' JSON text with pyarrow; a search splits its
    words in Python: the same body must give the same words both ways."""
    import json

    import pyarrow as pa

    from storage.parquet import body_words

    bodies: list[object] = [
        "Payment FAILED for user-42: card_declined (retry 3/5)",
        'quoted "word" and back\\slash\nnew\tline',
        {"msg": "Größe über 9000", "ok": True, "n": [1, 2.5]},
        "ünïcödé ÉTÉ naïve_café",
        # Whitespace other than ASCII's separates words too; trailing spaces give none.
        "no\u00a0break em\u2003space\x0bvt\x85nel\x1cfs ideo\u3000graphic   ",
        "",
    ]
    # PostgreSQL's jsonb text: ", " and ": " separators, non-ASCII kept as is.
    texts = [json.dumps(b, ensure_ascii=False) for b in bodies]
    found = body_words(pa.chunked_array([pa.array(texts)]))
    assert found is not None
    wanted: set[str] = set()
    for body, text in zip(bodies, texts, strict=True):
        wanted |= set(keybloom.word_tokens(body if isinstance(body, str) else text))
    assert {w.decode() for w in found} == wanted
