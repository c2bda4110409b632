"""Runs one App in this process until SIGTERM or SIGINT: what ``otlpd serve`` does with one
worker, and what each worker process of ``--workers N`` does."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys

from otlpd import logformat
from otlpd.config import Config
from otlpd.listening import CannotListen

# The writer threads must get the GIL back promptly when libpq returns, or COPY waits on
# decoding. An early prototype with the COPY in a writer thread went from ~43k to ~64k
# spans/s with a 0.2 ms switch interval instead of the default 5 ms; on today's design
# the difference is within noise (docs/benchmarks.md), and it costs nothing.
SWITCH_INTERVAL = 0.0002
# Ingest allocates a tuple per row and several per record, none of them in reference
# cycles: with CPython's default threshold (700) a young-generation collection ran every
# few records, and the older generations, which hold the decoder's caches, were walked
# far more often than they change. Collections still run, just per request rather than
# per record; the objects of start-up are frozen out of them (docs/benchmarks.md).
GC_THRESHOLDS = (50_000, 50, 100)


def run_app(config: Config, database_url: str, *, serve_ops: bool = True) -> int:
    """Serves until SIGTERM or SIGINT, drains, and returns the exit code (0)."""
    from otlpd.app import App  # the heavy imports, only in the serving process

    logformat.configure(config.log_level, config.log_json)
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await App(config, database_url, serve_ops=serve_ops).serve(stop)

    try:
        asyncio.run(main())
    except BaseExceptionGroup as group:  # the App's TaskGroup wraps what fails in it
        found = group.subgroup(CannotListen)
        if found is None:
            raise
        taken: BaseException = found
        while isinstance(taken, BaseExceptionGroup):
            taken = taken.exceptions[0]
        raise taken from None
    return 0
