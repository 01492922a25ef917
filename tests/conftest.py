"""Shared fixtures: real services started once per session (only when a test asks for them),
and hubs running their real lifespan, each test in a fresh namespace (data dir, schema, prefix)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from riskhub.api.app import create_app
from riskhub.bootstrap import Components, build_components
from riskhub.config import Settings

from services import (
    KafkaService,
    PostgresService,
    RedisService,
    S3Service,
    free_port,
    start_kafka,
    start_postgres,
    start_redis,
    start_s3,
    tcp_accepts,
)

TOKEN = "test-token-rw-0123456789abcdef01234567"  # as long as `riskhub doctor` wants
READ_TOKEN = "test-token-ro-0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "operations/risk_hub/samples/risk_snapshot_with_realized_and_stress.json"


class FakeClock:
    """A settable UTC clock for TTL tests."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def hub_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Embedded settings in a fresh data dir, with known tokens."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "tokens": [TOKEN],
        "read_tokens": [READ_TOKEN],
        "dlq_topic": "policy.dlq",
        "retry_backoff_sec": 0.01,
    }
    values.update(overrides)
    return Settings(**values)


class HubClient:
    """An in-process hub (real lifespan, real store) and an httpx client on it."""

    def __init__(self, app: FastAPI, parts: Components, client: httpx.AsyncClient, backend: str) -> None:
        self.app, self.parts, self.client, self.backend = app, parts, client, backend

    async def post(
        self,
        world: str,
        body: Any,
        *,
        actor: str | None = "gateway",
        stage: str | None = "paper",
        token: str | None = TOKEN,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST a snapshot (``body`` as JSON unless ``raw`` is given)."""
        all_headers = {"content-type": "application/json", **(headers or {})}
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        if actor is not None:
            all_headers["x-actor"] = actor
        if stage is not None:
            all_headers["x-stage"] = stage
        content = raw if raw is not None else httpx_json(body)
        return await self.client.post(
            f"/risk-hub/worlds/{world}/snapshots", content=content, headers=all_headers
        )

    async def get(self, path: str, *, token: str | None = TOKEN, **params: Any) -> httpx.Response:
        """GET with the token."""
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        return await self.client.get(path, headers=headers, params=params)

    async def drain(self) -> None:
        """Run the outbox relay until nothing is pending (events delivered to the consumer)."""
        await self.parts.relay.run(until_idle=True)

    def metric(self, name: str, **labels: str) -> float:
        """Current value of a sample in the hub's registry (0 if absent)."""
        value = self.parts.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def httpx_json(body: Any) -> bytes:
    """Encode with the stdlib, as most producers would."""
    import json

    return json.dumps(body).encode()


def sample_snapshot(**changes: Any) -> dict[str, Any]:
    """The runbook sample, optionally changed."""
    import json

    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    doc.update(changes)
    return doc


# --- real services, started once per session when a test first needs them ------------------------


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[PostgresService]:
    svc = start_postgres(services_dir, settings={"max_connections": "300"})
    yield svc
    svc.destroy()


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[RedisService]:
    svc = start_redis(services_dir)
    yield svc
    svc.destroy()


@pytest.fixture(scope="session")
def s3(services_dir: Path) -> Iterator[S3Service]:
    svc = start_s3(services_dir)
    svc.create_bucket("riskhub-test")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = svc.access_key, svc.secret_key
    yield svc
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    svc.destroy()


@pytest.fixture(scope="session")
def kafka(services_dir: Path) -> Iterator[KafkaService]:
    svc = start_kafka(services_dir)
    yield svc
    svc.destroy()


@dataclass
class Production:
    """The production services and a fresh namespace in each (schema, key prefix, S3 prefix)."""

    postgres: PostgresService
    redis: RedisService
    s3: S3Service
    namespace: str

    def settings(self) -> dict[str, Any]:
        """Settings overrides that point a hub at this namespace."""
        return {
            "database_url": self.postgres.dsn,
            "database_schema": self.namespace,
            "redis_url": self.redis.url,
            "cache_prefix": f"{self.namespace}:",
            "blob_url": f"s3://riskhub-test/{self.namespace}",
            "s3_endpoint_url": self.s3.endpoint_url,
        }

    def env(self) -> dict[str, str]:
        """The same as ``RISKHUB_*`` environment variables (for server processes)."""
        return {f"RISKHUB_{k.upper()}": str(v) for k, v in self.settings().items()}


@pytest.fixture
def production(postgres: PostgresService, redis_server: RedisService, s3: S3Service) -> Production:
    """Fresh PostgreSQL schema, Redis prefix and S3 prefix for one test (sync, so that async
    fixtures can request it through ``getfixturevalue``)."""
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    psql = [str(postgres.bindir / "psql"), "-h", postgres.host, "-p", str(postgres.port)]
    psql += ["-U", postgres.user, "-d", postgres.database, "-qc", f"CREATE SCHEMA {namespace}"]
    subprocess.run(psql, check=True, capture_output=True)
    return Production(postgres, redis_server, s3, namespace)


@pytest.fixture(params=["embedded", "production"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Run the test once on embedded defaults and once on PostgreSQL + Redis + S3."""
    if request.param == "embedded":
        return {}
    production: Production = request.getfixturevalue("production")
    return {"backend": "production", **production.settings()}


@pytest.fixture
def make_hub(tmp_path: Path, backend: dict[str, Any]) -> Callable[..., Any]:
    """Factory: ``async with make_hub(**settings) as hub`` gives a running in-process hub on the
    test's backend (embedded, or production services in a fresh namespace)."""
    import contextlib

    @contextlib.asynccontextmanager
    async def factory(
        clock: FakeClock | None = None, background: bool = False, **overrides: Any
    ) -> AsyncIterator[HubClient]:
        backend_settings = {k: v for k, v in backend.items() if k != "backend"}
        settings = hub_settings(tmp_path, **{**backend_settings, **overrides})
        parts = build_components(settings)
        if clock is not None:
            parts.hub.clock = clock
            parts.consumer.clock = clock
        if not background:
            settings = settings.model_copy(update={"run_relay": False})
            parts.settings = settings
        app = create_app(settings, components=parts)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                yield HubClient(app, parts, client, backend.get("backend", "embedded"))

    return factory


@pytest.fixture
async def hub(make_hub: Callable[..., Any]) -> AsyncIterator[HubClient]:
    """A default embedded hub (relay driven by the test via ``hub.drain()``)."""
    async with make_hub() as running:
        yield running


class ServerProcess:
    """A real ``riskhub serve`` process on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait for /healthz."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            if tcp_accepts(self.port):
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self, sig: int = 15) -> None:
        """Stop (SIGTERM by default, SIGKILL with sig=9)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real hub processes; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def factory(**env: str) -> ServerProcess:
        base = {
            "RISKHUB_TOKENS": TOKEN,
            "RISKHUB_READ_TOKENS": READ_TOKEN,
            "RISKHUB_DATA_DIR": str(tmp_path / "server-data"),
        }
        server = ServerProcess({**base, **env}, tmp_path / f"server-{len(started)}.log")
        server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


async def corrupt_blob(hub: HubClient, ref: str) -> None:
    """Change one digit of a stored blob in place, as a failing disk or an operator might."""
    if ref.startswith("file://"):
        await asyncio.to_thread(_flip_a_byte, Path(ref.removeprefix("file://")))
        return
    import aioboto3

    bucket, _, key = ref.removeprefix("s3://").partition("/")
    endpoint = hub.parts.settings.s3_endpoint_url
    async with aioboto3.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        obj = await s3.get_object(Bucket=bucket, Key=key)
        content = bytearray(await obj["Body"].read())
        content[5:6] = b"9"
        await s3.put_object(Bucket=bucket, Key=key, Body=bytes(content))


async def delete_blob(hub: HubClient, ref: str) -> None:
    """Remove a stored blob, as a careless cleanup job might."""
    if ref.startswith("file://"):
        await asyncio.to_thread(Path(ref.removeprefix("file://")).unlink)
        return
    import aioboto3

    bucket, _, key = ref.removeprefix("s3://").partition("/")
    endpoint = hub.parts.settings.s3_endpoint_url
    async with aioboto3.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        await s3.delete_object(Bucket=bucket, Key=key)


def _flip_a_byte(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(5)
        handle.write(b"9")


async def pg_execute(hub: HubClient, *statements: str) -> list[Any]:
    """Run statements in the hub's PostgreSQL schema; returns each one's first value."""
    import asyncpg

    settings = hub.parts.settings
    conn = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": settings.database_schema or "public"}
    )
    try:
        return [await conn.fetchval(statement) for statement in statements]
    finally:
        await conn.close()
