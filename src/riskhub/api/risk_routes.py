"""The results API: a snapshot's risk figures, as the consumer computed them. Same auth as reads."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from riskhub.api.routes import (
    JSON,
    READ_ERRORS,
    Text,
    WorldId,
    authorize,
    check_read_stage,
    documented,
    query,
)
from riskhub.contract.canonical import dumps_compact
from riskhub.hub import MAX_LIST_LIMIT
from riskhub.results import RiskResults

router = APIRouter(prefix="/risk-hub/worlds/{world_id}/risk")


class _RiskQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LatestRiskQuery(_RiskQuery):
    """Query of ``GET .../risk/latest``."""

    stage: Text = None


class VersionRiskQuery(_RiskQuery):
    """Query of ``GET .../risk``."""

    version: Text = None


class RiskHistoryQuery(LatestRiskQuery):
    """Query of ``GET .../risk/history``."""

    limit: int = Field(100, ge=1, le=MAX_LIST_LIMIT)


@router.get("/latest", responses=READ_ERRORS, openapi_extra=documented(LatestRiskQuery))
async def latest_risk(world_id: WorldId, request: Request) -> Response:
    """Risk results of the snapshot ``snapshots/latest`` serves: ``pending`` until computed,
    ``done`` with the figures, ``failed`` with the error once dead-lettered."""
    parts = authorize(request, write=False)
    q = query(request, LatestRiskQuery)
    answer = await RiskResults(parts.hub).latest(world_id, stage=check_read_stage(parts, q.stage))
    return Response(dumps_compact(answer), media_type=JSON)


@router.get("", responses=READ_ERRORS, openapi_extra=documented(VersionRiskQuery))
async def risk_of_version(world_id: WorldId, request: Request) -> Response:
    """Risk results of one version (``?version=`` required)."""
    parts = authorize(request, write=False)
    q = query(request, VersionRiskQuery)
    return Response(
        dumps_compact(await RiskResults(parts.hub).of_version(world_id, q.version)), media_type=JSON
    )


@router.get("/history", responses=READ_ERRORS, openapi_extra=documented(RiskHistoryQuery))
async def risk_history(world_id: WorldId, request: Request) -> Response:
    """A world's risk figures over its snapshots, newest first (a chart's series)."""
    parts = authorize(request, write=False)
    q = query(request, RiskHistoryQuery)
    stage = check_read_stage(parts, q.stage)
    points = await RiskResults(parts.hub).history(world_id, limit=q.limit, stage=stage)
    return Response(dumps_compact({"world_id": world_id, "history": points}), media_type=JSON)
