"""Config: parsing, defaults, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from otlpd.app import _grpc_options
from otlpd.config import Config, ConfigError, load, parse_duration, parse_size, settings


def test_defaults_are_the_documented_ports_and_limits() -> None:
    config = load({})
    # No host: otlpd.listening picks 127.0.0.1 while auth is off, every interface when on.
    assert (config.grpc_addr, config.http_addr) == (":4317", ":4318")
    assert (config.query_addr, config.metrics_addr) == (":4319", ":9464")
    assert config.database_url is None
    assert config.max_request_bytes == 64 * 1024 * 1024
    assert config.partition_interval == 3600
    assert config.default_project == "default"
    assert config.user_keys == ("user.id", "enduser.id")


def test_environment_is_parsed_into_typed_values() -> None:
    config = load(
        {
            "OTLPD_DATABASE_URL": "postgresql://u@db:5432/otlpd",
            "OTLPD_BATCH_MAX_DELAY": "20ms",
            "OTLPD_ACCEPT_PAST": "7d",
            "OTLPD_MAX_REQUEST_BYTES": "16MiB",
            "OTLPD_SESSION_KEYS": "session.id, app.session",
            "OTLPD_LOG_JSON": "false",
            "OTLPD_DATA_DIR": "/data",
            "OTLPD_WORKERS": "2",
        }
    )
    assert config.database_url == "postgresql://u@db:5432/otlpd"
    assert config.batch_max_delay == pytest.approx(0.02)
    assert config.accept_past == 7 * 86400
    assert config.max_request_bytes == 16 * 1024 * 1024
    assert config.session_keys == ("session.id", "app.session")
    assert config.log_json is False
    assert config.data_dir == Path("/data")
    assert config.workers == 2


def test_flags_override_the_environment() -> None:
    config = load({"OTLPD_WORKERS": "4"}, {"workers": "2"})
    assert config.workers == 2


def test_every_problem_is_reported_at_once_naming_its_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "OTLPD_BATCH_MAX_ROWS": "-1",
                "OTLPD_WORKERS": "0",
                "OTLPD_PARTITION_INTERVAL": "7m",
                "OTLPD_DATABASE_URL": "mysql://x",
            }
        )
    text = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 4
    assert "OTLPD_BATCH_MAX_ROWS must be > 0, got -1" in text
    assert "OTLPD_WORKERS must be > 0" in text
    assert "OTLPD_PARTITION_INTERVAL" in text
    assert "OTLPD_DATABASE_URL" in text


def test_unparsable_values_name_their_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"OTLPD_BATCH_MAX_DELAY": "soon", "OTLPD_GRPC_ADDR": "4317", "OTLPD_WORKERS": "x"})
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "OTLPD_GRPC_ADDR",
        "OTLPD_WORKERS",
        "OTLPD_BATCH_MAX_DELAY",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("5s", 5), ("2m", 120), ("1h", 3600), ("7d", 604800), ("1.5", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"), [("65536", 65536), ("64KiB", 65536), ("4MiB", 4 << 20), ("1g", 1 << 30)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_every_setting_has_a_variable_a_flag_and_a_description() -> None:
    rows = settings()
    assert len(rows) == len(Config.__dataclass_fields__)
    for variable, flag, doc in rows:
        assert variable.startswith("OTLPD_")
        assert flag.startswith("--")
        assert doc


def test_several_workers_need_a_fixed_port() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"OTLPD_WORKERS": "2", "OTLPD_GRPC_ADDR": "127.0.0.1:0"})
    assert caught.value.problems[0].startswith("OTLPD_GRPC_ADDR must name a fixed port")
    assert load({"OTLPD_WORKERS": "1", "OTLPD_GRPC_ADDR": "127.0.0.1:0"}).workers == 1
    with pytest.raises(ConfigError) as caught:
        load({"OTLPD_WORKERS": "2", "OTLPD_QUERY_ADDR": "127.0.0.1:0"})
    assert caught.value.problems == [
        "OTLPD_QUERY_ADDR must name a fixed port when OTLPD_WORKERS > 1 (the workers share it)"
        ", got '127.0.0.1:0'"
    ]


def test_query_settings_are_validated_naming_their_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"OTLPD_QUERY_BUDGET": "0s", "OTLPD_QUERY_MAX_LIMIT": "0", "OTLPD_TAIL_BUFFER": "-1"})
    problems = " ".join(caught.value.problems)
    for variable in ("OTLPD_QUERY_BUDGET", "OTLPD_QUERY_MAX_LIMIT", "OTLPD_TAIL_BUFFER"):
        assert variable in problems


# --- the settings that bound memory before admission ------------------------------------


def test_memory_bound_defaults() -> None:
    config = load({})
    assert config.grpc_max_streams == 32  # a Collector's 16-32 Exports in flight fit
    assert config.grpc_max_connections == 0  # unlimited
    assert config.decode_budget == 128 * 2**20
    assert config.decode_wait == 1.0
    assert config.receive_timeout == 30.0
    assert config.queue_max_bytes == 128 * 2**20


def test_memory_bound_settings_are_parsed() -> None:
    config = load(
        {
            "OTLPD_GRPC_MAX_STREAMS": "16",
            "OTLPD_GRPC_MAX_CONNECTIONS": "100",
            "OTLPD_DECODE_BUDGET": "32MiB",
            "OTLPD_DECODE_WAIT": "250ms",
            "OTLPD_RECEIVE_TIMEOUT": "1m",
        }
    )
    assert config.grpc_max_streams == 16
    assert config.grpc_max_connections == 100
    assert config.decode_budget == 32 * 2**20
    assert config.decode_wait == pytest.approx(0.25)
    assert config.receive_timeout == 60


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTLPD_GRPC_MAX_STREAMS", "0"),
        ("OTLPD_GRPC_MAX_STREAMS", "2147483648"),
        ("OTLPD_GRPC_MAX_CONNECTIONS", "-1"),
        ("OTLPD_DECODE_BUDGET", "0"),
        ("OTLPD_DECODE_WAIT", "-1"),
        ("OTLPD_RECEIVE_TIMEOUT", "0"),
    ],
)
def test_invalid_memory_bound_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises((ConfigError, ValueError)) as error:
        load({variable: value})
    assert variable in str(error.value)


def test_the_grpc_server_options() -> None:
    options = dict(_grpc_options(load({"OTLPD_GRPC_MAX_STREAMS": "24"})))
    assert options["grpc.max_concurrent_streams"] == 24
    # Excess calls wait in the client instead of RST_STREAM(REFUSED_STREAM).
    assert options["grpc.http.overload_protection"] == 0
    # A stream not read yet holds its initial window, not its whole message.
    assert options["grpc.http2.bdp_probe"] == 0
    assert options["grpc.max_receive_message_length"] == 64 * 2**20
    assert "grpc.max_allowed_incoming_connections" not in options
    limited = dict(_grpc_options(load({"OTLPD_GRPC_MAX_CONNECTIONS": "8"})))
    assert limited["grpc.max_allowed_incoming_connections"] == 8


def test_redaction_and_attribute_limit_settings() -> None:
    config = load({})
    assert (config.redact, config.anonymize_ip, config.redact_regex) == (True, True, None)
    assert config.redact_patterns == ("bearer", "url-credentials", "card-number", "email")
    assert "authorization" in config.redact_keys and "x-api-key" in config.redact_keys
    assert "client.address" in config.ip_keys
    assert (config.max_attributes, config.max_attribute_depth) == (128, 8)
    config = load(
        {
            "OTLPD_REDACT_PATTERNS": "Email, bearer",
            "OTLPD_REDACT_KEYS": "none",
            "OTLPD_REDACT_REGEX": r"acct-\d+",
            "OTLPD_IP_KEYS": "peer.ip",
            "OTLPD_ANONYMIZE_IP": "false",
            "OTLPD_MAX_ATTRIBUTES": "16",
            "OTLPD_MAX_ATTRIBUTE_DEPTH": "3",
        }
    )
    assert (config.redact_patterns, config.redact_keys, config.redact_regex) == (
        ("email", "bearer"),
        (),
        r"acct-\d+",
    )
    assert (config.ip_keys, config.anonymize_ip) == (("peer.ip",), False)
    assert (config.max_attributes, config.max_attribute_depth) == (16, 3)


def test_a_bad_redaction_regex_or_pattern_is_an_error_naming_its_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"OTLPD_REDACT_REGEX": r"acct-(\d+", "OTLPD_REDACT_PATTERNS": "email,ssn"})
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("OTLPD_REDACT_PATTERNS: unknown pattern 'ssn'; known: bearer")
    assert problems[1].startswith("OTLPD_REDACT_REGEX: invalid regular expression 'acct-(\\\\d+'")
    with pytest.raises(ConfigError, match=r"OTLPD_REDACT_REGEX: .* matches the empty text"):
        load({"OTLPD_REDACT_REGEX": "x*"})
    problems = Config(redact_regex="(", max_attributes=0).validate()
    assert problems[0] == "OTLPD_MAX_ATTRIBUTES must be > 0, got 0"
    assert problems[1].startswith("OTLPD_REDACT_REGEX must be usable (invalid regular expression")


def test_envelope_keys_cannot_be_redacted_or_anonymized() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"OTLPD_REDACT_KEYS": "token,User.Id", "OTLPD_IP_KEYS": "client.ip,session.id"})
    redact, ip = caught.value.problems
    envelope_key = "must not name an envelope key (one of"
    assert redact == f"OTLPD_REDACT_KEYS {envelope_key} OTLPD_USER_KEYS), got 'User.Id'"
    assert ip == f"OTLPD_IP_KEYS {envelope_key} OTLPD_SESSION_KEYS), got 'session.id'"
    # Rules that are off name nothing.
    load({"OTLPD_REDACT": "false", "OTLPD_REDACT_KEYS": "user.id"})


@pytest.mark.parametrize("project", ["a/b", "..", "p=q", "x\\y"])
def test_a_default_project_that_could_leave_its_key_segment_is_refused(project: str) -> None:
    with pytest.raises(ConfigError, match="OTLPD_DEFAULT_PROJECT"):
        load({"OTLPD_DEFAULT_PROJECT": project})


def test_alerting_settings_are_validated_naming_their_variables() -> None:
    config = load(
        {
            "OTLPD_SMTP_HOST": "mail.example.com",
            "OTLPD_SMTP_PORT": "2525",
            "OTLPD_SMTP_STARTTLS": "off",
            "OTLPD_SMTP_FROM": "otlpd@example.com",
            "OTLPD_EXTERNAL_URL": "https://otlpd.example.com/",
            "OTLPD_ALERT_POLL": "500ms",
        }
    )
    assert (config.smtp_host, config.smtp_port, config.smtp_starttls) == (
        "mail.example.com",
        2525,
        False,
    )
    assert config.external_url == "https://otlpd.example.com"
    assert (config.alert_poll, config.alert_lease, config.notify_backoff) == (0.5, 30.0, 10.0)
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "OTLPD_SMTP_HOST": "mail.example.com",
                "OTLPD_SMTP_PORT": "70000",
                "OTLPD_SMTP_PASSWORD": "secret",
                "OTLPD_ALERT_LEASE": "1s",
                "OTLPD_NOTIFY_BACKOFF_MAX": "1s",
                "OTLPD_ALERT_CONCURRENCY": "0",
            }
        )
    text = "\n".join(caught.value.problems)
    assert "OTLPD_SMTP_FROM must be an e-mail address when OTLPD_SMTP_HOST is set" in text
    assert "OTLPD_SMTP_PORT must be a TCP port, got 70000" in text
    assert "OTLPD_SMTP_PASSWORD needs OTLPD_SMTP_USERNAME" in text
    assert "secret" not in text
    assert "OTLPD_ALERT_LEASE must be at least twice OTLPD_ALERT_POLL" in text
    assert "OTLPD_NOTIFY_BACKOFF_MAX must be at least OTLPD_NOTIFY_BACKOFF" in text
    assert "OTLPD_ALERT_CONCURRENCY must be > 0" in text
    with pytest.raises(ConfigError) as caught:
        load({"OTLPD_EXTERNAL_URL": "otlpd.example.com"})
    assert caught.value.problems[0].startswith("OTLPD_EXTERNAL_URL: expected an http")
