"""otlpd.tokens: the token text, what is stored of it, and reading whatever clients send."""

from __future__ import annotations

import hashlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from otlpd import tokens


def test_a_minted_token_reads_back_and_verifies_against_its_digest_only() -> None:
    minted = tokens.mint()
    assert re.fullmatch(r"otlpd_[a-z2-7]{12}_[A-Za-z0-9_-]{43}", minted.text)
    parsed = tokens.parse(minted.text)
    assert parsed is not None
    token_id, secret = parsed
    assert token_id == minted.token_id
    assert tokens.is_token_id(token_id)
    assert minted.digest == hashlib.sha256(secret.encode()).digest()
    assert tokens.verify(secret, minted.digest)
    assert not tokens.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B"), minted.digest)
    # The secret never shows in a log line or a traceback.
    assert secret not in repr(minted)


def test_every_token_is_new() -> None:
    minted = [tokens.mint() for _ in range(200)]
    assert len({m.token_id for m in minted}) == 200
    assert len({m.digest for m in minted}) == 200


def test_near_misses_are_not_tokens() -> None:
    text = tokens.mint().text
    token_id = text[6:18]
    for wrong in (
        text + "x",
        text[:-1],
        text.upper(),
        "otlpd-" + text[6:],
        text.replace("_", "-", 2),
        text[:6] + token_id.upper() + text[18:],
        text[:6] + "0" * 12 + text[18:],  # 0 and 1 are not base32
        " " + text,
        text[:20] + "+" + text[21:],  # not URL-safe base64
        "",
    ):
        assert tokens.parse(wrong) is None, wrong
    assert not tokens.is_token_id(token_id + "a")
    assert not tokens.is_token_id(None)


@settings(max_examples=400)
@given(
    st.one_of(
        st.text(),
        st.text(min_size=62, max_size=62),
        st.builds(lambda s: "otlpd_" + s, st.text(min_size=56, max_size=56)),
        st.binary(),
        st.none(),
        st.integers(),
    )
)
def test_parse_never_raises_on_garbage(value: object) -> None:
    parsed = tokens.parse(value)
    if parsed is not None:  # only ever a well-formed token
        assert isinstance(value, str)
        assert value == f"otlpd_{parsed[0]}_{parsed[1]}"
