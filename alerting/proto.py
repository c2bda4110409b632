"""The one import of the generated alerting API stubs (``make proto`` builds them)."""

from otlpd._gen.otlpd.alerting.v1 import alerting_pb2 as pb
from otlpd._gen.otlpd.alerting.v1 import alerting_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AlertService"].full_name

__all__ = ["SERVICE_NAME", "pb", "pb_grpc"]
