"""The notification senders: a job of otlpd's scheduler that delivers the outbox.

A round claims due notifications (``storage.postgres.alert_outbox``, ``FOR UPDATE SKIP
LOCKED`` and a lease) and delivers a few at a time, each within ``OTLPD_NOTIFY_TIMEOUT``,
apart from the evaluator (a job of its own), so a dead receiver delays its own
notifications and nothing else. Each attempt is recorded with its outcome:

* delivered: a 2xx answer (webhook, Slack) or an SMTP server that took the message;
* retried with exponential backoff (``OTLPD_NOTIFY_BACKOFF``, doubling, at most
  ``OTLPD_NOTIFY_BACKOFF_MAX``): no answer (refused, timed out), a 5xx, a 429 (after its
  ``Retry-After`` when it gives one), an SMTP 4xx (a temporary failure, RFC 5321);
* failed, not retried: any other 4xx (the receiver refuses this request and will refuse
  it again), an SMTP 5xx, a channel deleted since, e-mail without ``OTLPD_SMTP_HOST``,
  or ``OTLPD_NOTIFY_ATTEMPTS`` attempts without success.

Webhooks receive the Alertmanager document as it is (``alerting.payloads``), with the
channel's headers; Slack and e-mail a rendering of it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp

from alerting import payloads
from alerting.evaluator import owner_id
from otlpd.instruments import Instruments
from storage.postgres import alert_outbox
from storage.postgres.alert_outbox import Due
from storage.postgres.alert_store import Connection

log = logging.getLogger(__name__)

JOB_NAME: Final = "alert_notifier"
_MAX_ERROR_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class Smtp:
    """The SMTP relay of e-mail channels (OTLPD_SMTP_*); no host: e-mail fails."""

    host: str = ""
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = ""
    sender: str = ""


@dataclass(frozen=True, slots=True)
class SenderSettings:
    """What the senders take from otlpd's Config."""

    poll: float = 1.0  # OTLPD_ALERT_POLL
    lease: float = 60.0  # OTLPD_ALERT_LEASE
    batch: int = 100  # OTLPD_ALERT_BATCH
    concurrency: int = 4  # OTLPD_ALERT_CONCURRENCY
    timeout: float = 10.0  # OTLPD_NOTIFY_TIMEOUT
    backoff: float = 10.0  # OTLPD_NOTIFY_BACKOFF
    backoff_max: float = 600.0  # OTLPD_NOTIFY_BACKOFF_MAX
    attempts: int = 12  # OTLPD_NOTIFY_ATTEMPTS
    ca_file: Path | None = None  # OTLPD_NOTIFY_CA
    smtp: Smtp = Smtp()


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one delivery went: ``outcome`` delivered, retry or failed."""

    outcome: str
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return float(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def http_outcome(status: int, retry_after: str | None, body: str) -> Attempt:
    """What an HTTP answer means for the notification."""
    if 200 <= status < 300:
        return Attempt("delivered", status)
    error = f"HTTP {status}" + (f": {body.strip()[:200]}" if body.strip() else "")
    if status == 429:
        return Attempt("retry", status, error, _retry_after(retry_after))
    if status >= 500:
        return Attempt("retry", status, error)
    return Attempt("failed", status, error)  # 4xx and anything else: refused as it is


def backoff(settings: SenderSettings, attempts: int, retry_after: float | None) -> float:
    """Seconds before attempt ``attempts + 1``: backoff doubling from the first retry,
    at most the maximum; at least what Retry-After asked (within the maximum too)."""
    delay = float(min(settings.backoff_max, settings.backoff * 2.0 ** max(0, attempts - 1)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.backoff_max))
    return delay


class NotificationSender:
    """The ``alert_notifier`` job (an ``otlpd.scheduler.Job``)."""

    name = JOB_NAME

    def __init__(self, settings: SenderSettings, instruments: Instruments | None = None) -> None:
        self._settings = settings
        self._metrics = instruments
        self.owner = owner_id()
        self.interval = settings.poll
        self._ssl = ssl.create_default_context()
        if settings.ca_file is not None:
            self._ssl.load_verify_locations(cafile=str(settings.ca_file))

    async def run(self, conn: Connection) -> None:
        """Delivers due notifications until none is due (or half a lease has passed)."""
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout)
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._settings.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            while time.monotonic() - started < self._settings.lease / 2:
                due = await alert_outbox.claim(
                    conn,
                    owner=self.owner,
                    lease_s=self._settings.lease,
                    limit=self._settings.batch,
                )
                if not due:
                    break
                await self._deliver_all(conn, session, due)
        if self._metrics is not None:
            pending, oldest = await alert_outbox.depth(conn)
            self._metrics.outbox_pending.set(pending)
            self._metrics.outbox_oldest.set(oldest)

    async def _deliver_all(
        self, conn: Connection, session: aiohttp.ClientSession, due: list[Due]
    ) -> None:
        gate = asyncio.Semaphore(self._settings.concurrency)
        writing = asyncio.Lock()

        async def one(item: Due) -> None:
            at = datetime.now(UTC)
            began = time.perf_counter()
            async with gate:
                try:
                    attempt = await asyncio.wait_for(
                        self._deliver(session, item), self._settings.timeout + 1
                    )
                except TimeoutError:
                    attempt = Attempt("retry", None, "timed out")
                except Exception as exc:  # a bug of ours: retry, never lose it
                    log.exception("delivering notification %s failed", item.notification_id)
                    attempt = Attempt("retry", None, f"internal error ({type(exc).__name__})")
            seconds = time.perf_counter() - began
            outcome = attempt.outcome
            next_at = None
            if outcome == "retry":
                if item.attempts + 1 >= self._settings.attempts:
                    outcome = "failed"
                else:
                    delay = backoff(self._settings, item.attempts + 1, attempt.retry_after)
                    next_at = datetime.now(UTC) + timedelta(seconds=delay)
            error = None if attempt.error is None else attempt.error[:_MAX_ERROR_CHARS]
            async with writing:
                await alert_outbox.record(
                    conn,
                    item,
                    owner=self.owner,
                    at=at,
                    seconds=seconds,
                    status_code=attempt.status_code,
                    error=error,
                    outcome=outcome,
                    next_attempt_at=next_at,
                )
            if self._metrics is not None:
                kind = item.channel_kind or "deleted"
                self._metrics.alert_notifications.labels(kind, outcome).inc()

        async with asyncio.TaskGroup() as group:
            for item in due:
                group.create_task(one(item))

    async def _deliver(self, session: aiohttp.ClientSession, item: Due) -> Attempt:
        config = item.channel_config
        if config is None or item.channel_kind is None:
            return Attempt("failed", None, "the channel was deleted")
        if item.channel_kind == "webhook":
            return await self._post(session, config["url"], item.payload, config.get("headers"))
        if item.channel_kind == "slack":
            return await self._post(session, config["url"], payloads.slack(item.payload), None)
        return await asyncio.to_thread(self._mail, item.payload, list(config["to"]))

    async def _post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        document: Mapping[str, Any],
        headers: Mapping[str, str] | None,
    ) -> Attempt:
        try:
            async with session.post(url, json=document, headers=dict(headers or {})) as answer:
                body = await answer.text(errors="replace")
                return http_outcome(answer.status, answer.headers.get("Retry-After"), body)
        except (aiohttp.ClientError, OSError) as exc:
            return Attempt("retry", None, f"{type(exc).__name__}: {exc}")

    def _mail(self, document: Mapping[str, Any], to: list[str]) -> Attempt:
        """Blocking (a thread): one SMTP session, as RFC 5321 and smtplib have it."""
        smtp = self._settings.smtp
        if not smtp.host:
            return Attempt("failed", None, "no SMTP server: set OTLPD_SMTP_HOST")
        message = payloads.email(document, sender=smtp.sender, to=to)
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=self._settings.timeout) as client:
                if smtp.starttls:
                    client.starttls(context=self._ssl)
                if smtp.username:
                    client.login(smtp.username, smtp.password)
                client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            error = f"SMTP {exc.smtp_code}: {text}"
            return Attempt(
                "retry" if 400 <= exc.smtp_code < 500 else "failed", exc.smtp_code, error
            )
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            temporary = all(400 <= c < 500 for c in codes)
            return Attempt("retry" if temporary else "failed", codes[0] if codes else None,
                           f"SMTP recipients refused: {exc.recipients}")  # fmt: skip
        except (smtplib.SMTPException, OSError) as exc:
            return Attempt("retry", None, f"{type(exc).__name__}: {exc}")
        return Attempt("delivered", 250)
