"""Channels: create, list, update, delete; validation naming fields; secrets never
answered; versions; audit; projects apart."""

from __future__ import annotations

from typing import Any

import grpc

from alerting.proto import pb
from tests.alerting.conftest import Project, audit_rows, refused
from tests.conftest import RunningOtlpd


def webhook(name: str = "ops", url: str = "https://hooks.example/alert", **headers: str) -> Any:
    return pb.Channel(name=name, webhook=pb.WebhookChannel(url=url, headers=headers))


def test_create_list_update_delete_with_secrets_masked_and_audited(
    project: Project, alerting_otlpd: RunningOtlpd
) -> None:
    made = project.CreateChannel(
        pb.CreateChannelRequest(
            channel=webhook(url="https://bot:pw@hooks.example/a", Authorization="Bearer s3cret")
        )
    ).channel
    assert len(made.id) == 16 and made.version == 1
    assert made.webhook.url == "https://[REDACTED]@hooks.example/a"
    assert dict(made.webhook.headers) == {"Authorization": "[REDACTED]"}
    slack = project.CreateChannel(
        pb.CreateChannelRequest(
            channel=pb.Channel(
                name="slack", slack=pb.SlackChannel(url="https://hooks.slack.com/services/T/B/X")
            )
        )
    ).channel
    assert slack.slack.url == "https://hooks.slack.com/[REDACTED]"
    mail = project.CreateChannel(
        pb.CreateChannelRequest(
            channel=pb.Channel(name="mail", email=pb.EmailChannel(to=["oncall@example.com"]))
        )
    ).channel
    listed = project.ListChannels(pb.ListChannelsRequest()).channels
    assert [c.name for c in listed] == ["mail", "ops", "slack"]
    assert "s3cret" not in str(listed) and "/T/B/X" not in str(listed)
    assert list(listed[0].email.to) == ["oncall@example.com"]

    # The same channel again: no change, no new version, no audit row.
    same = project.UpdateChannel(
        pb.UpdateChannelRequest(
            channel=pb.Channel(
                id=made.id,
                version=1,
                name="ops",
                webhook=pb.WebhookChannel(
                    url="https://bot:pw@hooks.example/a", headers={"Authorization": "Bearer s3cret"}
                ),
            )
        )
    )
    assert (same.changed, same.channel.version) == (False, 1)
    # A new secret is a change, named but not shown.
    dry = project.UpdateChannel(
        pb.UpdateChannelRequest(
            channel=pb.Channel(
                id=made.id,
                version=1,
                name="ops",
                webhook=pb.WebhookChannel(
                    url="https://bot:pw@hooks.example/a", headers={"Authorization": "Bearer new"}
                ),
            ),
            validate_only=True,
        )
    )
    assert dry.changed and list(dry.changed_fields) == ["webhook.headers.Authorization"]
    assert project.ListChannels(pb.ListChannelsRequest()).channels[1].version == 1
    changed = project.UpdateChannel(
        pb.UpdateChannelRequest(
            channel=pb.Channel(
                id=made.id, version=1, name="ops2", email=pb.EmailChannel(to=["a@b"])
            )
        )
    )
    assert changed.changed and changed.channel.version == 2
    assert list(changed.changed_fields) == ["name", "email"]
    stale = refused(
        lambda: project.UpdateChannel(
            pb.UpdateChannelRequest(
                channel=pb.Channel(
                    id=made.id, version=1, name="x", email=pb.EmailChannel(to=["a@b"])
                )
            )
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED and "version" in stale.details()

    project.DeleteChannel(pb.DeleteChannelRequest(id=mail.id))
    gone = refused(lambda: project.DeleteChannel(pb.DeleteChannelRequest(id=mail.id)))
    assert gone.code() == grpc.StatusCode.NOT_FOUND

    rows = audit_rows(alerting_otlpd.database_url, project.project)
    assert [(actor, action) for actor, action, _, _ in rows] == [
        ("local", "channel.create"),
        ("local", "channel.create"),
        ("local", "channel.create"),
        ("local", "channel.update"),
        ("local", "channel.delete"),
    ]
    assert "s3cret" not in str(rows) and "pw@" not in str(rows) and "/T/B/X" not in str(rows)
    _, _, subject, details = rows[3]
    assert subject == made.id
    assert details["before"] == {
        "name": "ops",
        "webhook": {"url": "https://[REDACTED]@hooks.example/a",
                    "headers": {"Authorization": "[REDACTED]"}},
    }  # fmt: skip
    assert details["after"] == {"name": "ops2", "email": {"to": ["a@b"]}}
    assert rows[4][3] == {"before": {"name": "mail", "email": {"to": ["oncall@example.com"]}},
                          "after": None}  # fmt: skip


def test_validation_names_the_field(project: Project) -> None:
    cases = [
        (pb.Channel(webhook=pb.WebhookChannel(url="https://x")), "channel.name"),
        (pb.Channel(name="n"), "channel"),
        (webhook(url="ftp://x/y"), "channel.webhook.url"),
        (webhook(url="https:///nohost"), "channel.webhook.url"),
        (webhook(url="https://x/a b"), "channel.webhook.url"),
        (webhook(**{"Bad Header": "v"}), "channel.webhook.headers['Bad Header']"),
        (webhook(Host="evil"), "channel.webhook.headers['Host']"),
        (webhook(X="a\nb"), "channel.webhook.headers['X']"),
        (pb.Channel(name="s", slack=pb.SlackChannel(url="http://hooks.slack.com/x")),
         "channel.slack.url"),
        (pb.Channel(name="e", email=pb.EmailChannel()), "channel.email.to"),
        (pb.Channel(name="e", email=pb.EmailChannel(to=["a@b.c", "not an address"])),
         "channel.email.to[1]"),
    ]  # fmt: skip
    for channel, field in cases:
        error = refused(lambda c=channel: project.CreateChannel(pb.CreateChannelRequest(channel=c)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert error.details().startswith(f"{field}:"), (field, error.details())
    project.CreateChannel(pb.CreateChannelRequest(channel=webhook("dup")))
    twice = refused(lambda: project.CreateChannel(pb.CreateChannelRequest(channel=webhook("dup"))))
    assert twice.code() == grpc.StatusCode.ALREADY_EXISTS
    no_version = refused(
        lambda: project.UpdateChannel(pb.UpdateChannelRequest(channel=webhook("dup")))
    )
    assert no_version.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_channel_of_another_project_is_invisible_and_untouchable(
    project: Project, other: Project
) -> None:
    mine = project.CreateChannel(pb.CreateChannelRequest(channel=webhook("mine"))).channel
    assert list(other.ListChannels(pb.ListChannelsRequest()).channels) == []
    for call in (
        lambda: other.DeleteChannel(pb.DeleteChannelRequest(id=mine.id)),
        lambda: other.UpdateChannel(
            pb.UpdateChannelRequest(channel=webhook("x").__class__(
                id=mine.id, version=1, name="x", email=pb.EmailChannel(to=["a@b"])))
        ),
    ):  # fmt: skip
        assert refused(call).code() == grpc.StatusCode.NOT_FOUND
    # The same name is free in the other project.
    other.CreateChannel(pb.CreateChannelRequest(channel=webhook("mine")))
    assert [c.id for c in project.ListChannels(pb.ListChannelsRequest()).channels] == [mine.id]


def test_pages_by_name(project: Project) -> None:
    for n in ("c", "a", "b"):
        project.CreateChannel(pb.CreateChannelRequest(channel=webhook(n)))
    first = project.ListChannels(pb.ListChannelsRequest(limit=2))
    assert [c.name for c in first.channels] == ["a", "b"] and first.next_page_token
    rest = project.ListChannels(pb.ListChannelsRequest(limit=2, page_token=first.next_page_token))
    assert [c.name for c in rest.channels] == ["c"] and not rest.next_page_token
