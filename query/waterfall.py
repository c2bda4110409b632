"""A trace's spans in waterfall order: parent before child, siblings by start, with depth.

The hot tier keeps every copy of a retried span, and a trace may be broken (a parent that
was never received, sampled away, or still in flight) or even cyclic (ids are the
client's). So the order is built defensively:

* copies of one span id collapse to the first one seen;
* a span whose parent is not in the trace is a root (depth 0), like one with no parent,
  as Jaeger and Tempo render "missing parent" spans: at the top level, roots ordered by
  start time among themselves;
* spans left unreached after walking from the roots lie on a cycle: the earliest of them
  is made a root and the walk continues, so every span appears exactly once;
* the walk is iterative, so a trace a million spans deep does not hit Python's recursion
  limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class SpanLike(Protocol):
    """What ordering needs of a span (``storage.postgres.records.SpanRow`` has it)."""

    @property
    def span_id(self) -> bytes: ...

    @property
    def parent_span_id(self) -> bytes | None: ...

    @property
    def start_time_unix_nano(self) -> int | None: ...


S = TypeVar("S", bound=SpanLike)


def _start(span: SpanLike) -> tuple[int, bytes]:
    return span.start_time_unix_nano or 0, span.span_id


def unique(spans: Iterable[S]) -> list[S]:
    """``spans`` with every span id once (the first copy kept), in their order."""
    seen: dict[bytes, S] = {}
    for span in spans:
        seen.setdefault(span.span_id, span)
    return list(seen.values())


def waterfall(spans: Iterable[S]) -> list[tuple[S, int]]:
    """``(span, depth)`` for every distinct span id of ``spans``, in waterfall order."""
    distinct = unique(spans)
    by_id = {span.span_id: span for span in distinct}
    children: dict[bytes, list[S]] = {}
    roots: list[S] = []
    for span in distinct:
        parent = span.parent_span_id
        if parent and parent in by_id and parent != span.span_id:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    for siblings in children.values():
        siblings.sort(key=_start)
    roots.sort(key=_start)

    ordered: list[tuple[S, int]] = []
    visited: set[bytes] = set()

    def walk(root: S) -> None:
        stack = [(root, 0)]
        while stack:
            span, depth = stack.pop()
            if span.span_id in visited:
                continue
            visited.add(span.span_id)
            ordered.append((span, depth))
            # Reversed so the earliest child is popped (and listed) first.
            for child in reversed(children.get(span.span_id, ())):
                if child.span_id not in visited:
                    stack.append((child, depth + 1))

    for root in roots:
        walk(root)
    if len(visited) < len(distinct):
        # Only spans on a parent cycle remain: break each at its earliest span.
        for span in sorted((s for s in distinct if s.span_id not in visited), key=_start):
            if span.span_id not in visited:
                walk(span)
    return ordered
