"""The project of a query: metadata wins over the request field, which wins over the default."""

from __future__ import annotations

import pytest

from otlpd.errors import BadArgument
from query.scope import HeaderScope


def test_metadata_wins_then_the_field_then_the_default() -> None:
    scope = HeaderScope("default")
    assert scope.project((("x-otlpd-project", "meta"),), "field") == "meta"
    assert scope.project((("X-Otlpd-Project", b"bytes"),), "") == "bytes"
    assert scope.project((("other", "x"),), "field") == "field"
    assert scope.project((), "") == "default"


def test_an_overlong_or_nul_project_is_refused() -> None:
    scope = HeaderScope("default")
    with pytest.raises(BadArgument, match="project_id: longer than 128 bytes"):
        scope.project((), "p" * 129)
    with pytest.raises(BadArgument, match="NUL"):
        scope.project((), "a\x00b")
