"""wrk runs (pinned to the load generator's CPU) and their validated results."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import TOKEN, WORLDS, WRK_CPU, BenchError, log_tail, pinned
from server import Server

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "hub.lua"


@dataclass(frozen=True)
class Endpoint:
    """A benchmarked endpoint; ``{world}`` in the path cycles over the 100 worlds."""

    name: str
    method: str
    path: str
    expected_status: int
    body_file: Path | None = None


@dataclass(frozen=True)
class LoadOptions:
    """wrk settings shared by every run."""

    threads: int
    connections: int
    workdir: Path


@dataclass(frozen=True)
class WrkResult:
    """The parsed ``BENCH_RESULT`` line of one wrk run."""

    endpoint: Endpoint
    requests: int
    duration_s: float
    errors: Mapping[str, int]
    statuses: Mapping[int, int]
    latency_ms: Mapping[str, float]

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0

    def problems(self) -> list[str]:
        """Why this run is invalid (empty when every answer had the expected status)."""
        found = [f"{kind} errors: {n}" for kind, n in self.errors.items() if n]
        found += [
            f"{n} responses with status {status} (expected {self.endpoint.expected_status})"
            for status, n in sorted(self.statuses.items())
            if status != self.endpoint.expected_status
        ]
        if self.requests == 0:
            found.append("no request completed")
        return found


def wrk_argv(
    endpoint: Endpoint, server: Server, load: LoadOptions, duration_s: int, extra: Sequence[str]
) -> list[str]:
    """The pinned wrk command line for one run."""
    args = [f"method={endpoint.method}", f"path={endpoint.path}", f"token={TOKEN}"]
    args.append(f"worlds={WORLDS}")
    if endpoint.body_file is not None:
        args += [f"body={endpoint.body_file}", f"tag={secrets.token_hex(4)}"]
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    argv = [wrk, f"-t{load.threads}", f"-c{load.connections}", f"-d{duration_s}s"]
    argv += ["--timeout", "10s", "--latency", "-s", str(LUA_SCRIPT), server.url, *args, *extra]
    return pinned(WRK_CPU, argv)


def parse_wrk(endpoint: Endpoint, output: str) -> WrkResult:
    """Read the ``BENCH_RESULT`` JSON line that ``hub.lua``'s ``done`` prints."""
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = json.loads(line.removeprefix("BENCH_RESULT "))
            return WrkResult(
                endpoint=endpoint,
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                errors=data["errors"],
                statuses={int(k): v for k, v in data["statuses"].items()},
                latency_ms={k: v / 1000 for k, v in data["latency_us"].items()},
            )
    raise BenchError(f"no BENCH_RESULT line in wrk output:\n{output}")


def checked(result: WrkResult, server: Server) -> WrkResult:
    """The result, or a loud BenchError when any answer was wrong."""
    problems = result.problems()
    if problems:
        raise BenchError(
            f"INVALID RUN of {result.endpoint.method} {result.endpoint.path} "
            f"({result.requests} requests): {'; '.join(problems)}\n"
            f"server log tail:\n{log_tail(server.log)}"
        )
    return result


def run_wrk(endpoint: Endpoint, server: Server, load: LoadOptions, duration_s: int) -> WrkResult:
    """One wrk run of ``duration_s`` seconds; raises if any answer was not the expected one."""
    argv = wrk_argv(endpoint, server, load, duration_s, extra=())
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return checked(parse_wrk(endpoint, done.stdout), server)


def run_wrk_count(endpoint: Endpoint, server: Server, load: LoadOptions, total: int, max_s: int) -> WrkResult:
    """Run wrk until every thread has ``ceil(total / threads)`` answers, then SIGINT it.

    wrk has no request-count flag: ``hub.lua`` stops each thread at its limit and touches a
    file; once every thread's file exists, SIGINT ends wrk's sleep and it prints its summary.
    """
    per_thread = -(-total // load.threads)
    donefile = load.workdir / f"done-{secrets.token_hex(4)}-"
    extra = (f"limit={per_thread}", f"donefile={donefile}")
    argv = wrk_argv(endpoint, server, load, max_s, extra)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + max_s + 60
    while process.poll() is None and time.monotonic() < deadline:
        if all(Path(f"{donefile}{i}").exists() for i in range(load.threads)):
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise BenchError("wrk did not stop after SIGINT") from None
    if process.returncode != 0:
        raise BenchError(f"wrk failed ({process.returncode}):\n{stdout}\n{stderr}")
    return checked(parse_wrk(endpoint, stdout), server)


def hub_post(body_file: Path) -> Endpoint:
    """The hub's write: every request a new snapshot (201)."""
    return Endpoint("hub", "POST", "/risk-hub/worlds/{world}/snapshots", 201, body_file)
