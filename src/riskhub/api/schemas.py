"""OpenAPI documentation of the routes: what the handlers read and write by hand (raw body,
headers, pre-serialized answers) described as models. Nothing here validates a request: the
contract module does, with the error messages the API promises."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from riskhub.contract import ContractRules
from riskhub.contract.numbers import MAX_SERIES_POINTS, WEIGHT_SUM_TOLERANCE

# The documented limits are the contract's defaults (the settings may narrow or widen them).
RULES = ContractRules()


class ErrorDetail(BaseModel):
    """What went wrong, and the field it is about (when there is one)."""

    code: str
    message: str
    field: str | None


class ErrorBody(BaseModel):
    """Every error answer."""

    error: ErrorDetail


class SnapshotIn(BaseModel):
    """A risk snapshot as a producer sends it (the contract: README "API", docs/runbook.md); free extra
    keys allowed."""

    model_config = ConfigDict(extra="allow")

    world_id: str | None = Field(None, description="if given, equal to the path's")
    as_of: str = Field(description="ISO-8601 timestamp")
    version: str
    weights: dict[str, float] = Field(
        min_length=1, description=f"id -> weight; finite, summing to 1 within {WEIGHT_SUM_TOLERANCE:g}"
    )
    covariance: dict[str, Any] | None = Field(
        None, description='keyed {"a,b": v} or {"ids": [...], "matrix": [[...]]}'
    )
    covariance_ref: str | None = None
    realized_returns: dict[str, list[float]] | list[float] | None = Field(
        None,
        description=f"id -> series, or one series; at most {MAX_SERIES_POINTS} points each",
    )
    realized_returns_ref: str | None = None
    stress: dict[str, dict[str, float]] | None = Field(None, description="scenario -> metric -> number")
    stress_ref: str | None = None
    constraints: dict[str, Any] | None = None
    ttl_sec: int | None = Field(
        None, ge=1, le=RULES.max_ttl_s, description=f"seconds; default {RULES.default_ttl_s}"
    )
    provenance: dict[str, Any] | None = Field(None, description="actor, stage, free extra keys")
    hash: str | None = Field(None, description='"sha256:<hex>" or "blake3:<hex>"; computed when absent')


class Receipt(BaseModel):
    """The answer to a write."""

    world_id: str
    version: str
    hash: str
    created: bool
    created_at: str
    expires_at: str
    stage: str | None
    actor: str


BEARER_SCHEME = "bearerAuth"


def with_bearer_auth(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer token on every ``/risk-hub`` operation, so the docs' "Authorize"
    sends it (the routes check it themselves: no per-request dependency)."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a token of RISKHUB_TOKENS (read and write) or RISKHUB_READ_TOKENS (read only)",
    }
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/risk-hub/"):
            for operation in operations.values():
                operation["security"] = [{BEARER_SCHEME: []}]
    return schema


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error answers of a route, for ``responses=``."""
    return {status: {"model": ErrorBody} for status in statuses}


def header(name: str, description: str) -> dict[str, Any]:
    """A documented request header."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


WRITE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": SnapshotIn.model_json_schema(ref_template="#/components/schemas/{model}")
            }
        },
    },
    "parameters": [
        header("X-Actor", "the producer (or provenance.actor); required by one or the other"),
        header("X-Stage", " | ".join(sorted(RULES.allowed_stages)) + " (or provenance.stage)"),
        header("X-Correlation-Id", "carried into the event"),
    ],
}
