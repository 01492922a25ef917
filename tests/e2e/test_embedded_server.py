"""A real `riskhub serve` process on embedded defaults, spoken to over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from conftest import SAMPLE, TOKEN, ServerProcess
from services import free_port, tcp_accepts

HEADERS = {
    "authorization": f"Bearer {TOKEN}",
    "x-actor": "gateway",
    "x-stage": "paper",
    "content-type": "application/json",
}


def post(server: ServerProcess, world: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.url}/risk-hub/worlds/{world}/snapshots", content=body, headers=HEADERS)


def latest(server: ServerProcess, world: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/risk-hub/worlds/{world}/snapshots/latest",
        headers={"authorization": f"Bearer {TOKEN}"},
    )


def metric(server: ServerProcess, line_prefix: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_runbook_sample_lifecycle(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    sample = SAMPLE.read_bytes()
    assert post(server, "w1", sample).status_code == 201
    dedupe = 'risk_hub_snapshot_dedupe_total{stage="paper",world_id="w1"}'
    assert metric(server, dedupe) == 0
    assert post(server, "w1", sample).status_code == 200
    assert metric(server, dedupe) == 1
    other = json.loads(sample)
    other["weights"] = {"strategy_a": 0.5, "strategy_b": 0.5}
    assert post(server, "w1", json.dumps(other).encode()).status_code == 409
    assert latest(server, "w1").json()["version"] == "v1"
    short = json.loads(sample)
    short.update(version="short-lived", as_of="2025-01-02T00:00:00Z", ttl_sec=1)
    assert post(server, "w1", json.dumps(short).encode()).status_code == 201
    assert latest(server, "w1").json()["version"] == "short-lived"
    time.sleep(1.2)
    expired = latest(server, "w1")
    assert expired.status_code == 404
    assert "short-lived" in expired.json()["error"]["message"]


def snapshot_body(index: int) -> bytes:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    doc.update(version=f"v{index:04d}", as_of=f"2025-01-01T00:{index // 60:02d}:{index % 60:02d}Z")
    doc["ttl_sec"] = 3600
    return json.dumps(doc).encode()


def outbox_and_effects(db: Path) -> tuple[int, int, int, int]:
    """(snapshots, outbox rows, published outbox rows, processed keys)."""
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("SELECT count(*) FROM risk_snapshots").fetchone()[0],
            conn.execute("SELECT count(*) FROM risk_outbox").fetchone()[0],
            conn.execute("SELECT count(*) FROM risk_outbox WHERE status = 'published'").fetchone()[0],
            conn.execute("SELECT count(*) FROM risk_processed WHERE outcome = 'processed'").fetchone()[0],
        )


def wait_for(check: Callable[[], bool], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_crash_and_restart_keep_every_snapshot_and_event(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    accepted = [i for i in range(120) if post(server, "w-crash", snapshot_body(i)).status_code == 201]
    assert len(accepted) == 120
    server.stop(signal.SIGKILL)  # no shutdown hook runs: committed state only
    server.start()
    db = tmp_path / "server-data" / "riskhub.sqlite3"
    versions = httpx.get(
        f"{server.url}/risk-hub/worlds/w-crash/snapshots",
        params={"limit": 1000},
        headers={"authorization": f"Bearer {TOKEN}"},
    ).json()["snapshots"]
    assert len(versions) == 120
    assert latest(server, "w-crash").json()["version"] == "v0119"
    wait_for(lambda: outbox_and_effects(db)[2] == 120)
    wait_for(lambda: outbox_and_effects(db)[3] == 120)
    # one outbox row per snapshot, each published, each event's effects recorded once
    assert outbox_and_effects(db) == (120, 120, 120, 120)


def fresh_machine_env() -> dict[str, str]:
    """What `make run` sees on a fresh machine: no RISKHUB_* at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RISKHUB_")}


def start_serve(cwd: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(port)],
        cwd=cwd,
        env=env or fresh_machine_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_serve(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Stop with ``sig``; the exit code and everything it printed."""
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=15)
    return proc.returncode, out


def post_with(port: int, token: str, world: str = "w1") -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/risk-hub/worlds/{world}/snapshots",
        content=SAMPLE.read_bytes(),
        headers={**HEADERS, "authorization": f"Bearer {token}"},
    )


def test_serve_without_settings_generates_a_token_keeps_it_and_accepts_writes(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        token, banner = read_banner(proc)
        wait_for(lambda: tcp_accepts(port))
        response = post_with(port, token)
        assert response.status_code == 201, response.text
        assert (tmp_path / "riskhub-data" / "riskhub.sqlite3").exists()
    finally:
        code, rest = stop_serve(proc)
    kept = tmp_path / "riskhub-data" / "token"
    assert kept.read_text() == token + "\n" and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert (banner + rest).count(token) == 1  # only on the "generated ... (shown once" line
    assert f"generated read-write token (shown once, kept in {kept}; set RISKHUB_TOKENS" in banner
    assert (
        f'try: export HUB_TOKEN=$(cat {kept}); curl -H "Authorization: Bearer $HUB_TOKEN"'
        f" http://127.0.0.1:{port}/risk-hub/worlds/w1/snapshots/latest" in banner
    )
    assert code == 0, rest


def test_a_restart_reuses_the_kept_token_and_never_prints_it_again(tmp_path: Path) -> None:
    port = free_port()
    first = start_serve(tmp_path, port)
    token, _ = read_banner(first)
    stop_serve(first)
    again = start_serve(tmp_path, port)
    try:
        banner = read_hint(again)
        wait_for(lambda: tcp_accepts(port))
        assert post_with(port, token, "w-restart").status_code == 201  # producers keep working
    finally:
        _, rest = stop_serve(again)
    kept = tmp_path / "riskhub-data" / "token"
    assert token not in banner + rest and "generated" not in banner
    choose = "set RISKHUB_TOKENS or RISKHUB_TOKENS_FILE to choose"
    assert f"read-write token: the one kept in {kept} ({choose})" in banner
    assert f"try: export HUB_TOKEN=$(cat {kept}); curl " in banner


def test_riskhub_tokens_wins_over_the_kept_token(tmp_path: Path) -> None:
    kept = tmp_path / "riskhub-data" / "token"
    kept.parent.mkdir()
    kept.write_text("kept-token-123\n")
    port = free_port()
    proc = start_serve(tmp_path, port, {**fresh_machine_env(), "RISKHUB_TOKENS": TOKEN})
    try:
        banner = read_hint(proc)
        wait_for(lambda: tcp_accepts(port))
        assert post_with(port, "kept-token-123").status_code == 401
        assert post_with(port, TOKEN).status_code == 201
    finally:
        stop_serve(proc)
    assert "kept" not in banner and "kept-token-123" not in banner
    assert kept.read_text() == "kept-token-123\n"


def test_a_kept_token_readable_by_others_is_used_with_a_warning(tmp_path: Path) -> None:
    kept = tmp_path / "riskhub-data" / "token"
    kept.parent.mkdir()
    kept.write_text("kept-token-123\n")
    kept.chmod(0o644)
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        banner = read_hint(proc)
        wait_for(lambda: tcp_accepts(port))
        assert post_with(port, "kept-token-123").status_code == 201
    finally:
        stop_serve(proc)
    assert f"warning: {kept} is readable by other users: chmod 600 it" in banner


def test_a_token_file_without_a_usable_token_is_one_line_exit_2(tmp_path: Path) -> None:
    kept = tmp_path / "riskhub-data" / "token"
    kept.parent.mkdir()
    kept.write_text("two words\n")
    result = subprocess.run(
        [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=fresh_machine_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr == f"error: {kept}: holds no usable token (printable ASCII, no spaces);" + (
        " delete it for a new one\n"
    )
    assert "two words" not in result.stderr


def test_ctrl_c_and_sigterm_stop_serve_cleanly_with_exit_0(tmp_path: Path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        port = free_port()
        proc = start_serve(tmp_path, port)
        read_hint(proc)
        wait_for(lambda port=port: tcp_accepts(port))
        code, rest = stop_serve(proc, sig)
        assert code == 0, (sig, rest)
        assert "Finished server process" in rest and "Traceback" not in rest and "Aborted" not in rest


def read_banner(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The generated token and every line up to the ``try:`` hint."""
    banner = read_hint(proc)
    token = next(
        (line.rsplit(" ", 1)[1] for line in banner.splitlines() if "generated read-write token" in line), None
    )
    assert token is not None, "serve printed no generated token"
    return token, banner


def read_hint(proc: subprocess.Popen[str]) -> str:
    """Every line up to the ``try:`` hint."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("try:"):
            break
    return "".join(lines)


def test_serve_with_tokens_set_hints_a_curl_that_expands_hub_token(tmp_path: Path) -> None:
    server = ServerProcess({"RISKHUB_TOKENS": TOKEN, "RISKHUB_DATA_DIR": str(tmp_path)}, tmp_path / "log")
    server.start()
    server.stop()
    banner = server.log_path.read_text()
    assert f'try: curl -H "Authorization: Bearer $HUB_TOKEN" {server.url}/' in banner
    assert TOKEN not in banner


def test_serve_on_a_port_in_use_fails_before_printing_or_keeping_a_token(tmp_path: Path) -> None:
    env = fresh_machine_env()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "riskhub-data" / "token").exists()
