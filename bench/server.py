"""The server under test: start/stop ``riskhub serve`` (or ``riskhub worker``), read its /metrics,
wait for its outbox to drain, and do arithmetic on its Prometheus histograms."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import (
    HOST,
    SERVER_CPU,
    TOKEN,
    BenchError,
    free_port,
    http,
    log_tail,
    pinned,
    proc_status,
    process_tree,
)
from prometheus_client.parser import text_string_to_metric_families

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
BACKLOG = "risk_hub_outbox_backlog"
COMMIT_TO_PUBLISH = "risk_hub_outbox_commit_to_publish_seconds"


@dataclass(frozen=True)
class ServerSpec:
    """How to start the server: argv template (``{host}``, ``{port}``) and extra env."""

    argv: tuple[str, ...]
    env: Mapping[str, str]

    def with_env(self, **extra: str) -> ServerSpec:
        """The same server with more ``RISKHUB_*`` settings."""
        return ServerSpec(self.argv, {**self.env, **extra})


@dataclass(frozen=True)
class Server:
    """A running server process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    env: Mapping[str, str]

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


def riskhub_executable() -> str:
    """``riskhub`` from this virtualenv (started directly, no ``uv run`` in between)."""
    script = Path(sys.prefix) / "bin" / "riskhub"
    return str(script) if script.exists() else shutil.which("riskhub") or "riskhub"


def default_server_argv() -> tuple[str, ...]:
    """``riskhub serve`` on ``{host}:{port}``."""
    return (riskhub_executable(), "serve", "--host", "{host}", "--port", "{port}")


def server_env(extra: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """This process's env without inherited ``RISKHUB_*``, plus the bench and config settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKHUB_")}
    env.update(RISKHUB_TOKENS=TOKEN, RISKHUB_DATA_DIR=str(data_dir), RISKHUB_BENCH_ENDPOINTS="true")
    env.update(extra)
    return env


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
        print(f"  process {process.pid} ignored SIGTERM for {timeout:.0f} s; killing it")
        process.kill()
        process.wait()


@contextmanager
def running_process(
    argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A process pinned to the server CPU, logging to ``log``, stopped on exit."""
    with log.open("ab") as log_file:
        try:
            process = subprocess.Popen(
                pinned(SERVER_CPU, argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        except OSError as exc:
            raise BenchError(f"cannot start {list(argv)}: {exc}") from exc
    try:
        yield process
    finally:
        stop_process(process)


@contextmanager
def running_server(spec: ServerSpec, workdir: Path) -> Iterator[Server]:
    """Start the server with a fresh data dir, wait until healthy, stop it on exit."""
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=workdir))
    log = data_dir.with_name(f"server-{port}.log")
    argv = [part.format(host=HOST, port=port) for part in spec.argv]
    env = server_env(spec.env, data_dir)
    with running_process(argv, env, log, workdir) as process:
        server = Server(process, port, log, env)
        wait_healthy(server)
        yield server


# --------------------------------------------------------------------------- /metrics


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(server: Server) -> Samples:
    """Every sample of ``GET /metrics``, by sample name (the handler refreshes the backlog)."""
    status, body = http("GET", f"{server.url}/metrics", timeout=30.0)
    if status != 200:
        raise BenchError(f"GET /metrics: {status} {body[:200]!r}")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def outbox_backlog(server: Server) -> int:
    """``risk_hub_outbox_backlog`` as the server reports it now."""
    values = scrape(server).get(BACKLOG)
    if not values:
        raise BenchError(f"/metrics has no {BACKLOG}")
    return int(values[0][1])


@dataclass(frozen=True)
class Drain:
    """How long the server took to empty its outbox (relay + in-process consumer)."""

    seconds: float
    backlog_before: int
    backlog_after: int

    @property
    def drained(self) -> bool:
        """True when the backlog reached 0 within the bound."""
        return self.backlog_after == 0

    def text(self) -> str:
        """``drain 0.4 s (812 -> 0)``, or the timeout."""
        if self.backlog_before == 0:
            return "drain 0.0 s"
        if not self.drained:
            return f"NOT DRAINED after {self.seconds:.0f} s ({self.backlog_before} -> {self.backlog_after})"
        return f"drain {self.seconds:.1f} s ({self.backlog_before} -> 0)"


def wait_drained(server: Server, timeout_s: float, poll_s: float = 0.1) -> Drain:
    """Wait (bounded) until the outbox backlog is 0, so deferred work of a previous run does not
    slow the next one down."""
    started = time.monotonic()
    first = current = outbox_backlog(server)
    while current and time.monotonic() - started < timeout_s:
        time.sleep(poll_s)
        current = outbox_backlog(server)
    return Drain(time.monotonic() - started, first, current)


# --------------------------------------------------------------------------- histograms


Buckets = dict[float, float]  # upper bound ("le") -> cumulative count


def histogram(samples: Samples, name: str) -> Buckets:
    """The cumulative buckets of an unlabelled histogram."""
    return {float(labels["le"]): value for labels, value in samples.get(f"{name}_bucket", [])}


def histogram_delta(before: Buckets, after: Buckets) -> Buckets:
    """Observations made between two scrapes."""
    return {le: after[le] - before.get(le, 0.0) for le in after}


def bucket_quantile(buckets: Buckets, q: float) -> float:
    """Prometheus ``histogram_quantile``: linear interpolation inside the bucket that holds the
    ``q``-quantile (0 as the lower edge of the first bucket). In the ``+Inf`` bucket, the largest
    finite bound is returned (the true value is above it); NaN without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound
