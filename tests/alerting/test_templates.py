"""Annotation templates: what renders, and what is refused."""

from __future__ import annotations

import pytest

from alerting.templates import TemplateError, go_float, humanize, humanize_duration, parse, render


def test_value_labels_and_external_url_render_in_both_spellings() -> None:
    labels = {"service": "checkout", "severity": "page"}
    text = (
        "{{ $labels.service }} at {{ $value }} ({{ .Labels.severity }}, {{ .Value }})"
        " {{ $externalURL }}"
    )
    assert render(text, 0.25, labels, "http://otlpd") == (
        "checkout at 0.25 (page, 0.25) http://otlpd"
    )
    assert render("{{$labels.missing}}|{{ $value }}", None, {}) == "|"
    assert render("no actions", 1.0, {}) == "no actions"
    # A name is only ever a key of the labels: nothing else is looked up.
    assert render("{{ $labels.__class__.__mro__ }}", 1, {}) == ""
    dotted = {"service.name": "checkout"}
    assert render('{{ $labels.service.name }}/{{ index $labels "service.name" }}', 1, dotted) == (
        "checkout/checkout"
    )


def test_functions_humanize_and_printf() -> None:
    assert render("{{ $value | humanize }}", 1234.5678, {}) == "1.235k"
    assert render("{{ $value | humanizePercentage }}", 0.256, {}) == "25.6%"
    assert render("{{ $value | humanizeDuration }}", 93784, {}) == "1d 2h 3m 4s"
    assert render('{{ printf "%.2f" $value }}', 3.14159, {}) == "3.14"
    assert render('{{ $value | printf "%d requests" }}', 42.9, {}) == "42 requests"
    assert render('{{ $labels.service | printf "svc=%s" }}', 1, {"service": "a"}) == "svc=a"
    assert humanize(0.0012) == "1.2m" and humanize(2e6) == "2M" and humanize(0) == "0"
    assert humanize_duration(0.02) == "20ms" and humanize_duration(90) == "1m 30s"
    assert go_float(1e6) == "1000000" and go_float(0.1) == "0.1" and go_float(float("nan")) == "NaN"


@pytest.mark.parametrize(
    "text",
    [
        "{{ $value.Foo }}",
        "{{ .Foo }}",
        "{{ $labels }}",
        "{{ $labels.service | exec }}",
        '{{ printf "%s %s" $value }}',
        "{{ index $labels x }}",
        "{{ }}",
        "{{ $value",
        "stray }}",
        "{{ range $labels }}{{ end }}",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse(text)
