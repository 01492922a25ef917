"""Shared pieces of the benchmark runner: constants, the payload, HTTP, CPUs and processes.

Plain module next to ``run.py`` (``python bench/run.py`` puts ``bench/`` first on ``sys.path``).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"
WRK_CPU = 0  # load generator and every client-side loop of this runner
SERVER_CPU = 1  # server, its relay/consumer, workers, PostgreSQL, Redis, the broker
WORLDS = 100
TOKEN = "bench-token"
ACTOR, STAGE = "gateway", "paper"
VERSION_PLACEHOLDER = "__VERSION__"
BUSY_LOAD = 1.0  # 1-minute load average above which the header warns
REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A benchmark could not run or produced an invalid measurement."""


# --------------------------------------------------------------------------- payload


def body_with_version(payload: str, version: str) -> bytes:
    """The payload with its version placeholder replaced."""
    return payload.replace(VERSION_PLACEHOLDER, version, 1).encode()


# --------------------------------------------------------------------------- HTTP


def write_headers() -> dict[str, str]:
    """Bearer token, actor and stage of every bench request."""
    return {"Authorization": f"Bearer {TOKEN}", "X-Actor": ACTOR, "X-Stage": STAGE}


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request with the bench headers; returns ``(status, body)`` (errors included)."""
    headers = write_headers()
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --------------------------------------------------------------------------- CPUs


def can_pin() -> bool:
    """True when the machine has CPUs 0 and 1 and taskset exists.

    Not ``sched_getaffinity``: this runner pins itself to the server CPU early on.
    """
    cpus = os.cpu_count() or 1
    return max(WRK_CPU, SERVER_CPU) < cpus and shutil.which("taskset") is not None


def pinned(cpu: int, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed with ``taskset -c cpu`` when pinning is possible."""
    return ["taskset", "-c", str(cpu), *argv] if can_pin() else list(argv)


def pin_self() -> None:
    """Pin this runner (and so every server and service it starts) to the server CPU."""
    if can_pin():
        os.sched_setaffinity(0, {SERVER_CPU})
    else:
        print(f"WARNING: cannot pin (need CPUs {WRK_CPU},{SERVER_CPU} and taskset); unpinned")


@contextmanager
def client_cpu() -> Iterator[None]:
    """Run the block's client-side work (paced POST loops) on the load generator's CPU.

    Only the calling thread moves; start no process inside the block (it would inherit CPU 0).
    """
    if not can_pin():
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {WRK_CPU})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pin_process_tree(root: int, cpu: int = SERVER_CPU) -> list[int]:
    """Pin every thread of ``root`` and its descendants to ``cpu`` (``taskset -a -p``);
    returns the pinned pids. New children inherit the affinity."""
    if not can_pin():
        return []
    pids = process_tree(root)
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            try:
                os.sched_setaffinity(int(task.name), {cpu})
            except (ProcessLookupError, PermissionError):
                continue
    return pids


def affinity_of(pid: int) -> set[int]:
    """The CPU set of a process (empty if it is gone)."""
    try:
        return os.sched_getaffinity(pid)
    except ProcessLookupError:
        return set()


def machine_header() -> str:
    """nproc, load average and the pinning, for the top of the report."""
    pinning = (
        f"wrk and client loops on CPU {WRK_CPU}; server, relay, consumer/worker, PostgreSQL, Redis, "
        f"broker on CPU {SERVER_CPU}"
        if can_pin()
        else "NOT pinned (needs 2 CPUs and taskset)"
    )
    busy = os.getloadavg()[0] >= BUSY_LOAD
    note = " NOTE: the machine is busy (other processes share the CPUs)." if busy else ""
    return (
        f"machine: nproc {os.cpu_count()}, load average at start {load_average()} (1/5/15 min), "
        f"python {sys.version.split()[0]}; pinning: {pinning}.{note}"
    )


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# --------------------------------------------------------------------------- processes


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


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"<no log at {path}>"


def wait_for(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> float | None:
    """Poll ``check()`` until true; seconds it took, or None on timeout."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            return None
        time.sleep(interval_s)


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, linearly interpolated between order statistics."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
