"""The terminal client of the query API: ``otlpd traces``, ``trace``, ``logs``, ``metrics``,
``session``, ``services``, and the insights: ``stats``, ``graph``, ``latency``,
``anomalies``, ``spikes``, ``patterns``; and of the alerting API on the same port:
``alerts``, ``rules list``, ``rules apply``.

It lives in the ``otlpd`` command so that one install gives both the server and a way to
look at what it stored. Only ``commands`` (argparse wiring) is imported when the command
line is parsed; gRPC stubs load when a client subcommand runs, so ``otlpd serve`` starts
no slower for it.
"""

DEFAULT_ENDPOINT = "localhost:4319"
ENDPOINT_VARIABLE = "OTLPD_QUERY_ENDPOINT"
PROJECT_VARIABLE = "OTLPD_PROJECT"
# OTLP SeverityNumber ranges by their lowest number (opentelemetry/proto/logs/v1).
SEVERITIES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
