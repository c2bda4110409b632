"""Label matchers as Alertmanager applies them: to silences now, and to whatever else
matches alerts by label (the evaluator mutes notifications with ``matches``).

The semantics are Alertmanager's (``pkg/labels.Matcher``): a label the alert lacks is
compared as the empty string, so ``severity!="page"`` matches an alert without
``severity`` and ``severity=""`` matches only such alerts; ``=~`` and ``!~`` are regular
expressions anchored at both ends (``=~"api|web"`` matches ``api``, not ``api-2``).
Matchers are validated by the query API's own function (``query.metrics.label_matchers``),
so a matcher that QueryMetrics refuses is refused here with the same words.

Stored (``alert_silences.matchers``) as ``[{"name", "op", "value"}]`` with ``op`` one of
``EQ``, ``NEQ``, ``RE``, ``NRE`` (``otlpd.query.v1.LabelMatcher.Op`` without ``OP_``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from otlpd.errors import BadArgument
from query.metrics import label_matchers
from query.proto import pb as query_pb
from storage.postgres import metric_reader

_TO_STORED: Final = {
    metric_reader.EQ: "EQ",
    metric_reader.NEQ: "NEQ",
    metric_reader.RE: "RE",
    metric_reader.NRE: "NRE",
}
_FROM_STORED: Final = {stored: op for op, stored in _TO_STORED.items()}
_PROTO_OP: Final = {
    "EQ": query_pb.LabelMatcher.OP_EQ,
    "NEQ": query_pb.LabelMatcher.OP_NEQ,
    "RE": query_pb.LabelMatcher.OP_RE,
    "NRE": query_pb.LabelMatcher.OP_NRE,
}


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """One matcher; ``op`` is ``=``, ``!=``, ``=~`` or ``!~``."""

    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, name: str, op: str, value: str) -> LabelMatcher:
        if op not in _TO_STORED:
            raise ValueError(f"unknown matcher operator {op!r}")
        regex = (
            re.compile(value, re.DOTALL) if op in (metric_reader.RE, metric_reader.NRE) else None
        )
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label's value (``""`` when absent) satisfies this matcher."""
        actual = labels.get(self.name, "")
        if self.op == metric_reader.EQ:
            return actual == self.value
        if self.op == metric_reader.NEQ:
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == metric_reader.RE else not found

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "op": _TO_STORED[self.op], "value": self.value}

    def to_proto(self) -> query_pb.LabelMatcher:
        return query_pb.LabelMatcher(
            name=self.name, op=_PROTO_OP[_TO_STORED[self.op]], value=self.value
        )

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value!r}"


def matches(matchers: Iterable[LabelMatcher], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every matcher (no matchers: True)."""
    return all(m.matches(labels) for m in matchers)


def from_proto(
    matchers: Sequence[query_pb.LabelMatcher], field: str, *, required: bool = False
) -> tuple[LabelMatcher, ...]:
    """Validated as QueryMetrics validates them (``BadArgument`` naming ``field[i]...``)."""
    if required and not matchers:
        raise BadArgument(field, "at least one matcher is required")
    return tuple(LabelMatcher.of(m.name, m.op, m.value) for m in label_matchers(matchers, field))


def from_json(stored: Iterable[Mapping[str, Any]]) -> tuple[LabelMatcher, ...]:
    """What ``to_json`` stored, back as matchers."""
    return tuple(
        LabelMatcher.of(str(m["name"]), _FROM_STORED[str(m["op"])], str(m["value"])) for m in stored
    )


def to_json(matchers: Iterable[LabelMatcher]) -> list[dict[str, str]]:
    return [m.to_json() for m in matchers]


def matches_everything(matchers: Iterable[LabelMatcher]) -> bool:
    """True when every matcher matches an alert with no labels at all: a silence of such
    matchers would silence every alert (Alertmanager refuses it)."""
    return all(m.matches({}) for m in matchers)
