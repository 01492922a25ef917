"""Where a write's CPU time goes on a real server under load.

``make profile`` (= ``uv run python bench/hotspots.py``; ``--help`` for the flags). For each
configuration the hub's write and the baseline its goal compares with are driven by wrk (CPU 0)
against one ``riskhub serve`` (CPU 1), as in ``make bench``, while py-spy samples the server. Each
sample is charged to a step within a phase (``bench/stacks.py``); microseconds per request are
the server's CPU time over the run, and over the drain of what the run deferred, times the step's
share of the samples, divided by the requests answered. The last lines compare the hub with what
its goal allows: the gap, and which steps it is made of.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from bodies import BODIES, GOAL_BODY
from common import SERVER_CPU, WRK_CPU, BenchError, machine_header, pin_self, pinned
from configs import CONFIGS, Config, ServiceOptions
from http_bench import BASELINES, prepare_body
from load import Endpoint, LoadOptions, hub_post, run_wrk
from server import Server, ServerSpec, default_server_argv, running_server, wait_drained
from stacks import Sample, charge, parse_raw, unexplained

PROFILED = ("embedded-api", "embedded", "pg-redis")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ELSEWHERE = "other processes on the server CPU (PostgreSQL, Redis)"


@dataclass(frozen=True)
class Profile:
    """One endpoint's run: requests answered, CPU seconds the server process and the whole server
    CPU (the services pinned with it) spent on them, and the server's samples."""

    label: str
    requests: int
    seconds: float
    server_cpu_s: float
    cpu_s: float
    samples: list[Sample]

    @property
    def us_per_request(self) -> float:
        """Server CPU microseconds per answered request, services included."""
        return max(self.cpu_s, self.server_cpu_s) / self.requests * 1e6

    def steps(self) -> dict[tuple[str, str], float]:
        """Microseconds per request by (phase, step): the server process's by its samples, the
        rest of the server CPU's as one line."""
        counts = charge(self.samples)
        total = sum(counts.values()) or 1
        server_us = self.server_cpu_s / self.requests * 1e6
        steps = {key: server_us * n / total for key, n in counts.items()}
        if self.us_per_request - server_us >= 1:
            steps[ELSEWHERE, ELSEWHERE] = self.us_per_request - server_us
        return steps


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--config", default=",".join(PROFILED), help=f"comma-separated (default {','.join(PROFILED)})")
    add("--body", default=GOAL_BODY, choices=sorted(BODIES), help=f"POST body (default {GOAL_BODY})")
    add("--seconds", type=int, default=10, help="seconds of load per endpoint (default 10)")
    add("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    add("--connections", type=int, default=32, help="wrk connections (default 32)")
    add("--drain-timeout", type=float, default=300.0, help="max seconds to drain the outbox")
    args = parser.parse_args(argv)
    args.config = tuple(args.config.split(","))
    if set(args.config) - set(PROFILED):
        parser.error(f"--config: choose from {','.join(PROFILED)}")
    return args


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def busy_seconds(cpu: int) -> float:
    """CPU seconds ``cpu`` spent not idle since boot (every process on it)."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name == f"cpu{cpu}":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, ticks[:8])
            return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    raise BenchError(f"no cpu{cpu} line in /proc/stat")


def py_spy() -> str:
    """py-spy from this virtualenv (a dev dependency)."""
    found = Path(sys.prefix) / "bin" / "py-spy"
    if found.exists():
        return str(found)
    which = shutil.which("py-spy")
    if which is None:
        raise BenchError("py-spy is not installed (uv sync installs it with the dev dependencies)")
    return which


def profiled(
    label: str, endpoint: Endpoint, server: Server, load: LoadOptions, args: argparse.Namespace, drains: bool
) -> Profile:
    """Sample the server while wrk drives ``endpoint`` (and while it drains what the run left)."""
    out = load.workdir / f"spy-{endpoint.name}-{time.monotonic_ns()}.txt"
    argv = [py_spy(), "record", "--nonblocking", "--rate", str(args.rate), "--format", "raw"]
    argv += ["--output", str(out), "--pid", str(server.process.pid)]
    pid = server.process.pid
    started, cpu_before, busy_before = time.monotonic(), cpu_seconds(pid), busy_seconds(SERVER_CPU)
    spy = subprocess.Popen(pinned(WRK_CPU, argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        result = run_wrk(endpoint, server, load, args.seconds)
        if drains:
            wait_drained(server, args.drain_timeout)
    finally:
        spy.send_signal(signal.SIGINT)
        spy_log, _ = spy.communicate(timeout=60)
    server_cpu_s, cpu_s = cpu_seconds(pid) - cpu_before, busy_seconds(SERVER_CPU) - busy_before
    seconds = time.monotonic() - started
    if not out.exists():
        raise BenchError(f"py-spy wrote no profile ({spy.returncode}):\n{spy_log}")
    return Profile(label, result.requests, seconds, server_cpu_s, cpu_s, parse_raw(out.read_text()))


def report(profile: Profile) -> None:
    """The profile's steps, by phase, in microseconds per request."""
    steps = profile.steps()
    samples = sum(s.count for s in profile.samples)
    print(
        f"\n  {profile.label}: {profile.requests} requests in {profile.seconds:.1f} s "
        f"({profile.requests / profile.seconds:.0f}/s); CPU {SERVER_CPU} busy {profile.cpu_s:.1f} s, "
        f"the server process {profile.server_cpu_s:.1f} s: {profile.us_per_request:.0f} us per request; "
        f"{samples} samples"
    )
    phases: defaultdict[str, float] = defaultdict(float)
    for (phase, _), us in steps.items():
        phases[phase] += us
    for phase, phase_us in sorted(phases.items(), key=lambda item: -item[1]):
        print(f"    {phase:<44} {phase_us:7.0f} us")
        for (in_phase, step), us in sorted(steps.items(), key=lambda item: -item[1]):
            if in_phase == phase and us >= 1:
                print(f"      {step:<42} {us:7.0f}")
    for frame, count in unexplained(profile.samples):
        print(f"    (other: {frame}: {100 * count / max(samples, 1):.1f}% of samples)")


def gap(hub: Profile, baseline: Profile, goal: float | None) -> None:
    """What the goal allows the hub per request, and the steps over it."""
    if goal is None:
        return
    allowed = baseline.us_per_request / goal
    over = hub.us_per_request - allowed
    print(
        f"\n  goal {goal}: the baseline costs {baseline.us_per_request:.0f} us per request, so the hub "
        f"may cost {allowed:.0f}; it costs {hub.us_per_request:.0f}: "
        + (f"{over:.0f} us over" if over > 0 else "within the goal")
    )
    by_step: defaultdict[str, float] = defaultdict(float)
    for (_, step), us in hub.steps().items():
        by_step[step] += us
    for (_, step), us in baseline.steps().items():
        by_step[step] -= us
    print("  hub minus baseline, by step (us per request; negative: the baseline spends more):")
    for step, us in sorted(by_step.items(), key=lambda item: -abs(item[1])):
        if abs(us) >= 5:
            print(f"    {step:<44} {us:+7.0f}")


def profile_config(config: Config, args: argparse.Namespace, workdir: Path) -> None:
    """Start the configuration, profile its hub POST and its goal's baseline."""
    config_dir = workdir / config.name
    config_dir.mkdir()
    print(f"\nconfig {config.name}: {config.description}; body {args.body}", flush=True)
    with ExitStack() as stack:
        spec = ServerSpec(default_server_argv(), config.services(stack, config_dir, ServiceOptions(False)))
        load = LoadOptions(2, args.connections, config_dir)
        with running_server(spec, config_dir) as server:
            body = prepare_body(args.body, server, config_dir)
            hub = hub_post(body.file)
            base = replace(BASELINES[config.post_baseline].endpoint, body_file=body.file)
            for endpoint in (base, hub):  # warm-up: imports, caches, the SQLite file's pages
                run_wrk(endpoint, server, load, 2)
            if config.relays:
                wait_drained(server, args.drain_timeout)
            base_label = f"baseline {BASELINES[config.post_baseline].label}"
            baseline = profiled(base_label, base, server, load, args, drains=False)
            report(baseline)
            counted = " (and its drain)" if config.relays else ""
            written = profiled(f"hub POST {args.body}{counted}", hub, server, load, args, config.relays)
            report(written)
            gap(written, baseline, config.post_goal if args.body == GOAL_BODY else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    for key in [k for k in os.environ if k.startswith("RISKHUB_")]:
        del os.environ[key]
    print(machine_header(), flush=True)
    pin_self()
    workdir = Path(tempfile.mkdtemp(prefix="riskhub-profile-"))
    try:
        for name in args.config:
            profile_config(CONFIGS[name], args, workdir)
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
