"""HTTP benchmarks of the risk hub: throughput ratios against bare endpoints, and memory.

Run from the repository root: ``uv run python bench/run.py`` (``--help`` for the flags).

Every ratio compares the hub with a bare endpoint of the same server, measured in the same run,
so the numbers survive a slow or noisy machine:

* ``POST hub/bare``: ``POST /risk-hub/worlds/{w}/snapshots`` (validate, store, enqueue the event)
  against ``POST /bench/parse`` (parse the same body, answer 201). Every request carries a unique
  ``version``, so every hub write is a new snapshot (201).
* ``GET latest/constant``: ``GET /risk-hub/worlds/{w}/snapshots/latest`` against
  ``GET /bench/constant?size=N``, N being the byte size of a latest answer.
* ``MEM``: the server's resident memory after ``--memory-posts`` writes over 100 worlds.

The load generator (wrk) is pinned to CPU 0; this runner pins itself to CPU 1, so the server
and every service it starts (they inherit the affinity) share CPU 1. Loopback only.

A configuration (``--config``) names the services a hub is started with; to add one, write a
function that starts the services on an ``ExitStack`` and returns the server's extra
environment, and register it in ``CONFIGS``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

HOST = "127.0.0.1"
WRK_CPU = 0
SERVER_CPU = 1
WORLDS = 100
TOKEN = "bench-token"
VERSION_PLACEHOLDER = "__VERSION__"
LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "hub.lua"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POST_GOAL = 0.6
GET_GOAL = 0.8
MEMORY_GOAL_MB = 200.0


class BenchError(RuntimeError):
    """A benchmark could not run or produced an invalid measurement."""


# --------------------------------------------------------------------------- configurations


ServiceStarter = Callable[[ExitStack, Path], dict[str, str]]


def _embedded_services(stack: ExitStack, workdir: Path) -> dict[str, str]:
    """No external service: SQLite, in-process cache and bus under ``RISKHUB_DATA_DIR``."""
    del stack, workdir
    return {}


@dataclass(frozen=True)
class Config:
    """A hub configuration: a name and the services (and their env) the server runs with."""

    name: str
    description: str
    services: ServiceStarter


CONFIGS: Mapping[str, Config] = {
    "embedded": Config("embedded", "SQLite + in-process cache, relay and consumer", _embedded_services),
}


# --------------------------------------------------------------------------- payload


def snapshot_payload(seed: int = 20_240_601, strategies: int = 20, points: int = 25) -> str:
    """A deterministic ~13.5 KB "20-strategy snapshot" whose version is ``__VERSION__``.

    Weights are equal (0.05 each, summing to 1), the covariance is keyed and holds the upper
    triangle with the diagonal (each symmetric pair once), and ``as_of`` is now (so the
    snapshot does not expire during the run).
    """
    rng = random.Random(seed)
    ids = [f"strategy_{i:02d}" for i in range(strategies)]
    doc: dict[str, Any] = {
        "as_of": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "version": VERSION_PLACEHOLDER,
        "weights": dict.fromkeys(ids, round(1 / strategies, 6)),
        "covariance": {
            f"{a},{b}": round(rng.uniform(0.001, 0.09), 6) for i, a in enumerate(ids) for b in ids[i:]
        },
        "realized_returns": {a: [round(rng.uniform(-0.03, 0.03), 6) for _ in range(points)] for a in ids},
        "stress": {"crash": {"max_drawdown": 0.25}, "slowdown": {"max_drawdown": 0.12}},
        "ttl_sec": 3600,
    }
    return json.dumps(doc)


def body_with_version(payload: str, version: str) -> bytes:
    """The payload with its version placeholder replaced."""
    return payload.replace(VERSION_PLACEHOLDER, version, 1).encode()


# --------------------------------------------------------------------------- HTTP helpers


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request with the bench headers; returns ``(status, body)`` (errors included)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Actor": "gateway", "X-Stage": "paper"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class ServerSpec:
    """How to start the server: argv template (``{host}``, ``{port}``) and extra env."""

    argv: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True)
class Server:
    """A running server process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return f"http://{HOST}:{self.port}"

    def memory_kib(self) -> dict[str, int]:
        """``VmRSS`` and ``VmHWM`` (peak) in KiB, summed over the server's process tree."""
        totals = {"VmRSS": 0, "VmHWM": 0}
        for pid in process_tree(self.process.pid):
            for key, value in proc_status(pid).items():
                if key in totals:
                    totals[key] += value
        return totals


def default_server_argv() -> tuple[str, ...]:
    """``riskhub serve`` from this virtualenv, started directly (no ``uv run`` in between)."""
    script = Path(sys.prefix) / "bin" / "riskhub"
    executable = str(script) if script.exists() else shutil.which("riskhub") or "riskhub"
    return (executable, "serve", "--host", "{host}", "--port", "{port}")


def parse_server_cmd(command: str) -> tuple[str, ...]:
    """A ``--server-cmd`` string as argv; a relative program path is made absolute (the server
    runs in the work dir)."""
    argv = shlex.split(command)
    if not argv:
        raise BenchError("--server-cmd is empty")
    if "/" in argv[0]:
        argv[0] = os.path.abspath(argv[0])
    return tuple(argv)


def server_env(spec: ServerSpec, data_dir: Path) -> dict[str, str]:
    """This process's env without inherited ``RISKHUB_*``, plus the bench and config settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKHUB_")}
    env.update(
        RISKHUB_TOKENS=TOKEN,
        RISKHUB_DATA_DIR=str(data_dir),
        RISKHUB_BENCH_ENDPOINTS="true",
    )
    env.update(spec.env)
    return env


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"<no log at {path}>"


def wait_healthy(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll ``GET /healthz`` until it answers 200; fail if the process exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"server exited with {server.process.returncode} during startup:\n" + log_tail(server.log)
            )
        try:
            if http("GET", f"{server.url}/healthz", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"server not healthy after {timeout:.0f} s:\n{log_tail(server.log)}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"  server {process.pid} ignored SIGTERM for {timeout:.0f} s; killing it")
        process.kill()
        process.wait()


@contextmanager
def running_server(spec: ServerSpec, workdir: Path) -> Iterator[Server]:
    """Start the server with a fresh data dir, wait until healthy, stop it on exit."""
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=workdir))
    log = data_dir.with_name(f"server-{port}.log")
    argv = [part.format(host=HOST, port=port) for part in spec.argv]
    with log.open("wb") as log_file:
        try:
            process = subprocess.Popen(
                pinned(SERVER_CPU, argv),
                env=server_env(spec, data_dir),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        except OSError as exc:
            raise BenchError(f"cannot start the server {argv}: {exc}") from exc
    server = Server(process, port, log)
    try:
        wait_healthy(server)
        yield server
    finally:
        stop_process(process)


# --------------------------------------------------------------------------- processes, CPUs


def can_pin() -> bool:
    """True when the machine has CPUs 0 and 1 and taskset exists.

    Not ``sched_getaffinity``: this runner pins itself to the server CPU early on.
    """
    cpus = os.cpu_count() or 1
    return max(WRK_CPU, SERVER_CPU) < cpus and shutil.which("taskset") is not None


def pinned(cpu: int, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed with ``taskset -c cpu`` when pinning is possible."""
    return ["taskset", "-c", str(cpu), *argv] if can_pin() else list(argv)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def proc_status(pid: int) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/<pid>/status`` (empty if the process is gone)."""
    values: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return values
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            values[key] = int(parts[0])
    return values


# --------------------------------------------------------------------------- wrk


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
        raise BenchError("wrk did not stop after SIGINT") from None
    if process.returncode != 0:
        raise BenchError(f"wrk failed ({process.returncode}):\n{stdout}\n{stderr}")
    return checked(parse_wrk(endpoint, stdout), server)


# --------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison:
    """Alternating rounds of a hub endpoint and its bare baseline."""

    config: str
    kind: str  # "POST" / "GET"
    goal: float
    hub: list[WrkResult]
    bare: list[WrkResult]

    @property
    def ratio(self) -> float:
        """Median hub rps over median bare rps."""
        return median_rps(self.hub) / median_rps(self.bare)

    @property
    def met(self) -> bool:
        """Whether the ratio reaches the goal."""
        return self.ratio >= self.goal

    def line(self) -> str:
        """The summary line."""
        hub_name, bare_name = self.hub[0].endpoint.name, self.bare[0].endpoint.name
        verdict = "ok" if self.met else "MISSED"
        return (
            f"{self.config:<9} {self.kind:<4}  {hub_name} {median_rps(self.hub):6.0f} rps  "
            f"{bare_name} {median_rps(self.bare):6.0f} rps  ratio {self.ratio:.2f} "
            f"(goal >= {self.goal}) {verdict:<6}  {hub_name} p50 {latency(self.hub, 'p50')} / "
            f"p99 {latency(self.hub, 'p99')}; {bare_name} p50 {latency(self.bare, 'p50')} / "
            f"p99 {latency(self.bare, 'p99')}"
        )


def median_rps(results: Sequence[WrkResult]) -> float:
    """Median requests/s over rounds."""
    return statistics.median(r.rps for r in results)


def latency(results: Sequence[WrkResult], percentile: str) -> str:
    """Median over rounds of a latency percentile, formatted in ms."""
    value = statistics.median(r.latency_ms[percentile] for r in results)
    return f"{value:.1f} ms"


@dataclass(frozen=True)
class RunOptions:
    """Rounds and durations of a comparison."""

    rounds: int
    duration_s: int
    warmup_s: int


def compare(
    kind: str,
    goal: float,
    pair: tuple[Endpoint, Endpoint],
    server: Server,
    load: LoadOptions,
    run: RunOptions,
    config: str,
) -> Comparison:
    """Warm both endpoints up, then alternate (bare, hub) for ``run.rounds`` rounds."""
    hub, bare = pair
    if run.warmup_s > 0:
        run_wrk(bare, server, load, run.warmup_s)
        run_wrk(hub, server, load, run.warmup_s)
    hub_results, bare_results = [], []
    for round_no in range(1, run.rounds + 1):
        bare_results.append(run_wrk(bare, server, load, run.duration_s))
        hub_results.append(run_wrk(hub, server, load, run.duration_s))
        b, h = bare_results[-1], hub_results[-1]
        print(
            f"  {kind} round {round_no}/{run.rounds}: {bare.name} {b.rps:.0f} rps "
            f"(p50 {b.latency_ms['p50']:.1f} ms), {hub.name} {h.rps:.0f} rps "
            f"(p50 {h.latency_ms['p50']:.1f} ms), ratio {h.rps / b.rps:.2f}",
            flush=True,
        )
    return Comparison(config, kind, goal, hub_results, bare_results)


def post_pair(body_file: Path) -> tuple[Endpoint, Endpoint]:
    """(hub write, bare parse), same headers and bodies."""
    hub = Endpoint("hub", "POST", "/risk-hub/worlds/{world}/snapshots", 201, body_file)
    bare = Endpoint("bare", "POST", "/bench/parse", 201, body_file)
    return hub, bare


def seed_worlds(server: Server, payload: str) -> None:
    """One fresh snapshot per world (same-length versions), so every ``latest`` exists."""
    tag = secrets.token_hex(4)
    for i in range(WORLDS):
        url = f"{server.url}/risk-hub/worlds/w{i:03d}/snapshots"
        status, answer = http("POST", url, body_with_version(payload, f"seed-{tag}-{i:03d}"))
        if status != 201:
            raise BenchError(f"seeding w{i:03d}: {status} {answer[:300]!r}")


def get_pair(server: Server, payload: str) -> tuple[Endpoint, Endpoint]:
    """Seed the worlds, measure a ``latest`` answer, return (latest, constant of that size)."""
    seed_worlds(server, payload)
    status, answer = http("GET", f"{server.url}/risk-hub/worlds/w000/snapshots/latest")
    if status != 200:
        raise BenchError(f"GET latest: {status} {answer[:300]!r}")
    print(f"  GET latest answer: {len(answer)} bytes")
    latest = Endpoint("latest", "GET", "/risk-hub/worlds/{world}/snapshots/latest", 200)
    constant = Endpoint("constant", "GET", f"/bench/constant?size={len(answer)}", 200)
    return latest, constant


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryResult:
    """Server memory before and after a batch of writes."""

    config: str
    posts: int
    in_flight_max: int
    before_kib: Mapping[str, int]
    after_kib: Mapping[str, int]
    rps: float

    @property
    def met(self) -> bool:
        """Whether the RSS after the writes is under the goal."""
        return self.after_kib["VmRSS"] / 1024 < MEMORY_GOAL_MB

    def line(self) -> str:
        """The summary line."""
        after_mb = self.after_kib["VmRSS"] / 1024
        verdict = "ok" if self.met else "MISSED"
        return (
            f"{self.config:<9} MEM   RSS {after_mb:.0f} MB after {self.posts} POSTs "
            f"(+<= {self.in_flight_max} in flight) over {WORLDS} worlds at {self.rps:.0f} rps "
            f"(before {self.before_kib['VmRSS'] / 1024:.0f} MB, "
            f"peak {self.after_kib['VmHWM'] / 1024:.0f} MB)  goal < {MEMORY_GOAL_MB:.0f} MB "
            f"{verdict}"
        )


def measure_memory(
    server: Server, body_file: Path, load: LoadOptions, posts: int, config: str
) -> MemoryResult:
    """RSS of a fresh server before and after ``posts`` unique snapshot writes."""
    before = server.memory_kib()
    hub, _ = post_pair(body_file)
    result = run_wrk_count(hub, server, load, posts, max_s=3600)
    time.sleep(1.0)  # let the relay/consumer drain what was just written
    return MemoryResult(
        config=config,
        posts=result.statuses.get(201, 0),
        in_flight_max=load.connections,
        before_kib=before,
        after_kib=server.memory_kib(),
        rps=result.rps,
    )


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (all on CPU 0)")
    parser.add_argument("--only", choices=["post", "get", "memory"], help="run one benchmark")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="embedded")
    parser.add_argument("--memory-posts", type=int, default=50_000)
    parser.add_argument(
        "--server-cmd",
        help="server command with {host} and {port} placeholders (default: riskhub serve)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    return parser.parse_args(argv)


def pin_self() -> None:
    """Pin this runner (and so the server and services it starts) to the server CPU."""
    if can_pin():
        os.sched_setaffinity(0, {SERVER_CPU})
    else:
        print(f"WARNING: cannot pin (need CPUs {WRK_CPU},{SERVER_CPU} and taskset); unpinned")


class Outcome(Protocol):
    """A benchmark's summary: one line and whether its goal was met."""

    @property
    def met(self) -> bool:
        """Whether the goal was met."""
        ...

    def line(self) -> str:
        """One summary line."""
        ...


def run_benchmarks(args: argparse.Namespace, workdir: Path) -> list[Outcome]:
    """Run the selected benchmarks of one configuration."""
    config = CONFIGS[args.config]
    payload = snapshot_payload()
    body_file = workdir / "snapshot.json"
    body_file.write_text(payload)
    print(f"snapshot payload: {len(body_with_version(payload, 'x' * 20))} bytes (20 strategies)")
    load = LoadOptions(args.threads, args.connections, workdir)
    run = RunOptions(args.rounds, args.duration, args.warmup)
    argv = parse_server_cmd(args.server_cmd) if args.server_cmd else default_server_argv()
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        spec = ServerSpec(argv, config.services(stack, workdir))
        print(f"config {config.name}: {config.description}; server: {' '.join(argv)}")
        if args.only in (None, "post", "get"):
            server = stack.enter_context(running_server(spec, workdir))
            if args.only in (None, "post"):
                pair = post_pair(body_file)
                outcomes.append(compare("POST", POST_GOAL, pair, server, load, run, config.name))
            if args.only in (None, "get"):
                pair = get_pair(server, payload)
                outcomes.append(compare("GET", GET_GOAL, pair, server, load, run, config.name))
        if args.only in (None, "memory"):
            with running_server(spec, workdir) as fresh:
                print(f"  MEM: {args.memory_posts} POSTs on a fresh server ...", flush=True)
                outcomes.append(measure_memory(fresh, body_file, load, args.memory_posts, config.name))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run, print the summary table, return the exit code."""
    args = parse_args(argv)
    pin_self()
    workdir = Path(tempfile.mkdtemp(prefix="riskhub-bench-"))
    try:
        outcomes = run_benchmarks(args, workdir)
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for outcome in outcomes:
        print(outcome.line())
    return 1 if args.strict and not all(o.met for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
