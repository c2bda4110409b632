"""Page tokens carry a keyset cursor and are refused with any other request or project."""

from __future__ import annotations

import pytest

from otlpd.errors import BadArgument
from query import tokens
from query.proto import pb


def test_a_token_round_trips_and_ignores_limit_and_page_token() -> None:
    first = pb.SearchLogsRequest(filter=pb.LogFilter(q="error"), limit=10)
    bound = tokens.fingerprint("p1", first)
    token = tokens.encode("logs", bound, [1_700_000_000_000_000, "(3,7)"])
    again = pb.SearchLogsRequest(filter=pb.LogFilter(q="error"), limit=50, page_token=token)
    assert tokens.decode(token, "logs", tokens.fingerprint("p1", again)) == [
        1_700_000_000_000_000,
        "(3,7)",
    ]
    assert tokens.decode("", "logs", bound) is None


def test_a_token_of_another_request_project_or_rpc_is_refused() -> None:
    request = pb.SearchLogsRequest(filter=pb.LogFilter(q="error"))
    token = tokens.encode("logs", tokens.fingerprint("p1", request), [1])
    other = pb.SearchLogsRequest(filter=pb.LogFilter(q="warn"))
    with pytest.raises(BadArgument, match="page_token: was issued for a request with other"):
        tokens.decode(token, "logs", tokens.fingerprint("p1", other))
    with pytest.raises(BadArgument, match="page_token: was issued"):
        tokens.decode(token, "logs", tokens.fingerprint("p2", request))
    with pytest.raises(BadArgument, match="page_token: is not a token of this RPC"):
        tokens.decode(token, "traces", tokens.fingerprint("p1", request))


@pytest.mark.parametrize(
    "junk", ["%%%", "bm90IGpzb24", "W10", "x" * 5000, "'; DROP TABLE logs; --"]
)
def test_junk_is_refused_as_a_bad_argument(junk: str) -> None:
    with pytest.raises(BadArgument, match="page_token"):
        tokens.decode(junk, "logs", "f")
