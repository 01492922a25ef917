"""Hub configurations: which services a server runs with, started (and pinned to the server CPU)
on an ``ExitStack`` with the test suite's own helpers (``tests/services.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT, SERVER_CPU, affinity_of, pin_process_tree

sys.path.insert(0, str(REPO_ROOT / "tests"))
import services


@dataclass(frozen=True)
class ServiceOptions:
    """Knobs of the started services."""

    pg_fsync: bool


ServiceStarter = Callable[[ExitStack, Path, ServiceOptions], dict[str, str]]


@dataclass(frozen=True)
class Config:
    """A hub configuration: its services (returning the server's extra env) and benchmarks."""

    name: str
    description: str
    services: ServiceStarter
    benchmarks: tuple[str, ...]
    relays: bool = True  # False: relay and consumer off, so nothing drains the outbox
    post_baseline: str = "bare-dict"  # the baseline the POST goal compares with
    post_goal: float | None = None  # None: POST ratios printed without a goal
    get_goal: float | None = None
    count_drain: bool = False  # the POST goal counts the drain of what a run deferred
    latency_env: Mapping[str, str] | None = None  # "latency" on its own server with these settings


def report_pinning(name: str, pids: list[int]) -> None:
    """Print which pids run where (all must be on the server CPU)."""
    cpus = sorted({cpu for pid in pids for cpu in affinity_of(pid)})
    print(f"  {name}: {len(pids)} process(es) pinned, CPUs {cpus} (want [{SERVER_CPU}])")


def postgres_settings(options: ServiceOptions) -> dict[str, str]:
    """postgresql.conf for the benchmark; ``fsync``/``full_page_writes`` stay off as in the tests
    unless ``--pg-fsync``."""
    durable = "on" if options.pg_fsync else "off"
    return {
        "fsync": durable,
        "full_page_writes": durable,
        "synchronous_commit": "on",
        "shared_buffers": "256MB",
        "max_connections": "100",
    }


def start_postgres(stack: ExitStack, workdir: Path, options: ServiceOptions) -> str:
    """A throwaway cluster pinned to the server CPU; returns its DSN (schema: public)."""
    settings = postgres_settings(options)
    pg = services.start_postgres(workdir, settings=settings)
    stack.callback(pg.destroy)
    postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])
    report_pinning("postgres (postmaster + children)", pin_process_tree(postmaster))
    shown = ", ".join(f"{k}={v}" for k, v in settings.items())
    warning = "" if options.pg_fsync else " -- commits are NOT flushed to disk (as in tests; --pg-fsync)"
    print(f"  PostgreSQL {pg.port}: {shown}{warning}")
    return pg.dsn


def start_redis(stack: ExitStack, workdir: Path) -> str:
    """redis-server (no persistence) pinned to the server CPU; returns its URL."""
    redis = services.start_redis(workdir)
    stack.callback(redis.destroy)
    report_pinning("redis-server", pin_process_tree(redis.pid or 0))
    return redis.url


def start_broker(stack: ExitStack, workdir: Path) -> str:
    """A memory-backed Tansu broker pinned to the server CPU; returns its bootstrap address."""
    kafka = services.start_kafka(workdir)
    stack.callback(kafka.destroy)
    report_pinning("tansu broker", pin_process_tree(kafka.pid or 0))
    return kafka.bootstrap


def embedded_services(stack: ExitStack, workdir: Path, options: ServiceOptions) -> dict[str, str]:
    """No external service: SQLite, in-process cache and bus under ``RISKHUB_DATA_DIR``."""
    del stack, workdir, options
    return {}


def embedded_api_services(stack: ExitStack, workdir: Path, options: ServiceOptions) -> dict[str, str]:
    """Embedded, API only: the server neither relays nor consumes (as an API replica that leaves
    them to ``riskhub relay`` / ``riskhub worker``); its events stay in the outbox."""
    return {**embedded_services(stack, workdir, options), **RELAY_OFF}


def pg_redis_services(stack: ExitStack, workdir: Path, options: ServiceOptions) -> dict[str, str]:
    """PostgreSQL + Redis; relay and consumer stay in-process (in-process bus)."""
    return {
        "RISKHUB_DATABASE_URL": start_postgres(stack, workdir, options),
        "RISKHUB_REDIS_URL": start_redis(stack, workdir),
    }


RELAY_OFF = {"RISKHUB_RUN_RELAY": "false", "RISKHUB_RUN_CONSUMER": "false"}
RELAY_ON = {"RISKHUB_RUN_RELAY": "true", "RISKHUB_RUN_CONSUMER": "true"}


def pg_redis_api_services(stack: ExitStack, workdir: Path, options: ServiceOptions) -> dict[str, str]:
    """PostgreSQL + Redis, API only: the production shape of an API replica (`riskhub relay` and
    `riskhub worker` run as their own processes), like the bare asyncpg endpoint it is compared
    with; the latency runs on a server of its own with relay and consumer on."""
    return {**pg_redis_services(stack, workdir, options), **RELAY_OFF}


def kafka_services(stack: ExitStack, workdir: Path, options: ServiceOptions) -> dict[str, str]:
    """PostgreSQL + Redis + a Kafka-protocol broker: the production shape."""
    return {
        **pg_redis_services(stack, workdir, options),
        "RISKHUB_CONTROLBUS_BROKERS": start_broker(stack, workdir),
        "RISKHUB_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "RISKHUB_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
    }


CONFIGS: Mapping[str, Config] = {
    "embedded": Config(
        "embedded",
        "SQLite + in-process cache, relay, consumer and risk workers (make run: all in one process)",
        embedded_services,
        ("post", "memory"),
        post_goal=0.5,
        count_drain=True,
    ),
    "embedded-api": Config(
        "embedded-api",
        "SQLite, API only: relay and consumer off (their work left to other processes)",
        embedded_api_services,
        ("post", "get"),
        relays=False,
        post_goal=0.8,
        get_goal=0.9,
    ),
    "pg-redis": Config(
        "pg-redis",
        "PostgreSQL + Redis, API only (commit->publish: a server with in-process relay and consumer)",
        pg_redis_api_services,
        ("post", "get", "latency"),
        relays=False,
        latency_env=RELAY_ON,
        post_baseline="bare-pg",
        post_goal=0.8,
        get_goal=0.8,
    ),
    "kafka": Config(
        "kafka",
        "PostgreSQL + Redis + Tansu (Kafka protocol), relay to the broker, consumer group workers",
        kafka_services,
        ("relay", "worker", "e2e"),
    ),
}
