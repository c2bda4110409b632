"""SearchLogs' ``q``: words, "quoted phrases" and prefix* terms, parsed into search terms.

A term is matched case-insensitively against a record body's text. Each term becomes two
conditions (see ``storage.postgres.log_reader``): a PostgreSQL regular expression that
states the exact semantics (whole words with ``\\m``/``\\M`` word boundaries), and
``ILIKE '%literal%'`` prefilters, which pg_trgm's GIN index on closed partitions serves
(PostgreSQL documentation, "pg_trgm: Index Support"). The user's text only ever becomes
a bound parameter, escaped for the regex or LIKE syntax it lands in, never SQL.

Rules:
* A bare word must occur as a whole word: ``pay`` matches "pay now", not "payment".
  The boundary is only asserted on the side where the term has a word character:
  ``--`` or ``'x'`` match wherever they occur.
* ``"a quoted phrase"`` matches its words in sequence, separated by any whitespace.
* ``pay*`` matches a word starting with ``pay``; a ``*`` anywhere else is literal.
* All terms must match (AND). An empty ``q`` (or only whitespace) matches everything.
* An unbalanced ``"`` is refused (INVALID_ARGUMENT naming ``filter.q``) rather than
  guessed at; so are a NUL and more than 1,000 characters. Other control characters are
  whitespace, as they separate words in any text a person searches.
* A term too short for trigrams (one or two characters) is allowed: the partitions'
  indexes cannot serve it, so that query scans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otlpd.errors import BadArgument
from query import arguments

FIELD = "filter.q"
MAX_CHARS = 1000
MAX_TERMS = 32
# Control characters (C0 and DEL) count as whitespace between words.
_CONTROL = re.compile(r"[\x01-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Term:
    """One search term: the words a record body must contain, and how."""

    words: tuple[str, ...]  # one for a word or a prefix, several for a phrase
    prefix: bool = False  # the last word may continue (``pay*``)

    @property
    def regex(self) -> str:
        """A PostgreSQL ARE matching the term (used with ``~*``, case-insensitive)."""
        body = r"\s+".join(escape_regex(word) for word in self.words)
        first, last = self.words[0], self.words[-1]
        start = r"\m" if _is_word_char(first[0]) else ""
        end = r"\M" if _is_word_char(last[-1]) and not self.prefix else ""
        return start + body + end

    @property
    def like_patterns(self) -> tuple[str, ...]:
        """``ILIKE`` patterns each matching body must satisfy: one per word."""
        return tuple(f"%{escape_like(word)}%" for word in self.words)

    @property
    def pattern(self) -> re.Pattern[str]:
        """The same match as ``regex`` in Python's syntax, for rows read outside
        PostgreSQL (the cold tier): ``\\m`` and ``\\M`` become look-arounds."""
        body = r"\s+".join(re.escape(word) for word in self.words)
        first, last = self.words[0], self.words[-1]
        start = r"(?<!\w)" if _is_word_char(first[0]) else ""
        end = r"(?!\w)" if _is_word_char(last[-1]) and not self.prefix else ""
        return re.compile(start + body + end, re.IGNORECASE)

    @property
    def whole_words(self) -> tuple[str, ...]:
        """The words a matching body has whole (all but a prefix), for word indexes."""
        return self.words[:-1] if self.prefix else self.words


def _is_word_char(char: str) -> bool:
    # PostgreSQL's \m and \M: a word character is alphanumeric or underscore.
    return char.isalnum() or char == "_"


def escape_regex(literal: str) -> str:
    """``literal`` as an ARE matching exactly it: every non-alphanumeric character is
    backslash-escaped (in an ARE, ``\\`` followed by a non-alphanumeric character is that
    character, PostgreSQL documentation 9.7.3.3), alphanumerics are left alone."""
    return "".join(c if c.isalnum() else "\\" + c for c in literal)


def escape_like(literal: str) -> str:
    """``literal`` as a LIKE pattern matching exactly it (``\\`` is LIKE's default escape)."""
    return literal.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def parse(q: str) -> list[Term]:
    """The terms of ``q``; ``BadArgument`` naming ``filter.q`` for a query it refuses."""
    arguments.text(q, FIELD, max_chars=MAX_CHARS)
    if q.count('"') % 2:
        raise BadArgument(FIELD, 'has an unbalanced quote ("); close the phrase')
    terms: list[Term] = []
    # Outside quotes, words; inside, phrases. Splitting on '"' alternates the two.
    for i, part in enumerate(_CONTROL.sub(" ", q).split('"')):
        if i % 2:
            words = tuple(part.split())
            if words:
                terms.append(Term(words))
            continue
        for token in part.split():
            prefix = token.endswith("*")
            word = token.rstrip("*")
            if word:
                terms.append(Term((word,), prefix=prefix))
    if len(terms) > MAX_TERMS:
        raise BadArgument(FIELD, f"has more than {MAX_TERMS} terms")
    return terms
