"""TailLogs: live tail of committed log records, fed by PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

from collections.abc import AsyncIterator

from otlpd.instruments import Instruments
from query.call import QueryCall
from query.proto import pb
from query.settings import QuerySettings


class LogTail:
    """One listener per process; each stream has a bounded queue of commits to read."""

    def __init__(
        self, database_url: str, settings: QuerySettings, instruments: Instruments
    ) -> None:
        self._database_url = database_url
        self._settings = settings
        self._metrics = instruments

    async def run(self) -> None:
        """Listens until cancelled; the App owns the task."""

    def stream(
        self, call: QueryCall, request: pb.TailLogsRequest
    ) -> AsyncIterator[pb.TailLogsResponse]:
        raise NotImplementedError
