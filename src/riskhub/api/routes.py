"""HTTP routes: parse the request, call the hub, shape the response. Nothing else."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from riskhub.api.observe import correlation_id
from riskhub.api.schemas import WRITE_DOC, Receipt, errors
from riskhub.bootstrap import Components
from riskhub.config import MAX_TEXT_CHARS
from riskhub.contract import WORLD_ID_PATTERN, check_stage
from riskhub.contract.canonical import dumps_compact
from riskhub.errors import PayloadTooLarge, RequestRejected
from riskhub.hub import MAX_LIST_LIMIT, iso_utc
from riskhub.model import InsertResult, StoredSnapshot

log = logging.getLogger(__name__)
router = APIRouter(prefix="/risk-hub/worlds/{world_id}/snapshots")
READ_ERRORS = errors(401, 403, 404, 422, 502, 503)
JSON = "application/json"
Query = TypeVar("Query", bound=BaseModel)


# Documented and checked on every route: a world id no snapshot can have is a 422 naming it.
WorldId = Annotated[str, FastApiPath(pattern=WORLD_ID_PATTERN, description="1-128 of A-Z a-z 0-9 . _ : @ -")]
Text = Annotated[str | None, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class _ReadQuery(BaseModel):
    """What every read's query has: unknown parameters ignored, ``expand``."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    expand: bool = False


class LatestQuery(_ReadQuery):
    """Query of ``GET .../latest``."""

    stage: Text = None
    actor: Text = None


class ListQuery(LatestQuery):
    """Query of ``GET ...`` (history)."""

    limit: int = Field(100, ge=1, le=MAX_LIST_LIMIT)


class LookupQuery(_ReadQuery):
    """Query of ``GET .../lookup``."""

    version: Text = None
    as_of: Text = None


def query(request: Request, model: type[Query]) -> Query:
    """The request's query validated by pydantic in one call. FastAPI resolves declared query
    parameters one by one, ~5 us each per request: on a cached ``latest`` that was more than the
    hub's own work. Errors keep FastAPI's shape (422 naming the parameter)."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]) from None


def documented(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for the query parameters a handler validates with ``query``."""
    properties = model.model_json_schema()["properties"]
    return {"parameters": [{"name": k, "in": "query", "schema": v} for k, v in properties.items()]}


def components(request: Request) -> Components:
    """The running hub's parts (set by the app's lifespan)."""
    parts: Components = request.app.state.components
    return parts


def authorize(request: Request, *, write: bool) -> Components:
    """Check the bearer token and return the hub's parts."""
    parts = components(request)
    request.app.state.auth.require(request.headers.get("authorization"), write=write)
    return parts


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body: larger than {limit} bytes", field="body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body: larger than {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "",
    status_code=201,
    response_model=Receipt,
    responses={
        200: {"model": Receipt, "description": "The same snapshot again (idempotent retry)"},
        **errors(400, 401, 403, 409, 413, 422, 503),
    },
    openapi_extra=WRITE_DOC,
)
async def post_snapshot(world_id: str, request: Request) -> Response:  # the contract checks it, counted
    """Store a snapshot: 201 new, 200 idempotent retry."""
    parts = components(request)
    stage = request.headers.get("x-stage")
    try:
        token = request.app.state.auth.require(request.headers.get("authorization"), write=True)
        raw = await read_body(request, parts.settings.max_body_bytes)
    except RequestRejected as exc:  # the hub counts the rejections it decides itself
        actor = request.headers.get("x-actor")
        parts.hub.reject_write(
            exc, world_id, actor=actor, stage=stage, correlation_id=correlation_id(request)
        )
        raise
    result = await parts.hub.write_snapshot(
        world_id,
        raw,
        actor=request.headers.get("x-actor"),
        stage=stage,
        correlation_id=correlation_id(request),
        token=token,
    )
    location = (
        f"/risk-hub/worlds/{quote(world_id, safe='')}/snapshots/lookup"
        f"?version={quote(result.snapshot.version, safe='')}"
    )
    return Response(
        dumps_compact(_receipt(result)),
        status_code=201 if result.created else 200,
        media_type=JSON,
        headers={"Location": location},
    )


def _receipt(result: InsertResult) -> dict[str, Any]:
    snap = result.snapshot
    return {
        "world_id": snap.world_id,
        "version": snap.version,
        "hash": snap.hash,
        "created": result.created,
        "created_at": iso_utc(snap.created_at),
        "expires_at": iso_utc(snap.expires_at),
        "stage": snap.stage,
        "actor": snap.actor,
    }


@router.get("/latest", responses=READ_ERRORS, openapi_extra=documented(LatestQuery))
async def get_latest(world_id: WorldId, request: Request) -> Response:
    """The newest unexpired snapshot (404 naming it when it has expired)."""
    parts = authorize(request, write=False)
    q = query(request, LatestQuery)
    snapshot = await parts.hub.latest_snapshot(
        world_id, stage=check_read_stage(parts, q.stage), actor=q.actor
    )
    return await _snapshot_response(parts, snapshot, q.expand)


@router.get("", responses=READ_ERRORS, openapi_extra=documented(ListQuery))
async def list_snapshots(world_id: WorldId, request: Request) -> Response:
    """History, newest first; expired snapshots are marked ``"expired": true``, retracted ones
    carry ``"retracted": {"reason", "at"}``."""
    parts = authorize(request, write=False)
    q = query(request, ListQuery)
    stage = check_read_stage(parts, q.stage)
    found = await parts.hub.list_snapshots(world_id, limit=q.limit, stage=stage, actor=q.actor)
    now, marks = parts.hub.clock(), await parts.hub.retraction_marks(world_id, found)
    if q.expand:
        items = [served_expanded(await parts.hub.expand(s), marks.get(s.version)) for s in found]
    else:
        items = [served(s, now, marks.get(s.version)) for s in found]
    body = b'{"world_id":%s,"snapshots":[%s]}' % (dumps_compact(world_id), b",".join(items))
    return Response(body, media_type=JSON)


@router.get("/lookup", responses=READ_ERRORS, openapi_extra=documented(LookupQuery))
async def lookup_snapshot(world_id: WorldId, request: Request) -> Response:
    """One snapshot by ``version``, or the newest at or before ``as_of``: give exactly one of the
    two (neither or both is a 422 naming ``version``)."""
    parts = authorize(request, write=False)
    q = query(request, LookupQuery)
    snapshot = await parts.hub.lookup_snapshot(world_id, version=q.version, as_of=q.as_of)
    mark = (await parts.hub.retraction_marks(world_id, [snapshot])).get(snapshot.version)
    if q.expand:
        return Response(served_expanded(await parts.hub.expand(snapshot), mark), media_type=JSON)
    return Response(served(snapshot, parts.hub.clock(), mark), media_type=JSON)


class Retraction(BaseModel):
    """The body of a retraction."""

    model_config = ConfigDict(extra="forbid")
    version: str
    reason: str


@router.post("/retractions", status_code=201, responses=errors(400, 401, 403, 404, 409, 422, 503))
async def retract_snapshot(world_id: WorldId, retraction: Retraction, request: Request) -> Response:
    """Retract a stored version (write token): it stays stored and listed, marked ``retracted``,
    is never served as latest again, and a ``risk_snapshot_retracted`` event goes out."""
    parts = authorize(request, write=True)
    snapshot = await parts.hub.retract(world_id, retraction.version, retraction.reason)
    answer = {"world_id": world_id, "version": snapshot.version, "hash": snapshot.hash, "retracted": True}
    return Response(dumps_compact(answer), status_code=201, media_type=JSON)


def served(snapshot: StoredSnapshot, now: datetime, retracted: bytes | None = None) -> bytes:
    """The stored payload with the server fields ``expired`` (and ``retracted``, if it is) added,
    as served to readers (patched into the JSON bytes: the payload is never parsed on a read)."""
    flag = b',"expired":true' if snapshot.is_expired(now) else b',"expired":false'
    mark = b',"retracted":%s' % retracted if retracted is not None else b""
    return snapshot.payload[:-1] + flag + mark + b"}"


def served_expanded(document: dict[str, Any], retracted: bytes | None) -> bytes:
    """An expanded snapshot as served, marked when retracted."""
    if retracted is not None:
        document["retracted"] = orjson.loads(retracted)
    return dumps_compact(document)


async def _snapshot_response(parts: Components, snapshot: StoredSnapshot, expand: bool) -> Response:
    if expand:
        return Response(dumps_compact(await parts.hub.expand(snapshot)), media_type=JSON)
    return Response(served(snapshot, parts.hub.clock()), media_type=JSON)


def check_read_stage(parts: Components, stage: str | None) -> str | None:
    """A read's ``stage`` filter, normalized; 422 outside the allowlist."""
    return check_stage(stage, parts.settings.contract_rules.allowed_stages, "stage")
