"""One typed Settings object, read from env ``RISKHUB_*``; embedded defaults when nothing is set.

Every default of a setting is written here once; the contract, the adapters and the client take
theirs from the constants below (so this module imports nothing of riskhub).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]

# HTTP and the embedded data dir (`riskhub serve`)
HOST: Final = "127.0.0.1"
PORT: Final = 8000
DATA_DIR: Final = Path("riskhub-data")
TOKEN_FILE: Final = "token"  # in the data dir: the token `serve` generates when none is set
SERVE_WORKERS: Final = 1  # server processes of `riskhub serve` on its one port
# Contract
DEFAULT_TTL_S: Final = 900
MAX_TTL_S: Final = 86_400
DEFAULT_STAGES: Final = frozenset({"backtest", "paper", "live"})
MAX_CLOCK_SKEW_S: Final = 300  # an as_of further in the future than this is refused
MAX_TEXT_CHARS: Final = 256  # ids, versions, actors, stages, part keys, correlation ids
# Size limits
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
INLINE_COV_THRESHOLD_BYTES: Final = 256 * 1024  # bytes of a part's canonical JSON
MAX_EVENT_BYTES: Final = 1_000_000  # largest stored snapshot (= event data) the bus must carry
# Store, cache, blobs
DATABASE_POOL_SIZE: Final = 10
CACHE_PREFIX: Final = "riskhub:"
CACHE_MAX_AGE_S: Final = 10.0  # longest a Redis latest entry lives unrefreshed
BLOB_REDIS_PREFIX: Final = "risk-blobs:"
# ControlBus and consumer (queue standards defaults)
CONTROLBUS_TOPIC: Final = "policy"
CONSUMER_GROUP: Final = "worldservice-risk-hub"
EVENT_SOURCE: Final = "riskhub"
MAX_ATTEMPTS: Final = 3
RETRY_BACKOFF_S: Final = 0.5
CONSUMER_SESSION_TIMEOUT_MS: Final = 10_000
CONSUMER_HEARTBEAT_INTERVAL_MS: Final = 1_000
RELAY_BATCH_SIZE: Final = 200
# Status page (runbook thresholds: warn ~10 min, crit ~30 min of as_of lag)
STATUS_WARN_S: Final = 600
STATUS_CRIT_S: Final = 1800
STATUS_REFRESH_S: Final = 10
IDLE_WORLD_S: Final = 7 * 86_400  # a world/stage silent this long leaves the process's memory
LOG_FORMAT: Final = "text"  # or "json": one JSON object per line
# Risk analytics
PERIODS_PER_YEAR: Final = 252  # sigma_annual = sigma * sqrt(periods_per_year)
# Deployment checklist and access control (`riskhub doctor`, `riskhub topics create`, token files)
TOKENS_RELOAD_S: Final = 1.0  # how often `serve` looks for a changed tokens file
MIN_TOKEN_CHARS: Final = 32
TOPIC_PARTITIONS: Final = 3
TOPIC_REPLICATION_FACTOR: Final = 3  # at most: a cluster of fewer brokers gets one replica per broker
TOPIC_RETENTION_MS: Final = 7 * 24 * 3600 * 1000
MIN_TOPIC_RETENTION_MS: Final = 24 * 3600 * 1000  # a worker stopped for a day must not miss events
EVENT_ENVELOPE_BYTES: Final = 8 * 1024  # an event's record beyond its data (envelope, key, headers)
CONSUMER_LAG_WARN: Final = 1000  # the runbook's alert threshold
OUTBOX_AGE_WARN_S: Final = 60.0  # the runbook's alert threshold on the oldest unsent event
DOCTOR_TIMEOUT_S: Final = 10.0  # per check: a hung service is a failed line, not a hung doctor


@dataclass(frozen=True, slots=True)
class ContractRules:
    """The configurable part of the contract (re-exported by ``riskhub.contract``)."""

    default_ttl_s: int = DEFAULT_TTL_S
    max_ttl_s: int = MAX_TTL_S
    allowed_stages: frozenset[str] = DEFAULT_STAGES
    allowed_actors: frozenset[str] = frozenset()  # empty: any actor
    require_stage: bool = False
    max_clock_skew_s: int = MAX_CLOCK_SKEW_S  # how far in the future an as_of may be


def stage_allowlist(stages: Iterable[str]) -> frozenset[str]:
    """A stage allowlist, case-normalized like the stages it admits."""
    return frozenset(stage.lower() for stage in stages)


class Settings(BaseSettings):
    """Every knob of the hub. Unset service URLs mean the embedded implementation."""

    model_config = SettingsConfigDict(env_prefix="RISKHUB_", extra="ignore")

    log_format: Literal["text", "json"] = LOG_FORMAT

    # HTTP
    host: str = HOST
    port: int = PORT
    # `serve --workers`: processes on the one port (env RISKHUB_SERVE_WORKERS, since
    # RISKHUB_WORKERS names the consumer's worker handlers below).
    serve_workers: int = Field(SERVE_WORKERS, ge=1)
    tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    read_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = MAX_BODY_BYTES

    # Contract
    default_ttl_sec: int = DEFAULT_TTL_S
    max_ttl_sec: int = MAX_TTL_S
    allowed_stages: CommaList = Field(default_factory=lambda: sorted(DEFAULT_STAGES))
    allowed_actors: CommaList = Field(default_factory=list)
    require_stage: bool = False
    max_clock_skew_sec: int = MAX_CLOCK_SKEW_S

    # Store, cache, blobs: unset -> embedded (SQLite / in-process / files under data_dir)
    data_dir: Path = DATA_DIR
    database_url: str | None = None  # sqlite:///path or postgresql://user@host:port/db
    database_schema: str | None = None  # PostgreSQL search_path (one schema per deployment/test)
    database_pool_size: int = DATABASE_POOL_SIZE
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    redis_url: str | None = None
    cache_prefix: str = CACHE_PREFIX
    cache_max_age_sec: float = CACHE_MAX_AGE_S
    blob_url: str | None = None  # file:///abs/dir, s3://bucket/prefix, redis://host:port/db
    blob_redis_prefix: str = BLOB_REDIS_PREFIX
    blob_redis_ttl_sec: int | None = None  # expiry of blobs no accepted snapshot references yet
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    inline_cov_threshold: int = INLINE_COV_THRESHOLD_BYTES
    max_event_bytes: int = MAX_EVENT_BYTES

    # ControlBus: unset brokers -> in-process bus
    controlbus_brokers: str | None = None
    controlbus_topic: str = CONTROLBUS_TOPIC
    controlbus_idempotence: bool = False
    dlq_topic: str | None = None
    consumer_group: str = CONSUMER_GROUP
    max_attempts: int = MAX_ATTEMPTS
    retry_backoff_sec: float = RETRY_BACKOFF_S
    event_source: str = EVENT_SOURCE
    # Worker handlers run by the consumer: "module:attribute" naming a Worker or a list of them.
    workers: CommaList = Field(default_factory=lambda: ["riskhub.risk.workers:DEFAULT_WORKERS"])
    consumer_session_timeout_ms: int = CONSUMER_SESSION_TIMEOUT_MS
    consumer_heartbeat_interval_ms: int = CONSUMER_HEARTBEAT_INTERVAL_MS

    metrics_token: SecretStr | None = None  # when set, /metrics needs it as a bearer token
    idle_world_sec: int = Field(IDLE_WORLD_S, ge=60)

    # Status page at /
    status_warn_sec: int = STATUS_WARN_S
    status_crit_sec: int = STATUS_CRIT_S
    status_refresh_sec: int = STATUS_REFRESH_S

    # Risk analytics
    periods_per_year: int = Field(PERIODS_PER_YEAR, ge=1)
    limits_file: Path | None = None  # TOML [[limit]] rows (docs/runbook.md, "Reading the risk figures")

    # Access control: token files re-read while serving; client networks (empty: any)
    tokens_file: Path | None = None  # read-write tokens, one per line, `#` comments
    read_tokens_file: Path | None = None  # read-only tokens, same format
    tokens_reload_sec: float = Field(TOKENS_RELOAD_S, gt=0)
    allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)

    # Background tasks of `riskhub serve`
    run_relay: bool = True
    run_consumer: bool = True
    relay_batch_size: int = RELAY_BATCH_SIZE
    bench_endpoints: bool = False  # /bench/parse and /bench/constant, baselines for `make bench`

    @field_validator(
        "tokens",
        "read_tokens",
        "allowed_stages",
        "allowed_actors",
        "workers",
        "allowed_networks",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_stages")
    @classmethod
    def _lower_stages(cls, value: list[str]) -> list[str]:
        return sorted(stage_allowlist(value))

    @property
    def token_file(self) -> Path:
        """Where ``serve`` keeps the token it generated (used only when ``tokens`` is empty)."""
        return self.data_dir / TOKEN_FILE

    @property
    def contract_rules(self) -> ContractRules:
        """The contract's configurable rules."""
        return ContractRules(
            default_ttl_s=self.default_ttl_sec,
            max_ttl_s=self.max_ttl_sec,
            allowed_stages=stage_allowlist(self.allowed_stages),
            allowed_actors=frozenset(self.allowed_actors),
            require_stage=self.require_stage,
            max_clock_skew_s=self.max_clock_skew_sec,
        )
