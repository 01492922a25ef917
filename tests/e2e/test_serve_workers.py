"""`riskhub serve --workers 2`: two processes on one port, on embedded settings (one SQLite file)
and on PostgreSQL + Redis, over real HTTP. Both processes answer; every snapshot is stored and its
event published and handled exactly once; `latest` right after a write returns that write
whichever process answers; Ctrl-C or SIGTERM stops every process with exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from conftest import READ_TOKEN, TOKEN, Production, sample_snapshot
from services import free_port

WORKERS = 2
WORLDS, VERSIONS = 8, 25  # 200 snapshots, 8 worlds written at once
HEADERS = {"authorization": f"Bearer {TOKEN}", "x-actor": "gateway", "x-stage": "paper"}
STARTED = re.compile(r"Started server process \[(\d+)\]")
ACCESS = re.compile(r"riskhub\.access\[(\d+)\] request method=(\w+) .* request_id=(\S+)")
# Both stores have these tables and columns: the same queries read either.
OUTBOX = "SELECT status, attempts, count(*) FROM risk_outbox GROUP BY status, attempts"
PROCESSED = "SELECT dedupe_key, outcome FROM risk_processed"
WORKER_ROWS = "SELECT worker, count(*) FROM risk_worker_results GROUP BY worker"


class ServeWorkers:
    """`riskhub serve --workers N` in a session of its own (as in a terminal), output in a log."""

    def __init__(self, root: Path, env: dict[str, str], *args: str) -> None:
        self.port, self.log = free_port(), root / "serve.log"
        base = {"RISKHUB_TOKENS": TOKEN, "RISKHUB_READ_TOKENS": READ_TOKEN, "RISKHUB_DATA_DIR": str(root)}
        command = [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(self.port), *args]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                env={**os.environ, **base, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text()

    def wait_until_every_process_serves(self, timeout_s: float = 60) -> list[int]:
        """The server processes' pids, once each has finished its start."""
        deadline = time.monotonic() + timeout_s
        while self.text().count("Application startup complete.") < WORKERS:
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.1)
        assert httpx.get(f"{self.url}/healthz").status_code == 200
        return [int(pid) for pid in STARTED.findall(self.text())]

    def stop(self, send: Callable[[subprocess.Popen[bytes]], None]) -> int:
        """Send the stop; the exit code once every process of the session is gone."""
        if self.proc.poll() is None:
            send(self.proc)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while processes_in_session(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # multiprocessing's resource tracker leaves once its pipe closes
        return code


def processes_in_session(sid: int) -> list[str]:
    """The live processes of a session (an exited one that init has not reaped yet is gone)."""
    result = subprocess.run(["ps", "-o", "stat=,pid=,args=", "-s", str(sid)], capture_output=True, text=True)
    return [line for line in result.stdout.strip().splitlines() if not line.startswith("Z")]


def ctrl_c(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: every process of the group


def sigterm(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)  # what a service manager does: the parent only


def snapshot_body(world: int, version: int) -> bytes:
    as_of = datetime.now(UTC) - timedelta(seconds=VERSIONS - version)  # later versions are newer
    doc = sample_snapshot(
        as_of=as_of.isoformat().replace("+00:00", "Z"),
        version=f"v{version:02d}",
        ttl_sec=3600,
        provenance={"actor": "gateway"},
    )
    return json.dumps(doc).encode()


async def write_and_read_back(url: str) -> list[str]:
    """Every world's versions in order, the worlds at once; after each write, `latest` at once.
    No keep-alive: each request is a new connection, which either process may accept. Returns
    the failures."""
    failures: list[str] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits, timeout=30) as client:

        async def world(w: int) -> None:
            for v in range(VERSIONS):
                path = f"/risk-hub/worlds/w{w}/snapshots"
                ids = {"x-correlation-id": f"w{w}-v{v:02d}-post"}
                posted = await client.post(path, content=snapshot_body(w, v), headers=ids)
                if posted.status_code != 201:
                    failures.append(f"POST w{w} v{v:02d}: {posted.status_code} {posted.text}")
                    continue
                ids = {"x-correlation-id": f"w{w}-v{v:02d}-latest"}
                latest = await client.get(f"{path}/latest", headers=ids)
                served = latest.json().get("version") if latest.status_code == 200 else latest.text
                if served != f"v{v:02d}":
                    failures.append(f"latest of w{w} after v{v:02d}: {latest.status_code} {served}")

        await asyncio.gather(*(world(w) for w in range(WORLDS)))
    return failures


def answered_by(log: str) -> dict[str, int]:
    """Request id -> pid of the process that answered, from the access lines."""
    return {request_id: int(pid) for pid, _, request_id in ACCESS.findall(log)}


def assert_both_processes_answered(server: ServeWorkers, pids: list[int]) -> None:
    by = answered_by(server.text())
    posts = {by[f"w{w}-v{v:02d}-post"] for w in range(WORLDS) for v in range(VERSIONS)}
    assert posts == set(pids), (posts, pids)
    crossed = [
        (w, v)
        for w in range(WORLDS)
        for v in range(VERSIONS)
        if by[f"w{w}-v{v:02d}-post"] != by[f"w{w}-v{v:02d}-latest"]
    ]
    assert crossed, "no write was read back by the other process"


def wait_for_events(read: Callable[[str], list[tuple[Any, ...]]]) -> None:
    deadline = time.monotonic() + 30
    while len(read(PROCESSED)) < WORLDS * VERSIONS or ("pending", 0) in [r[:2] for r in read(OUTBOX)]:
        assert time.monotonic() < deadline, (read(OUTBOX), len(read(PROCESSED)))
        time.sleep(0.2)


def assert_each_event_handled_once(read: Callable[[str], list[tuple[Any, ...]]]) -> None:
    # One outbox row per snapshot, each published by exactly one relay pass (a second publish
    # would have counted a second attempt), then processed once, with one row per worker.
    assert sorted(read(OUTBOX)) == [("published", 1, WORLDS * VERSIONS)]
    processed = read(PROCESSED)
    assert {outcome for _, outcome in processed} == {"processed"}
    keys = {tuple(key.split("|")[:2]) for key, _ in processed}
    assert len(processed) == len(keys) == WORLDS * VERSIONS
    assert keys == {(f"w{w}", f"v{v:02d}") for w in range(WORLDS) for v in range(VERSIONS)}
    assert sorted(read(WORKER_ROWS)) == [
        ("extended_validation", WORLDS * VERSIONS),
        ("risk", WORLDS * VERSIONS),
    ]


def assert_stopped_cleanly(server: ServeWorkers, code: int, pids: list[int]) -> None:
    log = server.text()
    assert code == 0, log[-3000:]
    assert log.count("Finished server process") == WORKERS, log[-3000:]
    for noise in ("Traceback", "KeyboardInterrupt", "Error", "locked"):
        assert noise not in log, log[-3000:]
    assert processes_in_session(server.proc.pid) == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()


def test_two_processes_on_embedded_settings_share_one_sqlite_file(tmp_path: Path) -> None:
    server = ServeWorkers(tmp_path, {}, "--workers", str(WORKERS))
    try:
        pids = server.wait_until_every_process_serves()
        assert len(set(pids)) == WORKERS
        assert asyncio.run(write_and_read_back(server.url)) == []
        database = tmp_path / "riskhub.sqlite3"

        def read(sql: str) -> list[tuple[Any, ...]]:
            with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as conn:
                return conn.execute(sql).fetchall()

        wait_for_events(read)
        assert_each_event_handled_once(read)
        assert_both_processes_answered(server, pids)
    finally:
        code = server.stop(ctrl_c)
    assert_stopped_cleanly(server, code, pids)
    banner = server.text().splitlines()[0]
    assert banner == f"riskhub serving on {server.url} (embedded, data in {tmp_path}, 2 processes)"


def test_two_processes_on_postgres_and_redis_handle_each_event_once(
    tmp_path: Path, production: Production
) -> None:
    server = ServeWorkers(tmp_path, {**production.env(), "RISKHUB_SERVE_WORKERS": str(WORKERS)})
    try:
        pids = server.wait_until_every_process_serves()
        assert len(set(pids)) == WORKERS
        assert asyncio.run(write_and_read_back(server.url)) == []

        def read(sql: str) -> list[tuple[Any, ...]]:
            async def fetch() -> list[tuple[Any, ...]]:
                settings = {"search_path": production.namespace}
                conn = await asyncpg.connect(production.postgres.dsn, server_settings=settings)
                try:
                    return [tuple(row) for row in await conn.fetch(sql)]
                finally:
                    await conn.close()

            return asyncio.run(fetch())

        wait_for_events(read)
        assert_each_event_handled_once(read)
        assert_both_processes_answered(server, pids)
    finally:
        code = server.stop(sigterm)
    assert_stopped_cleanly(server, code, pids)


def test_workers_below_1_is_refused_naming_the_option(tmp_path: Path) -> None:
    for args, env in ((["--workers", "0"], {}), ([], {"RISKHUB_SERVE_WORKERS": "0"})):
        result = subprocess.run(
            [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(free_port()), *args],
            env={**os.environ, "RISKHUB_DATA_DIR": str(tmp_path), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and result.stdout == "", result.stdout
        assert "Invalid value for '--workers'" in result.stderr, result.stderr
        assert "greater than or equal to 1" in result.stderr, result.stderr
        assert not (tmp_path / "token").exists()  # refused before anything started


def test_a_process_that_cannot_start_stops_serve_with_one_error_not_a_restart_loop(tmp_path: Path) -> None:
    server = ServeWorkers(tmp_path, {"RISKHUB_BLOB_URL": "ftp://nowhere/blobs"}, "--workers", "2")
    code = server.stop(lambda proc: None)  # no signal: it stops by itself
    log = server.text()
    assert code == 3, log
    assert "cannot start: blob_url: unsupported scheme in 'ftp'" in log, log
    assert log.endswith("error: a server process could not start (the log above says why)\n"), log
    assert "Traceback" not in log and "died" not in log, log
    assert processes_in_session(server.proc.pid) == []
