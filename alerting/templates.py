"""Annotation templates: ``{{ $value }}``, ``{{ $labels.service }}``, and nothing else.

Prometheus renders annotations with Go's text/template; otlpd renders the part of it that
alerting rules use, with a parser of its own: a template is text and ``{{ ... }}``
actions, an action is one operand (``$value``, ``$labels.NAME``, ``index $labels "NAME"``,
``$externalURL``, or Alertmanager's ``.Value``, ``.Labels.NAME``, ``.ExternalURL``; NAME
may have dots, as OpenTelemetry's attribute names do) optionally piped through
``humanize``, ``humanizePercentage``, ``humanizeDuration`` or ``printf "FORMAT"`` (also
written ``printf "FORMAT" OPERAND``). Anything else is refused when the rule is saved:
nothing is evaluated, no attribute of any object is looked up, so a template cannot
reach anything but the alert's value and labels. ``parse`` checks a template (the API,
on save); ``render`` fills it in (the evaluator, per alert).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MAX_TEMPLATE_CHARS: Final = 10_000
_ACTION: Final = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# A label name as OpenTelemetry has them (service.name): Prometheus' characters and dots.
_LABEL: Final = r"[a-zA-Z_][a-zA-Z0-9_.]*"
_OPERAND: Final = re.compile(
    r"^(?:(\$value|\.Value)|(\$externalURL|\.ExternalURL)"
    rf"|(?:\$labels|\.Labels)\.({_LABEL})"
    r'|index\s+(?:\$labels|\.Labels)\s+"([^"\\]*)")$'
)
_PRINTF: Final = re.compile(r'^printf\s+"((?:[^"\\]|\\.)*)"(?:\s+(\S+))?$')
# One verb of Go's fmt that makes sense for a number or a label: flags, width, precision.
_VERB: Final = re.compile(r"%([-+ 0#]*)(\d{0,3})(?:\.(\d{1,3}))?([dfegsvx])")
_FUNCTIONS: Final = ("humanize", "humanizePercentage", "humanizeDuration")
_SI_LARGE: Final = ("", "k", "M", "G", "T", "P", "E", "Z", "Y")
_SI_SMALL: Final = ("", "m", "u", "n", "p", "f", "a", "z", "y")


class TemplateError(ValueError):
    """A template this renderer does not take; the message says what and where."""


@dataclass(frozen=True, slots=True)
class _Action:
    operand: str  # "value", "externalURL" or "label"
    label: str
    pipeline: tuple[tuple[str, str], ...]  # (function, printf format or "")


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and actions, in order."""

    parts: tuple[str | _Action, ...]

    def render(self, value: float | None, labels: Mapping[str, str], external_url: str = "") -> str:
        out: list[str] = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else _run(part, value, labels, external_url))
        return "".join(out)


def parse(text: str) -> Template:
    """``text`` as a Template; ``TemplateError`` saying what is wrong."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"at most {MAX_TEMPLATE_CHARS} characters")
    parts: list[str | _Action] = []
    position = 0
    for match in _ACTION.finditer(text):
        literal = text[position : match.start()]
        _check_literal(literal)
        if literal:
            parts.append(literal)
        parts.append(_action(match.group(1).strip()))
        position = match.end()
    rest = text[position:]
    _check_literal(rest)
    if rest:
        parts.append(rest)
    return Template(tuple(parts))


def render(
    text: str, value: float | None, labels: Mapping[str, str], external_url: str = ""
) -> str:
    """``text`` parsed and rendered; ``TemplateError`` if it does not parse."""
    return parse(text).render(value, labels, external_url)


def _check_literal(text: str) -> None:
    if "{{" in text or "}}" in text:
        raise TemplateError("an unclosed or stray {{ or }}")


def _action(body: str) -> _Action:
    if not body:
        raise TemplateError("an empty {{ }}")
    stages = [stage.strip() for stage in body.split("|")]
    first = stages[0]
    pipeline: list[tuple[str, str]] = []
    printf = _PRINTF.match(first)
    if printf and printf.group(2):  # printf "FORMAT" OPERAND
        operand = printf.group(2)
        pipeline.append(("printf", _format(printf.group(1))))
    else:
        operand = first
    found = _OPERAND.match(operand)
    if not found:
        raise TemplateError(
            f"unknown template expression {first!r}: expected $value, $labels.NAME or "
            "$externalURL (or .Value, .Labels.NAME, .ExternalURL)"
        )
    if found.group(1):
        kind, label = "value", ""
    elif found.group(2):
        kind, label = "externalURL", ""
    else:
        kind, label = "label", found.group(3) or found.group(4)
    for stage in stages[1:]:
        if stage in _FUNCTIONS:
            pipeline.append((stage, ""))
            continue
        printf = _PRINTF.match(stage)
        if printf and not printf.group(2):
            pipeline.append(("printf", _format(printf.group(1))))
            continue
        raise TemplateError(
            f"unknown template function {stage!r}: expected {', '.join(_FUNCTIONS)} "
            'or printf "FORMAT"'
        )
    return _Action(kind, label, tuple(pipeline))


def _format(go: str) -> str:
    """A Go printf format with at most one verb, as a Python %-format."""
    text = go.replace('\\"', '"').replace("\\\\", "\\")
    verbs = list(_VERB.finditer(text))
    stripped = _VERB.sub("", text).replace("%%", "")
    if "%" in stripped or len(verbs) > 1:
        raise TemplateError(
            f"printf format {go!r}: one verb at most (%d, %f, %e, %g, %s, %v, %x, "
            "with flags, width and precision)"
        )
    return text


def _run(action: _Action, value: float | None, labels: Mapping[str, str], url: str) -> str:
    current: float | str | None
    if action.operand == "value":
        current = value
    elif action.operand == "externalURL":
        current = url
    else:
        current = labels.get(action.label, "")
    for function, fmt in action.pipeline:
        current = _apply(function, fmt, current)
    return _text(current)


def _apply(function: str, fmt: str, current: float | str | None) -> str:
    if current is None:
        return ""
    number = _number(current)
    if function == "printf":
        return _printf(fmt, current, number)
    if number is None:
        return str(current)  # Prometheus leaves what is not a number as it is
    if function == "humanize":
        return humanize(number)
    if function == "humanizePercentage":
        return f"{_g4(number * 100)}%"
    return humanize_duration(number)


def _number(current: float | str) -> float | None:
    if isinstance(current, float | int):
        return float(current)
    try:
        return float(current)
    except ValueError:
        return None


def _printf(fmt: str, current: float | str, number: float | None) -> str:
    verb = _VERB.search(fmt)
    if verb is None:
        return fmt.replace("%%", "%")
    flags, width, precision, letter = verb.groups()
    spec = f"%{flags}{width}{'.' + precision if precision is not None else ''}"
    if letter in "dx":
        finite = number is not None and math.isfinite(number)
        piece = (spec + letter) % int(number) if finite and number is not None else str(current)
    elif letter in "feg":
        piece = (spec + letter) % number if number is not None else str(current)
    else:  # s, v
        piece = (spec + "s") % _text(current)
    return fmt[: verb.start()].replace("%%", "%") + piece + fmt[verb.end() :].replace("%%", "%")


def _text(current: float | str | None) -> str:
    if current is None:
        return ""
    if isinstance(current, str):
        return current
    return go_float(current)


def go_float(value: float) -> str:
    """``value`` as Go's ``%v`` prints a float64 (what ``{{ $value }}`` shows)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        text = str(int(value))
        return text if len(text.lstrip("-")) <= 21 else repr(value)
    return repr(value)


def _g4(value: float) -> str:
    return format(value, ".4g")


def humanize(value: float) -> str:
    """Prometheus' ``humanize``: SI prefixes, 4 significant digits (1.5k, 2M, 3m)."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefixes, step = (_SI_LARGE, 1000.0) if abs(value) >= 1 else (_SI_SMALL, 1 / 1000.0)
    index = 0
    while index < len(prefixes) - 1 and (abs(value) >= 1000 if step > 1 else abs(value) < 1):
        value /= step
        index += 1
    return f"{_g4(value)}{prefixes[index]}"


def humanize_duration(seconds: float) -> str:
    """Prometheus' ``humanizeDuration``: 1d 2h 3m 4s, or 1.5s, 20ms, 3us."""
    if math.isnan(seconds) or math.isinf(seconds):
        return _g4(seconds)
    sign = "-" if seconds < 0 else ""
    v = abs(seconds)
    if v == 0:
        return "0s"
    if v < 1:
        for unit, factor in (("ms", 1e3), ("us", 1e6), ("ns", 1e9)):
            if v * factor >= 1 or unit == "ns":
                return f"{sign}{_g4(v * factor)}{unit}"
    whole = int(v)
    s, m, h, d = whole % 60, (whole // 60) % 60, (whole // 3600) % 24, whole // 86400
    if d:
        return f"{sign}{d}d {h}h {m}m {s}s"
    if h:
        return f"{sign}{h}h {m}m {s}s"
    if m:
        return f"{sign}{m}m {s}s"
    return f"{sign}{_g4(v)}s"
