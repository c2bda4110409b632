"""Waterfall order: parents first, siblings by start, orphans and cycles as roots, each span
once."""

from __future__ import annotations

from typing import NamedTuple

from query.waterfall import unique, waterfall


class Span(NamedTuple):
    span_id: bytes
    parent_span_id: bytes | None
    start_time_unix_nano: int | None
    copy: int = 0


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def order(spans: list[Span]) -> list[tuple[int, int]]:
    return [(int.from_bytes(s.span_id, "big"), depth) for s, depth in waterfall(spans)]


def test_parent_before_child_and_siblings_by_start_time() -> None:
    spans = [
        Span(sid(4), sid(2), 40),
        Span(sid(3), sid(1), 30),
        Span(sid(2), sid(1), 20),
        Span(sid(1), None, 10),
        Span(sid(5), sid(2), 25),
    ]
    assert order(spans) == [(1, 0), (2, 1), (5, 2), (4, 2), (3, 1)]


def test_orphans_are_roots_at_the_top_level_ordered_with_the_roots_by_start() -> None:
    spans = [
        Span(sid(1), None, 50),
        Span(sid(2), sid(1), 60),
        Span(sid(7), sid(99), 10),  # its parent never arrived
        Span(sid(8), sid(7), 11),
        Span(sid(9), sid(98), 70),
    ]
    assert order(spans) == [(7, 0), (8, 1), (1, 0), (2, 1), (9, 0)]


def test_copies_of_a_span_collapse_to_the_first() -> None:
    spans = [
        Span(sid(1), None, 10, copy=0),
        Span(sid(2), sid(1), 20, copy=0),
        Span(sid(2), sid(1), 20, copy=1),
        Span(sid(1), None, 10, copy=1),
    ]
    result = waterfall(spans)
    assert [(int.from_bytes(s.span_id, "big"), s.copy, d) for s, d in result] == [
        (1, 0, 0),
        (2, 0, 1),
    ]
    assert [s.copy for s in unique(spans)] == [0, 0]


def test_a_parent_cycle_is_broken_at_its_earliest_span_and_every_span_listed_once() -> None:
    spans = [
        Span(sid(1), sid(3), 30),
        Span(sid(2), sid(1), 20),
        Span(sid(3), sid(2), 10),
        Span(sid(4), sid(4), 5),  # its own parent
        Span(sid(5), None, 40),
    ]
    assert order(spans) == [(4, 0), (5, 0), (3, 0), (1, 1), (2, 2)]


def test_a_deep_chain_does_not_recurse_and_counts_depth() -> None:
    n = 50_000
    spans = [Span(sid(i), sid(i - 1) if i else None, i) for i in reversed(range(n))]
    result = order(spans)
    assert result[0] == (0, 0)
    assert result[-1] == (n - 1, n - 1)
    assert len(result) == n


def test_no_start_time_sorts_first_and_ties_break_by_span_id() -> None:
    spans = [Span(sid(3), None, 5), Span(sid(2), None, 5), Span(sid(1), None, None)]
    assert order(spans) == [(1, 0), (2, 0), (3, 0)]
