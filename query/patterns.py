"""GetLogPatterns: log templates of a time range, counted, and which are new against a
baseline window before it.

Templates are mined with Drain (He et al., ICWS 2017, as the ``drain3`` library does
it), after masking what varies inside a token (UUIDs, IPs, hex ids, numbers), so
"took 12ms" and "took 345ms" are one template ``took <NUM>ms``.

Drain is Python, so a million records cannot all be mined in the time a query has. A
window with more than ``SAMPLE_SIZE`` matching records is read as a Bernoulli sample of
about ``SAMPLE_SIZE`` (``storage.postgres.pattern_reader``), and mined in a seeded
random order for at most ``MINE_SECONDS``: masking and Drain cost ~5 µs a record on
logs that have templates (measured: 300 templates, 50,000 records in 0.27 s), but on
text without any (every record its own cluster) Drain compares each record with every
cluster of its tree leaf, which grows with the records (measured on the query
benchmark's random-word bodies: 50,000 records took 535 s). What was mined is
a simple random sample of the window, and every count is scaled by ``total / mined``
(the ratio estimator: the scaled counts add up to the exact total); the response says
so (``sampled``, ``sampled_records``, ``sample_rate``). The baseline window follows the
same rule with its own rate and is mined first, into the same miner: a window record
that lands in a cluster the baseline built is not new.

The cold tier. Records tiered to Parquet are counted, read and sampled with the hot ones
(``query.cold_logs``): the totals are exact over both tiers, and below ``SAMPLE_SIZE``
the same records are mined in the same order (both tiers sort by time, then body text),
so the answer is the one the hot tier alone gave before tiering. Above it, a cold
record is kept by a hash of its place and the seed (``cold_logs.sampled``) at the same
rate: repeatable, but other records than ``TABLESAMPLE`` kept while they were hot, so a
sampled answer may differ a little after tiering, as two samples do.

Pages: the whole list is recomputed for each page (no state between calls), so the
token holds an offset into it, with what page one settled: the time ranges, the exact
totals (from which the sampling rates follow, and the same rate keeps the same records,
``REPEATABLE``) and how many records were mined of each window. Later pages mine exactly
as many, in the same order, get the same list, and count nothing again. A keyset cursor
(count, template) would do no better over a recomputed list, and a template can outgrow
a token.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from drain3.drain import LogCluster
from drain3.masking import MaskingInstruction
from drain3.template_miner import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from otlpd.errors import BadArgument
from query import arguments, cold_logs, convert, tokens
from query.call import QueryCall
from query.cold_logs import Scope
from query.logs import log_filter
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres import pattern_reader
from storage.postgres.cold_manifest import ColdObject
from storage.postgres.log_reader import LogFilter
from storage.postgres.records import HOT, LogRow, place_order

DEFAULT_LIMIT = 50
# Records read per window at most (read at call time: tests lower it). 50,000 records
# of logs with templates mine in ~0.3 s.
SAMPLE_SIZE = 50_000
# Mining time of a call at most, of which the baseline may take ``_BASELINE_SHARE``
# (the window what the baseline left), and the records mined of a window whatever the
# time. With the reads and the count, a million-record window stays under 3 s.
MINE_SECONDS = 1.0
MIN_MINED = 100
_BASELINE_SHARE = 0.4
# The same seed every time: the same rate then keeps the same records, in the same order.
_SEED = 20_170_625
_TOKEN_KIND = "patterns"
_MAX_US = 2**62 // 1000
_CHECK_EVERY = 16  # records mined between looks at the clock (~1 ms on text without templates)

# Drain as its paper and drain3's defaults have it: a parse tree of depth 4, a new
# template below 40 % of tokens in common, at most 100 children a node.
_SIM_TH = 0.4
_DEPTH = 4
_MAX_CHILDREN = 100
# Not inside a word: "v2" and "user42" keep their digits, "id=42" and "42ms" do not.
_B = r"(?<![A-Za-z0-9_])"
_E = r"(?![A-Za-z0-9_])"
_X = "[0-9a-fA-F]"
# In this order: a UUID or an IP would otherwise be cut into numbers and hex. A bare hex
# id needs a digit and a letter ("deadbeef" may be a word, "12345678" is a number).
_MASKS = (
    (f"{_B}{_X}{{8}}-{_X}{{4}}-{_X}{{4}}-{_X}{{4}}-{_X}{{12}}{_E}", "UUID"),
    (_B + r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])", "IP"),
    (f"{_B}(?:0[xX]{_X}+|(?={_X}*[a-fA-F])(?={_X}*[0-9]){_X}{{8,}}){_E}", "HEX"),
    (r"(?<![A-Za-z0-9_.])[-+]?\d+(?:\.\d+)?", "NUM"),
)


def _config() -> TemplateMinerConfig:
    """drain3's configuration, in code: no ini file, no persistence, no profiling."""
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    config.drain_sim_th = _SIM_TH
    config.drain_depth = _DEPTH
    config.drain_max_children = _MAX_CHILDREN
    # Unbounded: the clusters are bounded by the records mined (2 x SAMPLE_SIZE), and an
    # evicted cluster would lose its counts.
    config.drain_max_clusters = None
    config.masking_instructions = [MaskingInstruction(p, name) for p, name in _MASKS]
    config.mask_prefix, config.mask_suffix = "<", ">"
    return config


@dataclass(slots=True)
class _Cluster:
    """What one Drain cluster got from each window."""

    cluster: LogCluster
    baseline: int = 0
    count: int = 0
    first_us: int = 0
    last_us: int = 0
    # The newest record of the window: (time µs, ctid).
    example: tuple[int, str] = (0, "")


@dataclass(frozen=True, slots=True)
class Pattern:
    """One template of the window, with its counts as mined (not scaled)."""

    template: str
    count: int
    baseline: int
    first_us: int
    last_us: int
    example: tuple[int, str]


class PatternMiner:
    """Drain over the baseline's records, then the window's, counting per cluster.

    CPU work in Python: call ``add`` off the event loop (``asyncio.to_thread``).
    """

    def __init__(self) -> None:
        miner = TemplateMiner(persistence_handler=None, config=_config())
        # Masking and Drain themselves: TemplateMiner.add_log_message also renders the
        # template of every record into a result we would not read.
        self._mask = miner.masker.mask
        self._drain = miner.drain
        self._clusters: dict[int, _Cluster] = {}
        # Masked text -> its cluster: a repeated message skips Drain's tree (and keeps
        # the cluster it first joined, where Drain could, once that template has grown
        # more general, open a second cluster that merges back in ``patterns``).
        self._known: dict[str, LogCluster] = {}

    def add(
        self,
        rows: Sequence[Sequence[Any]],
        *,
        baseline: bool,
        seconds: float | None = None,
        count: int | None = None,
    ) -> int:
        """Mines ``rows`` of (time µs, ctid, body text) in a seeded random order: the
        first ``count`` of them, or as many as ``seconds`` allow (at least
        ``MIN_MINED``), or all. Returns how many it mined."""
        order = list(range(len(rows)))
        random.Random(_SEED).shuffle(order)
        if count is not None:
            order = order[:count]
        no_deadline = seconds is None or count is not None
        deadline = math.inf if no_deadline else time.monotonic() + (seconds or 0.0)
        mask, drain, known, clusters = self._mask, self._drain, self._known, self._clusters
        mined = 0
        for i in order:
            if mined >= MIN_MINED and not mined % _CHECK_EVERY and time.monotonic() > deadline:
                break
            time_us, ctid, body = rows[i]
            masked = mask(body or "")
            cluster = known.get(masked)
            if cluster is None:
                cluster = known[masked] = drain.add_log_message(masked)[0]
            found = clusters.get(cluster.cluster_id)
            if found is None:
                found = clusters[cluster.cluster_id] = _Cluster(cluster)
            mined += 1
            if baseline:
                found.baseline += 1
                continue
            if not found.count or time_us < found.first_us:
                found.first_us = time_us
            if time_us >= found.last_us:
                found.last_us = time_us
                found.example = (time_us, ctid)
            found.count += 1
        return mined

    def patterns(self) -> list[Pattern]:
        """The templates with window records; clusters of one template merged."""
        merged: dict[str, Pattern] = {}
        for got in self._clusters.values():
            if not got.count:
                continue
            template = got.cluster.get_template()
            other = merged.get(template)
            if other is None:
                merged[template] = Pattern(
                    template, got.count, got.baseline, got.first_us, got.last_us, got.example
                )
                continue
            merged[template] = Pattern(
                template,
                other.count + got.count,
                other.baseline + got.baseline,
                min(other.first_us, got.first_us),
                max(other.last_us, got.last_us),
                got.example if got.last_us > other.last_us else other.example,
            )
        return list(merged.values())


@dataclass(frozen=True, slots=True)
class _Settled:
    """What the first page decides and later pages reuse (the page token's content)."""

    start_us: int
    end_us: int
    baseline_start_us: int
    window_total: int
    baseline_total: int
    # Records mined of each window; None: not yet (the first page).
    window_mined: int | None = None
    baseline_mined: int | None = None


class LogPatternQueries:
    """GetLogPatterns over both tiers."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def patterns(
        self, call: QueryCall, request: pb.GetLogPatternsRequest
    ) -> pb.GetLogPatternsResponse:
        """One page of the window's templates, most frequent first."""
        limit = arguments.limit(
            request.limit, default=DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        flt = log_filter(call.project, request.filter)
        window = arguments.time_range(request)
        if request.HasField("baseline"):
            baseline_ns = arguments.duration_ns(request.baseline, "baseline")
        else:
            baseline_ns = window.span_ns
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, _TOKEN_KIND, bound_to)
        if cursor is None:
            offset = 0
            settled = _ranges(window, baseline_ns)
        else:
            offset, settled = _parse_cursor(cursor)
        # The cold objects of both windows, in one read of the manifest.
        objects: list[ColdObject] = []
        if call.cold is not None:
            objects = await call.cold.objects(
                call, cold_logs.SIGNAL, settled.baseline_start_us * 1000, settled.end_us * 1000
            )
        if cursor is None:
            settled = await self._count(call, flt, settled, objects)
        has_baseline = settled.baseline_start_us < settled.start_us
        sample_size = SAMPLE_SIZE
        reads = [(settled.start_us, settled.end_us, settled.window_total)]
        if has_baseline and settled.baseline_total:
            reads.append((settled.baseline_start_us, settled.start_us, settled.baseline_total))
        # Both reads on one connection, one after the other: reading while mining buys
        # nothing, as decoding rows and Drain contend for the one GIL (measured).
        window_rows, *more = await call.fetch_many(
            [_read(flt, start, end, total, sample_size) for start, end, total in reads]
        )
        if objects:
            window_rows, *more = [
                await asyncio.to_thread(
                    _merged,
                    rows,
                    await _cold_read(call, flt, read, sample_size, objects),
                    sample_size,
                )
                for rows, read in zip([window_rows, *more], reads, strict=True)
            ]
        baseline_rows = more[0] if more else []
        # Mining leaves the call time for the examples' read.
        seconds = min(MINE_SECONDS, max(0.0, call.seconds_left()[0]) / 2)
        miner = PatternMiner()
        started = time.monotonic()
        baseline_mined = await asyncio.to_thread(
            miner.add,
            baseline_rows,
            baseline=True,
            seconds=seconds * _BASELINE_SHARE,
            count=settled.baseline_mined,
        )
        window_mined = await asyncio.to_thread(
            miner.add,
            window_rows,
            baseline=False,
            seconds=seconds - (time.monotonic() - started),
            count=settled.window_mined,
        )
        scale = _scale(settled.window_total, window_mined)
        baseline_scale = _scale(settled.baseline_total, baseline_mined)
        ranked = sorted(miner.patterns(), key=lambda p: (-round(p.count * scale), p.template))
        page = ranked[offset : offset + limit]
        examples = await _examples(call, [p.example for p in page], objects)
        total = settled.window_total
        response = pb.GetLogPatternsResponse(
            total_records=total,
            sampled_records=window_mined,
            sampled=window_mined < total,
            sample_rate=min(1.0, window_mined / total) if total else 1.0,
        )
        for p in page:
            item = response.patterns.add(
                template=p.template,
                count=round(p.count * scale),
                baseline_count=round(p.baseline * baseline_scale),
                # Without a baseline nothing is new: there was nothing to compare with.
                new=has_baseline and p.baseline == 0,
            )
            convert.set_timestamp(item.first_seen, p.first_us * 1000)
            convert.set_timestamp(item.last_seen, p.last_us * 1000)
            example = examples.get(p.example)
            if example is not None:
                convert.fill_log_record(item.example, example)
        if offset + limit < len(ranked):
            response.next_page_token = tokens.encode(
                _TOKEN_KIND,
                bound_to,
                [
                    offset + limit,
                    settled.start_us,
                    settled.end_us,
                    settled.baseline_start_us,
                    settled.window_total,
                    settled.baseline_total,
                    window_mined,
                    baseline_mined,
                ],
            )
        return response

    @staticmethod
    async def _count(
        call: QueryCall, flt: LogFilter, ranges: _Settled, objects: Sequence[ColdObject]
    ) -> _Settled:
        """``ranges`` with the exact number of records of each window, in both tiers."""
        ((window_total, baseline_total),) = await call.fetch(
            *pattern_reader.counts(
                flt,
                baseline_start_us=ranges.baseline_start_us,
                start_us=ranges.start_us,
                end_us=ranges.end_us,
            )
        )
        if objects:
            cuts = [ranges.baseline_start_us, ranges.start_us, ranges.end_us]
            cold_baseline, cold_window = await cold_logs.counts(call, flt, cuts, objects)
            window_total += cold_window
            baseline_total += cold_baseline
        return replace(ranges, window_total=window_total, baseline_total=baseline_total)


def _ranges(window: arguments.TimeRange, baseline_ns: int) -> _Settled:
    """The first page's ranges, in the microseconds stored times have (no counts yet)."""
    start_us, end_us = window.start_ns // 1000, -(-window.end_ns // 1000)
    baseline_start_us = max(0, start_us - -(-baseline_ns // 1000))
    return _Settled(start_us, end_us, baseline_start_us, 0, 0)


async def _cold_read(
    call: QueryCall,
    flt: LogFilter,
    read: tuple[int, int, int],
    sample_size: int,
    objects: Sequence[ColdObject],
) -> list[tuple[int, str, str | None]]:
    """The cold side of ``_read``: the same records, or a sample at the same rate (of
    other records than PostgreSQL's: ``cold_logs.sampled``)."""
    start_us, end_us, total = read
    return await cold_logs.bodies(
        call,
        Scope(flt, start_us, end_us),
        rate=sample_size / total if total > sample_size else None,
        seed=_SEED,
        max_chars=pattern_reader.MAX_BODY_CHARS,
        objects=objects,
    )


def _merged(hot: list[Any], cold: list[tuple[int, str, str | None]], sample_size: int) -> list[Any]:
    """The rows of both tiers in ``pattern_reader.mined``'s order, at most as many."""
    rows = [*hot, *cold]
    rows.sort(key=lambda row: (row[0], row[2] is None, row[2] or ""))
    return rows[: 2 * sample_size]


async def _examples(
    call: QueryCall, keys: Sequence[tuple[int, str]], objects: Sequence[ColdObject]
) -> dict[tuple[int, str], LogRow]:
    """The example records of a page by their ``(time µs, place)``, from either tier."""
    if not keys:
        return {}
    hot: list[tuple[int, str]] = []
    cold: dict[tuple[int, int], tuple[int, str]] = {}  # (object, row) -> key
    for time_us, place in keys:
        tier, a, b = place_order(place)
        if tier == HOT:
            hot.append((time_us, place))
        else:
            cold[(a, b)] = (time_us, place)
    found: dict[tuple[int, str], LogRow] = {}
    if hot:
        rows = await call.fetch(*pattern_reader.examples(call.project, hot))
        found = {(r.time_us, r.place): r for r in (LogRow(*row) for row in rows)}
    for where, record in (await cold_logs.records(call, list(cold), objects)).items():
        if record.time_us == cold[where][0]:
            found[cold[where]] = record
    return found


def _read(
    flt: LogFilter, start_us: int, end_us: int, total: int, sample_size: int
) -> tuple[str, list[Any]]:
    """The statement reading ``[start_us, end_us)`` to mine: all of its ``total`` records
    up to ``sample_size``, else a sample of about ``sample_size``."""
    percent = 100.0 * sample_size / total if total > sample_size else None
    return pattern_reader.mined(
        flt,
        start_us=start_us,
        end_us=end_us,
        percent=percent,
        seed=_SEED,
        # Records committed since the count may add a few; never without bound.
        limit=2 * sample_size,
    )


def _scale(total: int, mined: int) -> float:
    """What one mined record of a window stands for."""
    return total / mined if 0 < mined < total else 1.0


def _parse_cursor(cursor: list[Any]) -> tuple[int, _Settled]:
    """A page token's offset and what the first page settled."""
    try:
        values = [int(v) for v in cursor]
    except (ValueError, TypeError) as exc:
        raise BadArgument("page_token", "is not a token this server issued") from exc
    if len(values) != 8 or any(not 0 <= v <= 2**62 for v in values):
        raise BadArgument("page_token", "is not a token this server issued")
    offset, start_us, end_us, baseline_start_us, *counts = values
    if not baseline_start_us <= start_us < end_us <= _MAX_US:
        raise BadArgument("page_token", "is not a token this server issued")
    window_total, baseline_total, window_mined, baseline_mined = counts
    return offset, _Settled(
        start_us,
        end_us,
        baseline_start_us,
        window_total,
        baseline_total,
        window_mined,
        baseline_mined,
    )
