"""The production topology on loopback, every part a real process: PostgreSQL, Redis, moto (S3),
Tansu (Kafka protocol), two ``riskhub serve`` and two ``riskhub worker`` processes.

Started by ``running_topology`` and always stopped by it, also on failure. With pinning, the
services and hub processes run on one CPU and the runner (load generator, ledger) on the other,
as ``make bench`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services import (
    KafkaService,
    PostgresService,
    RedisService,
    S3Service,
    ServerProcess,
    create_topic,
    free_port,
    start_kafka,
    start_postgres,
    start_redis,
    start_s3,
)

TOKEN = "soak-token"
BUCKET, BLOB_PREFIX = "riskhub-soak", "blobs"
TOPIC = "policy"
TESTS_DIR = Path(__file__).resolve().parents[1]
WORKERS = "riskhub.risk.workers:DEFAULT_WORKERS,doomed_worker:DOOMED"  # doomed-* versions go to the DLQ
WORKER_NAMES = frozenset({"extended_validation", "risk", "doomed"})
LIMITS = '[[limit]]\nstage = "live"\nmetric = "var_99"\nmax = 0.0001\nseverity = "breach"\n'
LOAD_CPU, SERVICE_CPU = 0, 1
ASSIGNED = re.compile(r"assigned partitions: \[(.*)\]")


def can_pin() -> bool:
    """Two CPUs and taskset: the runner on one, everything it starts on the other."""
    return (os.cpu_count() or 1) > SERVICE_CPU and shutil.which("taskset") is not None


@contextlib.contextmanager
def runner_on(cpu: int | None) -> Iterator[None]:
    """Run this thread (and what it starts) on ``cpu`` inside the block (None: unchanged)."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Topology:
    """The running processes and where they listen."""

    root: Path
    postgres: PostgresService
    redis: RedisService
    s3: S3Service
    kafka: KafkaService
    partitions: int
    pin: bool
    serves: list[ServerProcess] = field(default_factory=list)
    workers: list[ServerProcess] = field(default_factory=list)

    @property
    def blob_url(self) -> str:
        """The hub's (and the offloading producer's) blob store."""
        return f"s3://{BUCKET}/{BLOB_PREFIX}"

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic."""
        return f"{TOPIC}.dlq"

    def env(self) -> dict[str, str]:
        """Settings shared by every hub process."""
        return {
            "RISKHUB_TOKENS": TOKEN,
            "RISKHUB_DATABASE_URL": self.postgres.dsn,
            "RISKHUB_REDIS_URL": self.redis.url,
            "RISKHUB_BLOB_URL": self.blob_url,
            "RISKHUB_S3_ENDPOINT_URL": self.s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
            "RISKHUB_CONTROLBUS_BROKERS": self.kafka.bootstrap,
            "RISKHUB_CONTROLBUS_TOPIC": TOPIC,
            "RISKHUB_DLQ_TOPIC": self.dlq_topic,
            "RISKHUB_CONSUMER_SESSION_TIMEOUT_MS": "3000",
            "RISKHUB_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
            "RISKHUB_INLINE_COV_THRESHOLD": "4096",  # bodies.HUB_INLINE_THRESHOLD
            "RISKHUB_LIMITS_FILE": str(self.root / "limits.toml"),
            "RISKHUB_WORKERS": WORKERS,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
        }

    def argv(self, *command: str) -> list[str]:
        """A ``riskhub`` command line, pinned to the service CPU when pinning."""
        argv = [sys.executable, "-m", "riskhub.cli", *command]
        return ["taskset", "-c", str(SERVICE_CPU), *argv] if self.pin else argv

    def add_hub_process(self, kind: str) -> ServerProcess:
        """Start one more ``serve`` or ``worker`` process (blocking until it listens)."""
        group = self.serves if kind == "serve" else self.workers
        name, port = f"{kind}-{len(group) + 1}", free_port()
        workdir = self.root / name
        workdir.mkdir()
        # The runner's own RISKHUB_* (an operator's shell) must not leak into the deployment.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RISKHUB_")}
        env = {**inherited, **self.env(), "RISKHUB_DATA_DIR": str(workdir / "data")}
        flag = "--port" if kind == "serve" else "--metrics-port"
        argv = self.argv(kind, flag, str(port))
        process = ServerProcess(name=name, port=port, workdir=workdir, argv=argv, env=env)
        group.append(process)
        process.start(timeout=60)
        return process

    def pids(self) -> dict[str, int | None]:
        """The top process of every part, by name (None while it is down)."""
        named: dict[str, int | None] = {"postgres": postmaster_pid(self.postgres)}
        for svc in (self.redis, self.s3, self.kafka, *self.serves, *self.workers):
            named[svc.name] = svc.pid
        return named

    def unexpected_exits(self) -> list[str]:
        """Hub processes that are not running (every fault restarts what it stopped)."""
        return [p.name for p in (*self.serves, *self.workers) if not p.running]


def http_url(process: ServerProcess) -> str:
    """Base URL of a ``serve`` process."""
    return f"http://{process.host}:{process.port}"


def postmaster_pid(postgres: PostgresService) -> int | None:
    """The postmaster's pid (first line of ``postmaster.pid``)."""
    try:
        return int((postgres.datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def assigned(worker: ServerProcess) -> set[int]:
    """Partitions of the latest assignment a worker logged."""
    try:
        found = ASSIGNED.findall(worker.log_path.read_text(errors="replace"))
    except OSError:
        return set()
    return {int(p) for p in re.findall(r"/(\d+)'", found[-1])} if found else set()


async def wait_for_group(topology: Topology, timeout_s: float = 60.0) -> None:
    """Until the workers' latest assignments cover every partition."""
    deadline = time.monotonic() + timeout_s
    wanted = set(range(topology.partitions))
    while set().union(*(assigned(w) for w in topology.workers)) != wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"consumer group did not cover partitions {sorted(wanted)} in {timeout_s}s")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_topology(
    root: Path, *, serves: int = 2, workers: int = 2, partitions: int = 4, pin: bool = True
) -> AsyncIterator[Topology]:
    """Start everything (services first, then the hub processes); stop all of it on the way out."""
    pin = pin and can_pin()
    (root / "limits.toml").write_text(LIMITS)
    with contextlib.ExitStack() as stack:
        with runner_on(SERVICE_CPU if pin else None):  # what start_* spawns inherits the CPU
            postgres = start_postgres(root, settings={"max_connections": "200"})
            stack.callback(postgres.destroy)
            redis = start_redis(root)
            stack.callback(redis.destroy)
            s3 = start_s3(root)
            stack.callback(s3.destroy)
            kafka = start_kafka(root)
            stack.callback(kafka.destroy)
        if pin:  # a restart (Redis) happens from the runner's CPU: pin its command line instead
            redis.argv = ["taskset", "-c", str(SERVICE_CPU), *redis.argv]
        s3.create_bucket(BUCKET)
        await create_topic(kafka.bootstrap, TOPIC, partitions)
        await create_topic(kafka.bootstrap, f"{TOPIC}.dlq", 1)
        topology = Topology(root, postgres, redis, s3, kafka, partitions, pin)
        stack.callback(_stop_hub_processes, topology)
        for kind in ["serve"] * serves + ["worker"] * workers:
            await asyncio.to_thread(topology.add_hub_process, kind)
        await wait_for_group(topology)
        with runner_on(LOAD_CPU if pin else None):
            yield topology


def _stop_hub_processes(topology: Topology) -> None:
    for process in (*topology.workers, *topology.serves):
        process.stop()
