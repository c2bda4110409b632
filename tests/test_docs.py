"""The documentation's examples, run as written against a real otlpd.

docs/query.md's Python client and the README's terminal commands (the quick start's SDK
snippet and lookups, and the Query API section's `otlpd` commands) are extracted from the
Markdown and run in subprocesses, so an example that stops working fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.client.test_commands import interrupt_once_streaming, send_histogram, send_log
from tests.conftest import RunningOtlpd

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(path: Path, section: str, language: str) -> list[str]:
    """The fenced ``language`` blocks of the ``## section`` (heading starting so) of a
    Markdown file."""
    text = path.read_text()
    start = text.index(f"\n## {section}")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else len(text)]
    return [code for lang, code in _FENCE.findall(body) if lang == language]


@pytest.fixture
def env(otlpd: RunningOtlpd) -> dict[str, str]:
    """This environment pointed at the running otlpd, as a user would set it up."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("OTLPD_", "OTEL_"))}
    return {
        **variables,
        "PATH": f"{BIN}{os.pathsep}{variables.get('PATH', '')}",
        "OTLPD_QUERY_ENDPOINT": f"127.0.0.1:{otlpd.app.ports.query}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlpd.grpc_target}",
    }


@pytest.fixture
def ingest(otlpd: RunningOtlpd) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        yield channel


def shell(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def send_quickstart_trace(env: dict[str, str]) -> str:
    """Runs the README's SDK snippet; the trace id it printed."""
    (snippet,) = [b for b in blocks(ROOT / "README.md", "Quick start", "sh") if "<<'EOF'" in b]
    done = shell(snippet, env)
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id), done.stdout
    return trace_id


def test_readme_quick_start_finds_and_draws_the_trace(env: dict[str, str]) -> None:
    trace_id = send_quickstart_trace(env)
    lookups = [b for b in blocks(ROOT / "README.md", "Quick start", "sh") if "otlpd trace " in b]
    (lookup,) = lookups
    search, draw = lookup.strip().splitlines()
    assert search == ".venv/bin/otlpd traces search --since 15m"

    done = shell(search, env)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1].startswith(trace_id)
    assert "checkout: GET /cart" in done.stdout

    done = shell(re.sub(r"\b[0-9a-f]{32}\b", trace_id, draw), env)
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"trace {trace_id}  3 spans")
    span, service = lines[1].index("SPAN"), lines[1].index("SERVICE")
    names = [line[span:service].strip() for line in lines[2:]]
    assert names == ["GET /cart", "SELECT cart", "charge card"]
    assert lines[-1].startswith("!") and lines[-1].endswith("error: card declined")


def test_readme_query_api_commands_run_as_written(
    env: dict[str, str], ingest: grpc.Channel
) -> None:
    trace_id = send_quickstart_trace(env)
    send_log(ingest, "payment failed: card declined", severity=13, session_id="s-readme")
    send_histogram(ingest)
    (readme,) = [b for b in blocks(ROOT / "README.md", "Query API", "sh") if "otlpd trace " in b]
    search = shell('otlpd logs search "payment failed" --json', env)
    assert search.returncode == 0, search.stderr
    record_id = re.search(r'"id": "([^"]+)"', search.stdout)
    assert record_id, search.stdout
    values = {"TRACE_ID": trace_id, "SESSION_ID": "s-readme", "ID": record_id.group(1)}
    values["SERVICE"] = "checkout"
    outputs: dict[str, str] = {}
    for line in readme.strip().splitlines():
        command = re.sub(r"\b(TRACE_ID|SESSION_ID|ID|SERVICE)\b", lambda m: values[m[1]], line)
        if " logs tail " in f" {command} ":
            outputs["tail"] = tail_briefly(command, env, ingest)
            continue
        done = shell(command, env)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (line, done.stderr)
        outputs[line.split("#")[0].strip()] = done.stdout
    assert (
        "payment failed: card declined"
        in outputs['otlpd logs search "payment failed" --since 1h --min-severity warn']
    )
    assert "GET /cart" in outputs["otlpd trace TRACE_ID"]
    assert "> " in outputs["otlpd logs context ID"]
    assert "s-readme" in outputs["otlpd session SESSION_ID"]
    assert "checkout" in outputs["otlpd services"]
    assert "http.server.duration" in outputs["otlpd metrics list"]
    assert outputs["otlpd metrics query http.server.duration --agg p95 --step 1m"].startswith(
        "http.server.duration [ms]  step 1m"
    )


def tail_briefly(command: str, env: dict[str, str], ingest: grpc.Channel) -> str:
    """Runs a `logs tail` line until it is streaming, then stops it with Ctrl-C."""
    code, out, err = interrupt_once_streaming(
        ["bash", "-c", f"exec {command}"],
        ingest,
        body="tailed while it runs",
        service="checkout",
        cwd=ROOT,
        env=env,
    )
    assert (code, err) == (130, ""), err
    return out


def test_docs_python_client_example_runs(env: dict[str, str]) -> None:
    trace_id = send_quickstart_trace(env)
    (example,) = blocks(ROOT / "docs" / "query.md", "A Python client", "python")
    done = subprocess.run(
        [sys.executable, "-c", example],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0] == "services: checkout"
    assert lines[1].startswith(f"trace {trace_id} checkout: GET /cart ")
    assert lines[1].endswith("3 spans 1 errors")
    assert lines[2].startswith("GET /cart [checkout] +0.0ms")
    assert lines[3].startswith("  SELECT cart [checkout] +")
    assert lines[4].startswith("  charge card [checkout] +") and lines[4].endswith("ERROR")
    assert lines[5].startswith("refused: INVALID_ARGUMENT ") and "limit" in lines[5]


def test_readme_tokens_and_projects_block_runs_as_written(
    otlpd: RunningOtlpd, env: dict[str, str]
) -> None:
    """The block as a script: the token it makes turns auth on, the OTLP/JSON it sends
    lands in that project with the card number redacted, and the token ends revoked."""
    (block,) = blocks(ROOT / "README.md", "Tokens and projects", "sh")
    script = "set -euo pipefail\n" + block.replace("localhost:4318", otlpd.http_url[7:])
    env = {**env, "OTLPD_DATABASE_URL": otlpd.database_url}
    done = shell(script, env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert '"body": "checkout failed for card [REDACTED]"' in done.stdout, done.stdout
    assert '"service": "web"' in done.stdout
    assert "revoked" in done.stdout.splitlines()[-1]
    # The search above ran with the token; without one auth is on now and refuses.
    refused = shell("otlpd services", env)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr, refused.stderr


def test_readme_alerting_walk_through_runs_as_written(env: dict[str, str]) -> None:
    (walk,) = [
        b
        for b in blocks(ROOT / "README.md", "Alerting", "sh")
        if "rules test" in b and "mktemp" in b
    ]
    done = shell(walk, env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "rule QueueDeep: created" in out
    firing = [
        line for line in out.splitlines() if "QueueDeep" in line and line.startswith("firing")
    ]
    assert firing and "250" in firing[0].split(), out
    assert "rule QueueDeep: 31 evaluations every 10s, 0 failed" in out
    assert re.search(r"Z\s+firing\s+250\b", out), out
