"""Parsing ``q`` into terms, and what PostgreSQL makes of each term's regex and patterns."""

from __future__ import annotations

import psycopg
import pytest

from otlpd.errors import BadArgument
from query.fulltext import Term, escape_like, escape_regex, parse


def test_words_phrases_and_prefixes_are_told_apart() -> None:
    assert parse('pay* "order  42" ok') == [
        Term(("pay",), prefix=True),
        Term(("order", "42")),
        Term(("ok",)),
    ]
    assert parse("") == []
    assert parse("   \t ") == []
    assert parse("* **") == []
    assert parse('""') == []
    assert parse("a\x01b") == [Term(("a",)), Term(("b",))]


def test_boundaries_are_asserted_only_beside_word_characters() -> None:
    assert Term(("pay",)).regex == r"\mpay\M"
    assert Term(("pay",), prefix=True).regex == r"\mpay"
    assert Term(("--",)).regex == r"\-\-"
    assert Term(("'x'",)).regex == r"\'x\'"
    assert Term(("a", "b")).regex == r"\ma\s+b\M"
    assert Term(("100%",)).like_patterns == (r"%100\%%",)
    assert Term(("a", "b_c")).like_patterns == ("%a%", r"%b\_c%")


def test_escapes_leave_nothing_special() -> None:
    assert escape_regex(r"a.b\c(d)") == r"a\.b\\c\(d\)"
    assert escape_like(r"50%_\x") == r"50\%\_\\x"


@pytest.mark.parametrize(
    ("q", "problem"),
    [("x" * 1001, "1000"), ('say "hi', "quote"), ("a\x00", "NUL"), ("w " * 33, "terms")],
)
def test_what_cannot_be_searched_is_refused_naming_the_field(q: str, problem: str) -> None:
    with pytest.raises(BadArgument) as caught:
        parse(q)
    assert caught.value.field == "filter.q"
    assert problem in str(caught.value)


CASES = [
    # (q, text, matches)
    ("pay", "Pay now", True),
    ("pay", "payment due", False),
    ("pay", "prepay", False),
    ("pay*", "PAYMENT due", True),
    ("pay*", "prepayment", False),
    ('"order 42"', "order\n\t 42 shipped", True),
    ('"order 42"', "order 421", False),
    ('"order 42"', "42 order", False),
    ("a.b", "axb", False),
    ("a.b", "see a.b here", True),
    ("(x|y)", "x", False),
    ("(x|y)", "(x|y)", True),
    (r"C:\temp", r"at C:\temp\x", True),
    ("'; DROP TABLE logs; --", "'; DROP TABLE logs; --", True),
    ("100%", "1000", False),
    ("_", "a_b", False),
    ("ünïcode", "ÜNÏCODE text", True),
    ("[a-z]+", "abc", False),
    ("$1", "costs $1 today", True),
    ("disk full", "full disk", True),
    ("disk full", "disk only", False),
]


def test_postgresql_agrees_with_the_rules(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for q, text, matches in CASES:
            conditions, params = [], []
            for term in parse(q):
                conditions.append("%s ~* %s")
                params += [text, term.regex]
                for pattern in term.like_patterns:
                    conditions.append("%s ILIKE %s")
                    params += [text, pattern]
            statement = "SELECT " + " AND ".join(conditions)
            row = conn.execute(statement, params).fetchone()
            assert row is not None
            assert row[0] is matches, (q, text)
