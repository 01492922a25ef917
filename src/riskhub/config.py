"""One typed Settings object, read from env ``RISKHUB_*``; embedded defaults when nothing is set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from riskhub.cache import DEFAULT_MAX_AGE_S
from riskhub.contract import DEFAULT_STAGES, DEFAULT_TTL_S, MAX_TTL_S, ContractRules

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every knob of the hub. Unset service URLs mean the embedded implementation."""

    model_config = SettingsConfigDict(env_prefix="RISKHUB_", extra="ignore")

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    read_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = 32 * 1024 * 1024

    # Contract
    default_ttl_sec: int = DEFAULT_TTL_S
    max_ttl_sec: int = MAX_TTL_S
    allowed_stages: CommaList = Field(default_factory=lambda: sorted(DEFAULT_STAGES))
    allowed_actors: CommaList = Field(default_factory=list)
    require_stage: bool = False

    # Store, cache, blobs: unset -> embedded (SQLite / in-process / files under data_dir)
    data_dir: Path = Path("riskhub-data")
    database_url: str | None = None  # sqlite:///path or postgresql://user@host:port/db
    database_schema: str | None = None  # PostgreSQL search_path (one schema per deployment/test)
    database_pool_size: int = 10
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    redis_url: str | None = None
    cache_prefix: str = "riskhub:"
    cache_max_age_sec: float = DEFAULT_MAX_AGE_S  # longest a Redis latest entry lives unrefreshed
    blob_url: str | None = None  # file:///abs/dir, s3://bucket/prefix, redis://host:port/db
    blob_redis_prefix: str = "risk-blobs:"
    blob_redis_ttl_sec: int | None = None  # expiry of blobs no accepted snapshot references yet
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    inline_cov_threshold: int = 256 * 1024  # bytes of a part's canonical JSON
    max_event_bytes: int = 1_000_000  # largest stored snapshot (= event data) the bus must carry

    # ControlBus: unset brokers -> in-process bus
    controlbus_brokers: str | None = None
    controlbus_topic: str = "policy"
    controlbus_idempotence: bool = False
    dlq_topic: str | None = None
    consumer_group: str = "worldservice-risk-hub"
    max_attempts: int = 3
    retry_backoff_sec: float = 0.5
    event_source: str = "riskhub"
    # Worker handlers run by the consumer: "module:attribute" naming a Worker or a list of them.
    workers: CommaList = Field(default_factory=lambda: ["riskhub.workers:DEFAULT_WORKERS"])
    consumer_session_timeout_ms: int = 10_000
    consumer_heartbeat_interval_ms: int = 1_000

    # Background tasks of `riskhub serve`
    run_relay: bool = True
    run_consumer: bool = True
    relay_batch_size: int = 200
    bench_endpoints: bool = False  # /bench/parse and /bench/constant, baselines for `make bench`

    @field_validator("tokens", "read_tokens", "allowed_stages", "allowed_actors", "workers", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_stages")
    @classmethod
    def _lower_stages(cls, value: list[str]) -> list[str]:
        return [stage.lower() for stage in value]

    @property
    def contract_rules(self) -> ContractRules:
        """The contract's configurable rules."""
        return ContractRules(
            default_ttl_s=self.default_ttl_sec,
            max_ttl_s=self.max_ttl_sec,
            allowed_stages=frozenset(self.allowed_stages),
            allowed_actors=frozenset(self.allowed_actors),
            require_stage=self.require_stage,
        )
