"""Why records of a request were refused, summed up for the OTLP partial-success answer.

The client gets ``rejected_<signal>`` and one ``error_message``: counts per reason and the
first few examples with their position in the request, short enough for a log line.
"""

from __future__ import annotations

from typing import Final

MAX_MESSAGE: Final = 1024
MAX_EXAMPLES: Final = 5


class RecordRejected(Exception):
    """A record (or a resource or scope, and with it all its records) cannot be stored.

    ``reason`` is a short category counted in the summary ("invalid trace_id");
    ``detail`` says what exactly was wrong ("trace_id must be 16 bytes, got 3").
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


class Rejections:
    """Counts refused records per reason and keeps the first examples."""

    __slots__ = ("_examples", "_noun", "_plural", "_reasons", "_warnings", "count")

    def __init__(self, noun: str, plural: str) -> None:
        self._noun = noun
        self._plural = plural
        self.count = 0
        self._reasons: dict[str, int] = {}
        self._examples: list[str] = []
        self._warnings: list[str] = []

    def add(self, error: RecordRejected, where: str, records: int = 1) -> None:
        """Counts ``records`` refused for ``error``; ``where`` locates them in the request."""
        if records <= 0:
            self.warn(f"{error.detail} ({where})")
            return
        self.count += records
        self._reasons[error.reason] = self._reasons.get(error.reason, 0) + records
        if len(self._examples) < MAX_EXAMPLES:
            self._examples.append(f"{error.detail} ({where})")

    def warn(self, text: str) -> None:
        """Notes something worth telling the client that refused no record."""
        if len(self._warnings) < MAX_EXAMPLES:
            self._warnings.append(text)

    def message(self) -> str:
        """The partial-success ``error_message``: empty when there is nothing to say."""
        parts = []
        if self.count:
            noun = self._noun if self.count == 1 else self._plural
            counts = ", ".join(f"{reason}: {n}" for reason, n in self._reasons.items())
            head = f"{self.count} {noun} rejected ({counts})"
            parts.append(f"{head}: {'; '.join(self._examples)}")
        if self._warnings:
            parts.append(f"warning: {'; '.join(self._warnings)}")
        text = "; ".join(parts)
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 1] + "…"
        return text
