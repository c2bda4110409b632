"""Matching labels as Alertmanager matches them."""

from __future__ import annotations

import pytest

from alerting.matchers import (
    LabelMatcher,
    from_json,
    from_proto,
    matches,
    matches_everything,
    to_json,
)
from otlpd.errors import BadArgument
from query.proto import pb as qpb


def m(name: str, op: str, value: str) -> LabelMatcher:
    return LabelMatcher.of(name, op, value)


def test_equality_and_inequality_with_missing_labels_as_empty() -> None:
    labels = {"service": "api", "env": "prod"}
    assert matches([m("service", "=", "api")], labels)
    assert not matches([m("service", "=", "web")], labels)
    assert matches([m("service", "!=", "web")], labels)
    assert not matches([m("service", "!=", "api")], labels)
    # A label the alert lacks is "": != matches it, = "" matches only its absence.
    assert matches([m("severity", "!=", "page")], labels)
    assert matches([m("severity", "=", "")], labels)
    assert not matches([m("service", "=", "")], labels)
    # Every matcher must match.
    assert not matches([m("service", "=", "api"), m("env", "=", "dev")], labels)
    assert matches([], labels)


def test_regular_expressions_are_anchored_at_both_ends() -> None:
    assert matches([m("service", "=~", "api|web")], {"service": "api"})
    assert not matches([m("service", "=~", "api|web")], {"service": "api-2"})
    assert not matches([m("service", "=~", "pi")], {"service": "api"})
    assert matches([m("service", "=~", ".*pi")], {"service": "api"})
    assert matches([m("service", "!~", "api|web")], {"service": "api-2"})
    assert not matches([m("service", "!~", "a.*")], {"service": "api"})
    assert matches([m("missing", "=~", "|x")], {})
    assert not matches([m("missing", "!~", ".*")], {})


def test_a_set_that_matches_the_empty_label_set_matches_everything() -> None:
    assert matches_everything([m("a", "=~", ".*"), m("b", "!=", "x")])
    assert not matches_everything([m("a", "=~", ".*"), m("b", "=", "x")])


def test_stored_form_round_trips_and_validation_is_the_query_apis() -> None:
    found = from_proto(
        [
            qpb.LabelMatcher(name="a", op=qpb.LabelMatcher.OP_NRE, value="x+"),
            qpb.LabelMatcher(name="b", value="y"),
        ],
        "silence.matchers",
    )
    assert to_json(found) == [
        {"name": "a", "op": "NRE", "value": "x+"},
        {"name": "b", "op": "EQ", "value": "y"},
    ]
    assert from_json(to_json(found)) == found
    assert found[0].to_proto().op == qpb.LabelMatcher.OP_NRE
    with pytest.raises(BadArgument, match=r"silence.matchers\[0\].value: is not a valid regular"):
        from_proto(
            [qpb.LabelMatcher(name="a", op=qpb.LabelMatcher.OP_RE, value="(")], "silence.matchers"
        )
    with pytest.raises(BadArgument, match=r"silence.matchers\[0\].name: must not be empty"):
        from_proto([qpb.LabelMatcher(value="v")], "silence.matchers")
    with pytest.raises(BadArgument, match=r"silence\.matchers: at least one"):
        from_proto([], "silence.matchers", required=True)
