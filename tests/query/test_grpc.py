"""The query port: reflection and health list the service; scope and errors are answered
the same way by every RPC."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from query.proto import SERVICE_NAME, pb
from tests.conftest import RunningOtlpd


def test_reflection_and_health_list_the_query_service(otlpd: RunningOtlpd) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{otlpd.app.ports.query}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for answer in answers for s in answer.list_services_response.service}
        assert SERVICE_NAME == "otlpd.query.v1.QueryService"
        assert SERVICE_NAME in names
        assert "grpc.health.v1.Health" in names
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_a_project_longer_than_the_limit_is_refused_naming_the_field(query: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        query.ListServices(pb.ListServicesRequest(), metadata=(("x-otlpd-project", "p" * 129),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-otlpd-project" in caught.value.details()
