"""Which PostgreSQL failures are the data's fault and which are the store's.

The pipeline answers the two differently (``storage.api``): a ``StorageDataError`` is
permanent, so the group commit is split to refuse only the offending request; a
``StorageUnavailable`` is retried by the client later. Deciding wrongly either loses
good data (unavailable taken for data) or makes clients retry forever (the reverse), so
the rule lives here, once, by SQLSTATE class rather than by exception class: psycopg
files trigger errors (class P0) under ``InternalError`` next to genuine server faults.
"""

from __future__ import annotations

import struct

import psycopg

from storage.api import StorageDataError, StorageError, StorageUnavailable

# SQLSTATE classes caused by the values themselves: 22 data exception (bad JSON, NUL
# bytes, out of range), 23 integrity constraint violation (NOT NULL), 54 program limit
# exceeded (a jsonb or an index row too large), P0 raised by a PL/pgSQL trigger.
DATA_SQLSTATE_CLASSES = frozenset({"22", "23", "54", "P0"})

# Raised by the client while it encodes rows (an int out of range for its column, a
# str that UTF-8 cannot encode, a value of the wrong Python type): the same rows would
# fail again. Only meaningful around code that encodes rows; see ``translate_encoding``.
ENCODING_ERRORS: tuple[type[Exception], ...] = (TypeError, ValueError, OverflowError, struct.error)


def translate(exc: psycopg.Error) -> StorageError:
    """The storage error that ``exc`` means to the pipeline; raise it ``from exc``.

    Everything that is not demonstrably about the data (lost connections, pool
    timeouts, lock and statement timeouts, serialization failures and deadlocks, even a
    missing table) is ``StorageUnavailable``: retrying later may succeed, and refusing
    good data permanently is the worse mistake.
    """
    sqlstate = exc.sqlstate
    if sqlstate is not None:
        if sqlstate[:2] in DATA_SQLSTATE_CLASSES:
            return StorageDataError(_describe(exc))
        return StorageUnavailable(_describe(exc))
    # No SQLSTATE: psycopg refused a value before sending it (e.g. a NUL byte in a text
    # parameter raises DataError client-side), or the connection/pool failed.
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return StorageDataError(_describe(exc))
    return StorageUnavailable(_describe(exc))


def translate_encoding(exc: Exception) -> StorageDataError:
    """A client-side encoding failure (one of ``ENCODING_ERRORS``) as a data error."""
    return StorageDataError(f"cannot encode a row: {type(exc).__name__}: {exc}")


def _describe(exc: psycopg.Error) -> str:
    # The first line names the problem; psycopg's DETAIL/CONTEXT lines (which column,
    # which COPY line) follow it in str(exc), and help whoever reads the log.
    name = type(exc).__name__
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return f"{name}{state}: {str(exc).strip()}"
