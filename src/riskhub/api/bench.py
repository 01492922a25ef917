"""Baseline endpoints for `make bench` (only with ``bench_endpoints``): the same framework path
as the hub's routes with none of the hub's work, so ratios measure the hub alone."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import Response

from riskhub.bootstrap import Components
from riskhub.contract import parse_json

router = APIRouter(prefix="/bench")
_CONSTANT: dict[int, bytes] = {}
CREATED = b'{"created":true}'
BODIES_TABLE = "bench_bodies"  # the asyncpg baseline's table: bodies as bytes, nothing else


@router.post("/parse", status_code=201)
async def parse_only(request: Request) -> Response:
    """Parse the JSON body exactly as the hub does, then answer 201."""
    parse_json(await request.body())
    return Response(CREATED, status_code=201, media_type="application/json")


@router.post("/parse-dict", status_code=201)
async def parse_dict(body: Annotated[dict[str, Any], Body()]) -> Response:
    """The idiomatic FastAPI way: a ``dict`` body parameter (json.loads plus validation)."""
    return Response(CREATED, status_code=201, media_type="application/json")


@router.get("/constant")
async def constant(size: int = 1024) -> Response:
    """A constant JSON-ish body of ``size`` bytes."""
    size = max(2, min(size, 16 * 1024 * 1024))
    if size not in _CONSTANT:
        _CONSTANT.clear()
        _CONSTANT[size] = b'"' + b"x" * (size - 2) + b'"'
    return Response(_CONSTANT[size], media_type="application/json")


@router.post("/pg-insert", status_code=201)
async def pg_insert(request: Request) -> Response:
    """The production store's ceiling: the body's bytes inserted in one asyncpg transaction, on
    a pool of the hub's size (no parsing, no outbox row). 404 without PostgreSQL."""
    pool = await _pool(request.app)
    if pool is None:
        return Response(
            b'{"error":"no PostgreSQL configured"}', status_code=404, media_type="application/json"
        )
    body = await request.body()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"INSERT INTO {BODIES_TABLE} (body) VALUES ($1)", body)
    return Response(CREATED, status_code=201, media_type="application/json")


async def _pool(app: FastAPI) -> asyncpg.Pool | None:
    """The baseline's own pool (made on first use; the table too)."""
    pool: asyncpg.Pool | None = getattr(app.state, "bench_pool", None)
    if pool is not None:
        return pool
    parts: Components = app.state.components
    url, settings = parts.settings.database_url, parts.settings
    if url is None or not url.startswith(("postgresql://", "postgres://")):
        return None
    server_settings = {"search_path": settings.database_schema} if settings.database_schema else {}
    pool = await asyncpg.create_pool(
        url, min_size=1, max_size=settings.database_pool_size, server_settings=server_settings
    )
    await pool.execute(
        f"CREATE TABLE IF NOT EXISTS {BODIES_TABLE} (id bigserial PRIMARY KEY, body bytea NOT NULL)"
    )
    if getattr(app.state, "bench_pool", None) is not None:  # another request made one meanwhile
        await pool.close()
        existing: asyncpg.Pool = app.state.bench_pool
        return existing
    app.state.bench_pool = pool
    return pool


async def close(app: FastAPI) -> None:
    """Close the baseline's pool, if one was made."""
    pool: asyncpg.Pool | None = getattr(app.state, "bench_pool", None)
    if pool is not None:
        await pool.close()
