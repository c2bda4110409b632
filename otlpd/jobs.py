"""otlpd's background jobs as the configuration asks for them: one list for ``serve``
and for ``otlpd tier --once``, each job fenced by the scheduler's PostgreSQL lock.

* ``span_rollups``: the RED rollups of request spans (``storage.postgres.rollups``);
* ``metric_rollups``: the 1-minute and 1-hour rollups of metric points
  (``storage.postgres.metric_rollups``), which tiering of the points waits for;
* ``text_index``: the full-text index of closed log partitions (``OTLPD_TEXT_INDEX``);
* ``tiering``: partitions past their hot retention to Parquet in the cold tier
  (``storage.postgres.tiering``), unless ``OTLPD_TIERING=off``; the query API reads
  both tiers, so a tiered partition stays in its answers.
* ``prune``: with tiering, on its interval, the rows of the tables records refer to that
  no hot partition needs any more (``storage.postgres.prune``);
* ``alert_evaluator``: every due alerting rule, once per interval (``alerting.evaluator``);
* ``alert_notifier``: the notification outbox (``alerting.notify``).

The scheduler runs the jobs side by side, so a long tiering pass or a receiver that
does not answer never holds back rule evaluation.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from alerting.evaluator import AlertEvaluator, EvaluatorSettings
from alerting.notify import NotificationSender, SenderSettings, Smtp
from otlpd.config import Config
from otlpd.instruments import Instruments
from otlpd.scheduler import Job, Scheduler, hold_for_transaction
from storage.postgres.metric_rollups import MetricRollupJob, Round, final_until
from storage.postgres.partitions import PartitionManager
from storage.postgres.prune import PruneJob
from storage.postgres.reading import ReadPool
from storage.postgres.rollups import JOB_NAME as SPAN_ROLLUPS
from storage.postgres.rollups import SpanRollupJob, TieredSpans
from storage.postgres.text_index import TextIndexJob

if TYPE_CHECKING:  # pyarrow and minio load only where the cold tier is used
    from storage.objectstore import ObjectStore
    from storage.postgres.tiering import TierJob


def cold_url(config: Config) -> str:
    """OTLPD_COLD_URL, or a directory ``cold`` under OTLPD_DATA_DIR."""
    return config.cold_url or (config.data_dir / "cold").resolve().as_uri()


def cold_store(config: Config, *, create_bucket: bool = True) -> ObjectStore:
    """The cold tier's store (``create_bucket``: makes the bucket or directory if missing,
    as tiering needs; the query side only reads)."""
    from storage.objectstore import open_store

    return open_store(
        cold_url(config),
        endpoint=config.s3_endpoint,
        access_key=config.s3_access_key,
        secret_key=config.s3_secret_key,
        region=config.s3_region,
        secure=config.s3_secure,
        create_bucket=create_bucket,
    )


def tier_job(config: Config, database_url: str, metrics: Instruments) -> TierJob:
    from storage.postgres.tiering import TierJob

    def moved(table: str, rows: int, size: int) -> None:
        metrics.tier_objects.labels(table).inc()
        metrics.tier_rows.labels(table).inc(rows)
        metrics.tier_bytes.labels(table).inc(size)

    return TierJob(
        database_url,
        partial(cold_store, config),
        {
            "spans": config.hot_retention_spans,
            "logs": config.hot_retention_logs,
            "metric_points": config.hot_retention_metrics,
            "metric_rollups_1m": config.rollup_retention_1m,
            "metric_rollups_1h": config.rollup_retention_1h,
        },
        interval=config.tier_interval,
        max_rows_per_second=config.tier_max_rows,
        cold_retention={
            "spans": config.cold_retention_spans,
            "logs": config.cold_retention_logs,
            "metric_points": config.cold_retention_metrics,
            "metric_rollups_1m": config.cold_retention_metrics,
            "metric_rollups_1h": config.cold_retention_metrics,
        },
        on_object=moved,
        on_lag=lambda table, seconds: metrics.tier_lag.labels(table).set(seconds),
        accept_past=config.accept_past,
        final_until=final_until,
        before_drop=tiered_spans(config.accept_past),
    )


def tiered_spans(accept_past: float) -> TieredSpans:
    """What tiering does before a spans partition goes: its RED rollups made final, and
    kept apart while a late span may still reach their minutes."""
    return TieredSpans(accept_past, partial(hold_for_transaction, name=SPAN_ROLLUPS))


def metric_rollup_job(config: Config, database_url: str, metrics: Instruments) -> MetricRollupJob:
    def rolled(done: Round) -> None:
        metrics.metric_rollup_minutes.inc(done.minutes)
        metrics.metric_rollup_hours.inc(done.hours)
        metrics.metric_rollup_sealed.inc(done.sealed)
        metrics.metric_rollup_seconds.observe(done.seconds)

    return MetricRollupJob(
        database_url,
        PartitionManager(
            database_url,
            interval_seconds=int(config.partition_interval),
            connect_timeout=config.store_timeout,
            lock_timeout=config.partition_lock_timeout,
        ),
        interval=config.rollup_interval,
        delay=config.rollup_delay,
        connect_timeout=config.store_timeout,
        on_round=rolled,
    )


def prune_job(config: Config, metrics: Instruments) -> PruneJob:
    return PruneJob(
        touch_interval=config.touch_interval,
        interval=config.tier_interval,
        on_pruned=lambda table, rows: metrics.pruned_rows.labels(table).inc(rows),
    )


def evaluator_settings(config: Config) -> EvaluatorSettings:
    return EvaluatorSettings(
        poll=config.alert_poll,
        lease=config.alert_lease,
        batch=config.alert_batch,
        concurrency=config.alert_concurrency,
        budget=config.query_budget,
        retry_after=config.retry_after,
        external_url=config.external_url,
        flap_firings=config.alert_flap_firings,
        flap_window=config.alert_flap_window,
    )


def sender_settings(config: Config) -> SenderSettings:
    return SenderSettings(
        poll=config.alert_poll,
        lease=config.alert_lease,
        batch=config.alert_batch,
        concurrency=config.alert_concurrency,
        timeout=config.notify_timeout,
        backoff=config.notify_backoff,
        backoff_max=config.notify_backoff_max,
        attempts=config.notify_attempts,
        ca_file=config.notify_ca,
        smtp=Smtp(
            host=config.smtp_host,
            port=config.smtp_port,
            starttls=config.smtp_starttls,
            username=config.smtp_username,
            password=config.smtp_password,
            sender=config.smtp_from,
        ),
    )


def background_jobs(
    config: Config, database_url: str, metrics: Instruments, alert_pool: ReadPool | None = None
) -> list[Job]:
    """The jobs of ``serve``; the alerting ones need ``alert_pool`` (their queries')."""

    def rolled(minutes: int, seconds: float) -> None:
        metrics.rollup_minutes.inc(minutes)
        metrics.rollup_seconds.observe(seconds)

    jobs: list[Job] = [
        SpanRollupJob(interval=config.rollup_interval, delay=config.rollup_delay, on_round=rolled),
        metric_rollup_job(config, database_url, metrics),
    ]
    if config.text_index:
        jobs.append(
            TextIndexJob(
                slices=config.text_index_slices,
                on_indexed=lambda _: metrics.text_indexed.inc(),
            )
        )
    if config.tiering:
        jobs.append(tier_job(config, database_url, metrics))
        jobs.append(prune_job(config, metrics))  # on the same interval: it follows tiering
    if alert_pool is not None:
        jobs.append(AlertEvaluator(alert_pool, evaluator_settings(config), metrics))
        jobs.append(NotificationSender(sender_settings(config), metrics))
    return jobs


def scheduler(
    config: Config, database_url: str, metrics: Instruments, alert_pool: ReadPool | None = None
) -> Scheduler:
    def ran(job: str, ok: bool, seconds: float) -> None:
        metrics.job_runs.labels(job, "ok" if ok else "failed").inc()
        metrics.job_seconds.labels(job).observe(seconds)

    return Scheduler(
        database_url,
        background_jobs(config, database_url, metrics, alert_pool),
        connect_timeout=config.store_timeout,
        on_round=ran,
    )


# Rounds ``otlpd tier --once`` gives the metric rollups to catch up (each does up to 48
# hours of marked minutes): what they leave waits, hot, for the next pass.
TIER_ONCE_ROLLUP_ROUNDS = 20


def tier_once(config: Config, database_url: str) -> int:
    """``otlpd tier --once``: the rollups (the metric rollups until they have caught up,
    or ``TIER_ONCE_ROLLUP_ROUNDS``), tiering, then pruning; the exit status."""
    import asyncio
    import logging

    from storage.postgres.migrate import migrate

    log = logging.getLogger("otlpd.tier")
    migrate(database_url)
    metrics = Instruments()
    run = Scheduler(database_url, [], connect_timeout=config.store_timeout)
    tiering = tier_job(config, database_url, metrics)
    pruning = prune_job(config, metrics)
    rollups = metric_rollup_job(config, database_url, metrics)
    todo: list[Job] = [
        SpanRollupJob(interval=config.rollup_interval, delay=config.rollup_delay),
        *[rollups] * TIER_ONCE_ROLLUP_ROUNDS,
        tiering,
        pruning,
    ]
    for job in todo:
        if job is rollups and rollups.rounds and not rollups.last.more:
            continue  # caught up
        try:
            ran = asyncio.run(run.run_once(job))
        except Exception:
            log.exception("job %s failed", job.name)
            return 1
        if not ran:
            log.warning("another replica is running job %s; try again later", job.name)
            return 75
    log.info(
        "tiering pass complete",
        extra={
            "partitions": tiering.last.partitions,
            "objects": tiering.last.objects,
            "rows": tiering.last.rows,
            "bytes": tiering.last.bytes,
            "expired": tiering.last.expired,
            "pruned": pruning.last,
            "cold_url": cold_url(config),
        },
    )
    return 0
