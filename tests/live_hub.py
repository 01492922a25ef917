"""Helpers for tests that talk to a real `riskhub serve` process over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import READ_TOKEN, ROOT, TOKEN, ServerProcess, sample_snapshot

AUTH = {"authorization": f"Bearer {TOKEN}"}
VENV_BIN = str(Path(sys.executable).parent)


def start_hub(root: Path, **env: str) -> ServerProcess:
    """A hub process with the test tokens and its data under ``root`` (caller stops it)."""
    base = {
        "RISKHUB_TOKENS": TOKEN,
        "RISKHUB_READ_TOKENS": READ_TOKEN,
        "RISKHUB_DATA_DIR": str(root / "data"),
    }
    server = ServerProcess({**base, **env}, root / "server.log")
    server.start()
    return server


def post_fresh(
    server: ServerProcess, world: str, *, age_s: float, version: str, stage: str = "paper"
) -> None:
    """POST the sample with ``as_of`` = now - age_s (unexpiring for an hour)."""
    as_of = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat().replace("+00:00", "Z")
    doc = sample_snapshot(as_of=as_of, version=version, ttl_sec=3600, provenance={"actor": "gateway"})
    response = httpx.post(
        f"{server.url}/risk-hub/worlds/{world}/snapshots",
        content=json.dumps(doc).encode(),
        headers={**AUTH, "x-actor": "gateway", "x-stage": stage, "content-type": "application/json"},
    )
    assert response.status_code == 201, response.text


def stored_versions(server: ServerProcess, world: str) -> list[str]:
    """Versions stored for a world, newest first."""
    response = httpx.get(f"{server.url}/risk-hub/worlds/{world}/snapshots", headers=AUTH)
    return [s["version"] for s in response.json()["snapshots"]]


def read(server: ServerProcess, path: str, **params: str) -> dict[str, Any]:
    """GET a JSON document with the read-write token (must be 200)."""
    response = httpx.get(f"{server.url}{path}", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def lookup(server: ServerProcess, world: str, version: str, *, expand: bool = False) -> dict[str, Any]:
    """One stored snapshot by version (``expand`` resolves refs)."""
    params = {"version": version, **({"expand": "true"} if expand else {})}
    return read(server, f"/risk-hub/worlds/{world}/snapshots/lookup", **params)


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """A sample's value on the hub's /metrics (0 if absent)."""
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def operator_env(**extra: str) -> dict[str, str]:
    """The environment of an operator's shell: the venv first on PATH (so plain ``python`` is
    the project's), plus ``extra`` (WS_URL, HUB_TOKEN, ...)."""
    env = {**os.environ, **extra}
    # `uv run` names its own binary in UV: the runbook's `uv run ...` lines find it even when the
    # suite was started as `python3 -m uv run pytest` with no `uv` on PATH.
    uv_bin = [str(Path(os.environ["UV"]).parent)] if os.environ.get("UV") else []
    env["PATH"] = os.pathsep.join([VENV_BIN, env.get("PATH", ""), *uv_bin])
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def run_script(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python scripts/<script> args...`` from the repository root."""
    return subprocess.run(
        [sys.executable, f"scripts/{script}", *args],
        cwd=ROOT,
        env=env or operator_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_riskhub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``riskhub args...`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "riskhub.cli", *args],
        cwd=ROOT,
        env=env or operator_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_worker(env: dict[str, str], log_path: Path, *, timeout_s: float = 60) -> subprocess.Popen[bytes]:
    """A `riskhub worker` process with ``env`` (the caller stops it), returned once its consumer
    group lists a live member (on Tansu a fresh group takes seconds to form)."""
    import asyncio
    import time

    from riskhub.bus.kafka_admin import KafkaAdmin

    async def members() -> int:
        async with KafkaAdmin(env["RISKHUB_CONTROLBUS_BROKERS"], timeout_s=5) as admin:
            return (await admin.group_members(env["RISKHUB_CONSUMER_GROUP"])).members

    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "riskhub.cli", "worker", "--metrics-port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout_s
    while asyncio.run(members()) == 0:
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            raise RuntimeError(f"the worker did not join its group: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)
    return worker


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time."""
    worker.terminate()
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
