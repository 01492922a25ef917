"""docs/runbook.md runs as written: every line of every ```sh block (and every ```python block)
against a live hub on PostgreSQL + Redis + S3 + Kafka, each exiting 0; the publish rehearsal
stores the sample and deduplicates a rerun; every metric the runbook names exists."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from live_hub import AUTH, metric, operator_env, post_fresh, read, run_riskhub, start_worker, stop_worker
from riskhub.metrics import Metrics
from riskhub.tokens import fingerprint

from conftest import READ_TOKEN, ROOT, TOKEN, Production, ServerProcess
from services import KafkaService

RUNBOOK = ROOT / "docs/runbook.md"
SAMPLE_BLAKE3 = "blake3:6f51f65f0e47418ef1003d6818b3fa4d927f993bb67ab38e9c175e81cc12b3e4"
_FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def fenced_blocks(language: str) -> list[str]:
    """The bodies of the runbook's fenced blocks in ``language``."""
    return [body for lang, body in _FENCE.findall(RUNBOOK.read_text()) if lang == language]


def shell_commands() -> list[str]:
    """Every command line of every ```sh block (``\\`` continuations joined, comments skipped)."""
    commands: list[str] = []
    for block in fenced_blocks("sh"):
        pending = ""
        for line in block.splitlines():
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if pending.strip() and not pending.lstrip().startswith("#"):
                commands.append(pending.strip())
            pending = ""
    return commands


def run_in_shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def describe(command: str, result: subprocess.CompletedProcess[str]) -> str:
    return f"$ {command}\nexit {result.returncode}\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"


def test_the_runbook_has_the_commands_operators_type() -> None:
    commands = shell_commands()
    for script in ("risk_hub_monitor.py", "backfill_risk_snapshots.py", "publish_risk_hub_snapshot.py"):
        assert any(f"scripts/{script}" in c for c in commands), script
    assert (
        "python scripts/risk_hub_monitor.py --base-url $WS_URL --world w1 --world w2 --token $HUB_TOKEN"
        in commands
    )
    assert "python scripts/backfill_risk_snapshots.py --dsn $DB --redis $REDIS --world w1" in commands
    assert any(c.startswith("uv run riskhub dlq list") for c in commands)
    assert any(c.startswith("uv run riskhub lint") for c in commands)
    assert "uv run riskhub topics create" in commands and "uv run riskhub doctor" in commands
    assert any("/metrics" in c for c in commands)


def test_every_command_in_the_runbook_runs_against_a_live_production_hub(
    server_factory: Callable[..., ServerProcess], production: Production, kafka: KafkaService, tmp_path: Path
) -> None:
    topic = f"policy-{uuid.uuid4().hex[:8]}"
    tokens, read_tokens = tmp_path / "tokens", tmp_path / "read-tokens"
    for path, token in ((tokens, TOKEN), (read_tokens, READ_TOKEN)):
        path.write_text(f"{token}\n")
        path.chmod(0o600)
    hub_host = {  # the hub host's RISKHUB_* (schema, cache prefix, S3 endpoint, bus, tokens, ACL)
        **production.env(),
        "RISKHUB_CONTROLBUS_BROKERS": kafka.bootstrap,
        "RISKHUB_CONTROLBUS_TOPIC": topic,
        "RISKHUB_DLQ_TOPIC": f"{topic}.dlq",
        "RISKHUB_CONSUMER_GROUP": f"runbook-{uuid.uuid4().hex[:8]}",
        "RISKHUB_TOKENS": "",
        "RISKHUB_READ_TOKENS": "",
        "RISKHUB_TOKENS_FILE": str(tokens),
        "RISKHUB_READ_TOKENS_FILE": str(read_tokens),
        "RISKHUB_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    # Before the hub starts: its relay's first send would make the topic with the broker's defaults.
    created = run_riskhub("topics", "create", env=operator_env(**hub_host))
    assert created.returncode == 0, created.stdout + created.stderr
    hub = server_factory(**hub_host)
    worker = start_worker(operator_env(**hub_host), tmp_path / "worker.log")
    try:
        run_every_block(hub, production, hub_host, tmp_path)
    finally:
        stop_worker(worker)


def run_every_block(
    hub: ServerProcess, production: Production, hub_host: dict[str, str], tmp_path: Path
) -> None:
    """Every ```sh line and ```python block against ``hub``, then what their outputs must say."""
    for world in ("w1", "w2"):  # fresh snapshots, so the monitor commands must exit 0
        post_fresh(hub, world, age_s=30, version=f"seed-{world}")
    env = operator_env(
        WS_URL=hub.url,
        HUB_TOKEN=TOKEN,
        DB=production.postgres.dsn,
        REDIS=production.redis.url,
        BLOB_URL=production.settings()["blob_url"],
        **hub_host,
    )
    outputs: dict[str, str] = {}
    failures: list[str] = []
    for command in shell_commands():
        result = run_in_shell(command, env)
        outputs[command] = result.stdout
        if result.returncode != 0:
            failures.append(describe(command, result))
    for index, code in enumerate(fenced_blocks("python")):
        script = tmp_path / f"runbook_{index}.py"
        script.write_text(code)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        outputs[f"python block {index}"] = result.stdout
        if result.returncode != 0:
            failures.append(describe(f"python block {index}", result))
    assert not failures, "\n\n".join(failures)
    assert len(outputs) >= 15
    assert all(out.startswith("RISKHUB FRESHNESS OK") for c, out in outputs.items() if "monitor.py" in c)
    assert "backfilled 1 worlds: " in next(o for c, o in outputs.items() if "backfill" in c)
    assert "201 created w1/v1 " + SAMPLE_BLAKE3 in "".join(outputs.values())
    assert "offloaded covariance -> s3://riskhub-test/" in "".join(outputs.values())
    assert outputs["python block 0"].startswith("201 w2 v1 blake3:")
    assert "riskhub doctor: OK (11 ok, 0 warn, 0 fail)" in outputs["uv run riskhub doctor"]
    assert outputs["uv run riskhub topics create"].endswith("nothing changed: every topic already exists\n")
    assert outputs['printf %s "$HUB_TOKEN" | sha256sum | cut -c1-8'] == f"{fingerprint(TOKEN)}\n"
    w3 = read(hub, "/risk-hub/worlds/w3/snapshots/latest")
    assert w3["covariance_ref"].startswith("s3://riskhub-test/") and "hub_offloaded" not in w3


def test_the_runbooks_publish_command_stores_the_sample_and_a_rerun_is_deduplicated(
    server_factory: Callable[..., ServerProcess],
) -> None:
    hub = server_factory()
    [command] = [c for c in shell_commands() if "scripts/publish_risk_hub_snapshot.py" in c]
    assert command.startswith("uv run python scripts/publish_risk_hub_snapshot.py --base-url $WS_URL ")
    assert command.endswith("--token $HUB_TOKEN --actor gateway --stage paper")
    env = operator_env(WS_URL=hub.url, HUB_TOKEN=TOKEN)

    first = run_in_shell(command, env)
    assert first.returncode == 0, describe(command, first)
    assert first.stdout.startswith(f"201 created w1/v1 {SAMPLE_BLAKE3}")
    latest = read(hub, "/risk-hub/worlds/w1/snapshots/latest")  # the sample's TTL is 10 s
    assert (latest["version"], latest["hash"]) == ("v1", SAMPLE_BLAKE3)

    again = run_in_shell(command, env)
    assert again.returncode == 0, describe(command, again)
    assert again.stdout.startswith("200 already stored (deduplicated) w1/v1")
    assert metric(hub, "risk_hub_snapshot_dedupe_total", world_id="w1", stage="paper") == 1
    history = httpx.get(f"{hub.url}/risk-hub/worlds/w1/snapshots", headers=AUTH).json()["snapshots"]
    assert len(history) == 1


def exposed_metric_names() -> set[str]:
    """The name of every metric a hub (or worker) exposes, as dashboards query it."""
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in Metrics().registry.collect()
    }


def test_every_metric_the_runbook_names_exists_and_every_metric_is_in_the_runbook() -> None:
    text = RUNBOOK.read_text()
    named = set(re.findall(r"\b(risk_hub_[a-z0-9_]*[a-z0-9])\b(?!\.py)", text))
    exposed = exposed_metric_names()
    assert named - exposed == set(), "the runbook names metrics that do not exist"
    assert exposed - named == set(), "metrics missing from the runbook"
    for counter in ("processed", "failed", "retry", "dlq", "dedupe", "expired"):  # the queue standards
        assert f"`risk_hub_snapshot_{counter}_total`" in text


def test_the_runbook_keeps_the_seed_names() -> None:
    text = RUNBOOK.read_text()
    for name in (
        "`policy`",
        "`worldservice-risk-hub`",
        "`risk_snapshot_updated`",
        "`risk_snapshot_updated_dlq`",
        "`X-Actor`",
        "`X-Stage`",
        "`Authorization: Bearer <token>`",
        "`covariance_ref`",
        "`realized_returns_ref`",
        "`stress_ref`",
        "`risk-blobs:`",
        "`RiskHubClient`",
        "inline_cov_threshold",
    ):
        assert name in text, name
