"""The alerting API on the query port: reflection and health list it, its scope is the
query API's, and every RPC of the contract is served."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from alerting.proto import SERVICE_NAME, pb, pb_grpc
from storage.postgres import tenants
from storage.postgres.migrate import migrate
from tests.conftest import RunningOtlpd


@pytest.fixture
def alerts(otlpd: RunningOtlpd) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{otlpd.app.ports.query}") as channel:
        yield pb_grpc.AlertServiceStub(channel)  # type: ignore[no-untyped-call]


def test_reflection_and_health_list_the_alert_service(otlpd: RunningOtlpd) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{otlpd.app.ports.query}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for answer in answers for s in answer.list_services_response.service}
        assert SERVICE_NAME == "otlpd.alerting.v1.AlertService"
        assert {SERVICE_NAME, "otlpd.query.v1.QueryService", "grpc.health.v1.Health"} <= names
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_test_rule_is_served_and_checks_its_request(alerts: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        alerts.TestRule(pb.TestRuleRequest(rule_id="0123456789abcdef"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        alerts.TestRule(pb.TestRuleRequest(rule=pb.Rule(name="x")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("rule:")
    served = {m.name for m in pb.DESCRIPTOR.services_by_name["AlertService"].methods}
    assert "TestRule" in served


def test_scope_is_the_query_apis(database_url: str, start_otlpd: Any) -> None:
    """With tokens: none is UNAUTHENTICATED, an ingest-only one PERMISSION_DENIED, a query
    token naming another project PERMISSION_DENIED."""
    migrate(database_url)
    _, query_token = tenants.create_token(database_url, "acme", ["query"], actor="test")
    _, ingest_token = tenants.create_token(database_url, "acme", ["ingest"], actor="test")
    server = start_otlpd()
    request = pb.ListRulesRequest()

    def code(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListRules(request, metadata=metadata)
        return caught.value.code()  # type: ignore[no-any-return]

    with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
        stub = pb_grpc.AlertServiceStub(channel)  # type: ignore[no-untyped-call]
        assert code(()) == grpc.StatusCode.UNAUTHENTICATED
        assert code((("authorization", f"Bearer {ingest_token}"),)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        other = (("authorization", f"Bearer {query_token}"), ("x-otlpd-project", "globex"))
        assert code(other) == grpc.StatusCode.PERMISSION_DENIED


def test_a_query_token_writes_its_own_project_and_is_the_audited_actor(
    database_url: str, start_otlpd: Any
) -> None:
    migrate(database_url)
    token_id, token = tenants.create_token(database_url, "acme", ["query"], actor="test")
    admin_id, admin = tenants.create_token(database_url, "acme", ["admin"], actor="test")
    server = start_otlpd()
    channel = pb.Channel(name="mail", email=pb.EmailChannel(to=["oncall@example.com"]))
    with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as conn:
        stub = pb_grpc.AlertServiceStub(conn)  # type: ignore[no-untyped-call]
        mine = stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel),
            metadata=(("authorization", f"Bearer {token}"),),
        ).channel
        # An admin token may name another project, and writes there.
        stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel),
            metadata=(("authorization", f"Bearer {admin}"), ("x-otlpd-project", "globex")),
        )
        listed = stub.ListChannels(
            pb.ListChannelsRequest(), metadata=(("authorization", f"Bearer {token}"),)
        ).channels
        assert [c.id for c in listed] == [mine.id]
    rows = {
        (project, actor, action)
        for project, actor, action in tenants_audit(database_url)
        if action.startswith("channel.")
    }
    assert rows == {("acme", token_id, "channel.create"), ("globex", admin_id, "channel.create")}


def tenants_audit(database_url: str) -> list[tuple[str, str, str]]:
    return [(e.project_id, e.actor, e.action) for e in tenants.audit_entries(database_url)]
