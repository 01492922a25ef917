"""Benchmarks of the risk hub: throughput ratios against bare endpoints and raw aiokafka, latency
of the outbox and of the whole ControlBus path, and memory.

Run from the repository root: ``uv run python bench/run.py`` (``--help`` for the flags).

Every ratio compares the hub with a baseline measured in the same run, rounds alternating in
order, so the numbers survive a slow or noisy machine. The load generator (wrk) and the client
loops run on CPU 0; this runner pins itself to CPU 1, so the server and every service it starts
share CPU 1 (services are also pinned explicitly after start). Loopback only. See
``bench/README.md`` for what each line of the final table means.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import bodies
from analytics_bench import analytics_lines
from bodies import BODIES, GOAL_BODY, BenchBody
from common import BenchError, load_average, machine_header, pin_self
from configs import CONFIGS, Config, ServiceOptions
from http_bench import RunOptions, bench_commit_to_publish, bench_get, bench_memory, bench_post, prepare_body
from kafka_bench import KafkaOptions, bench_kafka
from load import LoadOptions
from report import Line, table
from server import Server, ServerSpec, default_server_argv, running_server
from status_bench import status_lines

BENCHMARKS = ("post", "get", "memory", "latency", "relay", "worker", "e2e")
ALL_CONFIGS = ("embedded", "embedded-api", "pg-redis", "kafka", "analytics", "status")
IN_PROCESS = {"analytics": analytics_lines, "status": status_lines}  # configurations without servers


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add(
        "--config",
        choices=[*ALL_CONFIGS, "all"],
        default="all",
        help="default all: " + ", ".join(ALL_CONFIGS),
    )
    add("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    add(
        "--bodies",
        default=",".join(BODIES),
        help=f"POST bodies, comma-separated (default {','.join(BODIES)})",
    )
    add("--rounds", type=int, default=5, help="alternating rounds per comparison (default 5)")
    add("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    add("--warmup", type=int, default=1, help="warm-up seconds per endpoint (default 1)")
    add("--connections", type=int, default=32, help="wrk connections (default 32)")
    add("--threads", type=int, default=2, help="wrk threads, all on CPU 0 (default 2)")
    add("--drain-timeout", type=float, default=120.0, help="max seconds to wait for an empty outbox")
    add("--memory-posts", type=int, default=50_000, help="writes before the RSS check (embedded)")
    add("--latency-posts", type=int, default=200, help="paced writes for commit->publish (pg-redis)")
    add("--latency-rate", type=float, default=50.0, help="their rate per second (default 50)")
    add("--kafka-events", type=int, default=5_000, help="events per relay/worker round (kafka)")
    add("--e2e-seconds", type=float, default=10.0, help="paced POSTs for POST->handled (kafka)")
    add("--e2e-rate", type=float, default=50.0, help="their rate per second (default 50)")
    add("--pg-fsync", action="store_true", help="PostgreSQL with fsync on (default off, as in tests)")
    add("--server-cmd", help="server command with {host} and {port} (default: riskhub serve)")
    add("--keep", action="store_true", help="keep the work dir (logs, data)")
    add("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    args.only = tuple(args.only.split(",")) if args.only else BENCHMARKS
    args.bodies = tuple(args.bodies.split(","))
    if set(args.bodies) - set(BODIES):
        parser.error(
            f"--bodies: unknown {sorted(set(args.bodies) - set(BODIES))}; choose from {','.join(BODIES)}"
        )
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {','.join(BENCHMARKS)}")
    return args


def server_argv(command: str | None) -> tuple[str, ...]:
    """``--server-cmd`` as argv (a relative program made absolute: the server runs in the work
    dir), or ``riskhub serve``."""
    if not command:
        return default_server_argv()
    argv = shlex.split(command)
    if not argv:
        raise BenchError("--server-cmd is empty")
    if "/" in argv[0]:
        argv[0] = os.path.abspath(argv[0])
    return tuple(argv)


def run_http(config: Config, spec: ServerSpec, load: LoadOptions, args: argparse.Namespace) -> list[Line]:
    """POST ratios for every body, GET ratio and commit->publish latency (body a) on one
    server; memory on a fresh one. A configuration with ``latency_env`` measures the latency
    first, on a server of its own with those settings: an API-only server never relays, so its
    events would still be in the shared outbox."""
    workdir = load.workdir
    run = RunOptions(args.rounds, args.duration, args.warmup, args.drain_timeout, config.relays)
    selected = [b for b in config.benchmarks if b in args.only]
    latency_apart = "latency" in selected and config.latency_env is not None
    lines: list[Line] = []
    if latency_apart and config.latency_env is not None:
        with running_server(spec.with_env(**config.latency_env), workdir) as server:
            lines += latency(config, server, prepare_body(GOAL_BODY, server, workdir), args)
    if {"post", "get"} & set(selected) or ("latency" in selected and not latency_apart):
        with running_server(spec, workdir) as server:
            goal_body = prepare_body(GOAL_BODY, server, workdir)
            if "post" in selected:
                for name in args.bodies:
                    body = goal_body if name == GOAL_BODY else prepare_body(name, server, workdir)
                    print(f"  body {name}: {len(body.bytes_for('x' * 20))} bytes, {BODIES[name].description}")
                    lines += bench_post(config, server, body, load, run)
            if "get" in selected:
                lines += bench_get(config, server, goal_body, load, run)
            if "latency" in selected and not latency_apart:
                lines += latency(config, server, goal_body, args)
    if "memory" in selected:
        with running_server(spec, workdir) as fresh:
            print(f"  MEM: {args.memory_posts} POSTs of body {GOAL_BODY} on a fresh server ...", flush=True)
            body = prepare_body(GOAL_BODY, fresh, workdir)
            lines += bench_memory(config.name, fresh, body, load, args.memory_posts, args.drain_timeout)
    return lines


def latency(config: Config, server: Server, body: BenchBody, args: argparse.Namespace) -> list[Line]:
    """commit->publish of paced writes of ``body``."""
    return bench_commit_to_publish(
        config.name, server, body.payload, args.latency_posts, args.latency_rate, args.drain_timeout
    )


def run_config(config: Config, args: argparse.Namespace, workdir: Path) -> list[Line]:
    """Start the configuration's services and run its selected benchmarks."""
    selected = [b for b in config.benchmarks if b in args.only]
    if not selected:
        return []
    config_dir = workdir / config.name
    config_dir.mkdir()
    argv = server_argv(args.server_cmd)
    print(f"\nconfig {config.name}: {config.description}; benchmarks {','.join(selected)}", flush=True)
    with ExitStack() as stack:
        spec = ServerSpec(argv, config.services(stack, config_dir, ServiceOptions(args.pg_fsync)))
        load = LoadOptions(args.threads, args.connections, config_dir)
        lines = run_http(config, spec, load, args)
        if {"relay", "worker", "e2e"} & set(selected):
            payload = bodies.payload(GOAL_BODY)
            body_file = config_dir / "snapshot.json"
            body_file.write_text(payload)
            opts = KafkaOptions(
                args.kafka_events, args.rounds, args.e2e_seconds, args.e2e_rate, args.drain_timeout
            )
            lines += bench_kafka(config.name, spec, config_dir, payload, body_file, load, opts, selected)
    return lines


def run_all(args: argparse.Namespace, workdir: Path) -> list[Line]:
    """Every selected configuration in turn; a failing one gives a FAILED line, the rest still run."""
    names = ALL_CONFIGS if args.config == "all" else (args.config,)
    server = " ".join(server_argv(args.server_cmd))
    print(f"bodies {','.join(args.bodies)} (bench/bodies.py; goals on body {GOAL_BODY}); server: {server}")
    lines: list[Line] = []
    for name in names:
        try:
            lines += IN_PROCESS[name]() if name in IN_PROCESS else run_config(CONFIGS[name], args, workdir)
        except Exception as exc:  # one broken configuration must not hide the others' results
            if not isinstance(exc, BenchError):
                traceback.print_exc()
            print(f"\nconfig {name} FAILED: {exc}", file=sys.stderr, flush=True)
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            lines.append(Line(name, "FAILED", "-", "runs", False, reason))
    return lines


def forget_riskhub_env() -> None:
    """Drop inherited ``RISKHUB_*`` settings: servers get exactly the bench's, and Settings built
    in this process (relay, worker) read nothing else."""
    for key in [k for k in os.environ if k.startswith("RISKHUB_")]:
        print(f"ignoring inherited {key}")
        del os.environ[key]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run, print the summary table, return the exit code."""
    args = parse_args(argv)
    forget_riskhub_env()
    header = machine_header()
    print(header, flush=True)
    pin_self()
    workdir = Path(tempfile.mkdtemp(prefix="riskhub-bench-"))
    started = time.monotonic()
    try:
        lines = run_all(args, workdir)
    finally:
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    minutes = (time.monotonic() - started) / 60
    print(f"\n{header}\nrun took {minutes:.1f} min; load average at end {load_average()}\n")
    print(table(lines))
    failed = any(line.met is False for line in lines)
    return 1 if (args.strict and failed) or any(line.name == "FAILED" for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
