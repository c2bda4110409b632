"""The senders end to end: a real SMTP server (aiosmtpd), a real HTTPS Slack stand-in and
webhooks that fail, each fed by a rule that fires at once."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import grpc
import psycopg
import pytest
from aiosmtpd.controller import Controller

from alerting.notify import SenderSettings, backoff, http_outcome
from alerting.proto import pb, pb_grpc
from query.proto import pb as query_pb
from tests.alerting.conftest import (
    Project,
    Receiver,
    alerting_server,
    duration,
    send_gauge,
    wait_for,
    webhook_channel,
)
from tests.conftest import RunningOtlpd, free_port
from tests.test_tls import Pki, pki  # noqa: F401  (a fixture)


class Mailbox:
    """aiosmtpd's handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="module")
def server(
    shared_database: str,
    mailbox: tuple[Mailbox, int],
    pki: Pki,  # noqa: F811
) -> Iterator[RunningOtlpd]:
    running = alerting_server(
        shared_database,
        smtp_host="127.0.0.1",
        smtp_port=str(mailbox[1]),
        smtp_starttls="false",
        smtp_from="otlpd@example.com",
        notify_ca=str(pki.ca),
    )
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningOtlpd, request: pytest.FixtureRequest) -> Iterator[Project]:
    with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
        stub = pb_grpc.AlertServiceStub(channel)  # type: ignore[no-untyped-call]
        yield Project(stub, f"n-{request.node.name[:50]}")


def fire(server: RunningOtlpd, api: Project, channel_id: str, name: str = "Deep") -> pb.Rule:
    """A rule that fires at its first evaluation, and the point that makes it fire."""
    rule = api.CreateRule(
        pb.CreateRuleRequest(
            rule=pb.Rule(
                name=name,
                metric=pb.MetricCondition(metric_name="depth", window=duration(60)),
                comparator=pb.Rule.GT,
                threshold=10,
                interval=duration(1),
                labels={"severity": "page"},
                annotations={"summary": "depth {{ $value }}"},
                channel_ids=[channel_id],
            )
        )
    ).rule
    send_gauge(server, "depth", 42.0, project=api.project)
    return rule


def notifications(api: Project, rule_id: str) -> list[pb.Notification]:
    return list(api.ListNotifications(pb.ListNotificationsRequest(rule_id=rule_id)).notifications)


def test_email_reaches_a_real_smtp_server(
    server: RunningOtlpd, api: Project, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    channel = api.CreateChannel(
        pb.CreateChannelRequest(
            channel=pb.Channel(name="mail", email=pb.EmailChannel(to=["oncall@example.com"]))
        )
    ).channel
    rule = fire(server, api, channel.id, "MailDeep")
    wait_for(lambda: any(b"MailDeep" in m[2] for m in box.messages))
    sender, recipients, content = next(m for m in box.messages if b"MailDeep" in m[2])
    assert (sender, recipients) == ("otlpd@example.com", ["oncall@example.com"])
    message = message_from_bytes(content)
    assert message["Subject"] == "[FIRING:1] MailDeep"
    assert "depth 42" in message.get_payload()
    assert "severity=page" in message.get_payload()
    (sent,) = wait_for(
        lambda: [
            n for n in notifications(api, rule.id) if n.status == pb.NOTIFICATION_STATUS_DELIVERED
        ]
    )
    assert sent.attempt_log[0].status_code == 250


def test_slack_gets_an_incoming_webhook_message_over_https(
    server: RunningOtlpd,
    api: Project,
    pki: Pki,  # noqa: F811
) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server_cert, pki.server_key)
    slack = Receiver(tls=tls)
    try:
        channel = api.CreateChannel(
            pb.CreateChannelRequest(
                channel=pb.Channel(name="slack", slack=pb.SlackChannel(url=slack.url))
            )
        ).channel
        fire(server, api, channel.id, "SlackDeep")
        (message,) = wait_for(slack.bodies)
    finally:
        slack.close()
    # https://api.slack.com/messaging/webhooks: text, and blocks of Block Kit.
    assert set(message) == {"text", "blocks"}
    assert message["text"] == "[FIRING:1] SlackDeep"
    header, section, context = message["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": message["text"]}}
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith("*FIRING*\ndepth 42")
    assert context["type"] == "context"
    assert context["elements"] == [{"type": "mrkdwn", "text": "<http://otlpd.example|otlpd>"}]


def test_a_receiver_failing_twice_gets_one_delivery_after_retries(
    server: RunningOtlpd, api: Project
) -> None:
    flaky = Receiver(answers=[500, 503])
    try:
        rule = fire(server, api, webhook_channel(api, flaky.url), "FlakyDeep")
        (sent,) = wait_for(
            lambda: [
                n
                for n in notifications(api, rule.id)
                if n.status == pb.NOTIFICATION_STATUS_DELIVERED
            ]
        )
        time.sleep(1.0)  # nothing more arrives
        assert len(flaky.bodies()) == 1 and flaky.attempts == 3
    finally:
        flaky.close()
    assert sent.attempts == 3
    assert [a.status_code for a in sent.attempt_log] == [500, 503, 200]
    assert [bool(a.error) for a in sent.attempt_log] == [True, True, False]
    assert sent.last_error == ""  # delivered: the last attempt's error, none
    assert sent.attempt_log[1].time.ToDatetime() > sent.attempt_log[0].time.ToDatetime()


def test_a_4xx_is_not_retried_and_a_dead_receiver_is(server: RunningOtlpd, api: Project) -> None:
    refusing = Receiver(answers=[404])
    dead_port = free_port()  # nothing listens there
    try:
        rule = fire(server, api, webhook_channel(api, refusing.url), "Refused")
        dead = fire(
            server, api, webhook_channel(api, f"http://127.0.0.1:{dead_port}/x", "dead"), "Dead"
        )
        (failed,) = wait_for(
            lambda: [
                n for n in notifications(api, rule.id) if n.status == pb.NOTIFICATION_STATUS_FAILED
            ]
        )
        wait_for(
            lambda: notifications(api, dead.id) and notifications(api, dead.id)[0].attempts >= 2
        )
    finally:
        refusing.close()
    assert failed.attempts == 1 and failed.last_error.startswith("HTTP 404")
    (retrying,) = notifications(api, dead.id)
    assert retrying.status == pb.NOTIFICATION_STATUS_PENDING
    assert retrying.attempt_log[0].status_code == 0 and retrying.last_error


def test_silences_mute_matching_alerts_only_and_expire(
    server: RunningOtlpd, api: Project, receiver: Receiver
) -> None:
    channel = webhook_channel(api, receiver.url)
    matcher = query_pb.LabelMatcher(name="queue", op=query_pb.LabelMatcher.OP_EQ, value="orders")
    # Long enough to outlast the first evaluations on a loaded machine (3 s did not, once:
    # the silence had ended before ListAlerts looked), short enough to watch it end.
    end = time.time() + 6
    silence = pb.Silence(matchers=[matcher], comment="maintenance")
    silence.end_time.FromNanoseconds(int(end * 1e9))
    api.CreateSilence(pb.CreateSilenceRequest(silence=silence))
    api.CreateRule(
        pb.CreateRuleRequest(
            rule=pb.Rule(
                name="Queues",
                metric=pb.MetricCondition(metric_name="q.depth", window=duration(60)),
                comparator=pb.Rule.GT,
                threshold=10,
                interval=duration(1),
                channel_ids=[channel],
            )
        )
    )
    for queue in ("orders", "emails"):
        send_gauge(server, "q.depth", 42.0, project=api.project, labels={"queue": queue})
    wait_for(lambda: receiver.bodies("firing"))
    time.sleep(1.0)
    first = receiver.bodies("firing")
    assert [[a["labels"]["queue"] for a in b["alerts"]] for b in first] == [["emails"]]
    listed = api.ListAlerts(pb.ListAlertsRequest()).alerts
    assert {a.labels["queue"]: a.silenced for a in listed} == {"orders": True, "emails": False}
    # The silence ends: the muted alert, still firing, is notified at the next evaluation.
    wait_for(lambda: len(receiver.bodies("firing")) == 2, timeout=15)
    assert receiver.bodies("firing")[1]["alerts"][0]["labels"]["queue"] == "orders"
    assert time.time() >= end


def test_outcomes_of_http_answers() -> None:
    assert http_outcome(200, None, "").outcome == "delivered"
    assert http_outcome(204, None, "").outcome == "delivered"
    assert http_outcome(500, None, "oops").outcome == "retry"
    limited = http_outcome(429, "7", "")
    assert (limited.outcome, limited.retry_after) == ("retry", 7.0)
    for status in (400, 401, 403, 404, 410, 422):
        assert http_outcome(status, None, "").outcome == "failed"
    settings = SenderSettings(backoff=10.0, backoff_max=600.0)
    assert [backoff(settings, n, None) for n in (1, 2, 3, 8)] == [10.0, 20.0, 40.0, 600.0]
    assert backoff(settings, 1, 120.0) == 120.0  # Retry-After wins when longer
    assert backoff(settings, 1, 3600.0) == 600.0  # within the maximum


def test_every_attempt_is_recorded_in_postgresql(server: RunningOtlpd, api: Project) -> None:
    flaky = Receiver(answers=[502])
    try:
        rule = fire(server, api, webhook_channel(api, flaky.url), "Recorded")
        wait_for(
            lambda: [
                n
                for n in notifications(api, rule.id)
                if n.status == pb.NOTIFICATION_STATUS_DELIVERED
            ]
        )
    finally:
        flaky.close()
    with psycopg.connect(server.database_url) as conn:
        rows = conn.execute(
            "SELECT a.attempt, a.status_code, a.error IS NULL FROM alert_notification_attempts a"
            " JOIN alert_notifications n USING (project_id, notification_id)"
            " WHERE n.project_id = %s ORDER BY a.attempt",
            (api.project,),
        ).fetchall()
    assert rows == [(1, 502, False), (2, 200, True)]
