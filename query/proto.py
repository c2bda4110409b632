"""The one import of the generated query API stubs (``make proto`` builds them)."""

from otlpd._gen.otlpd.query.v1 import query_pb2 as pb
from otlpd._gen.otlpd.query.v1 import query_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["QueryService"].full_name

__all__ = ["SERVICE_NAME", "pb", "pb_grpc"]
