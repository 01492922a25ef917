"""Baseline endpoints for `make bench` (only with ``bench_endpoints``): the same framework path
as the hub's routes with none of the hub's work, so ratios measure the hub alone."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from riskhub.contract import parse_json

router = APIRouter(prefix="/bench")
_CONSTANT: dict[int, bytes] = {}


@router.post("/parse", status_code=201)
async def parse_only(request: Request) -> Response:
    """Parse the JSON body exactly as the hub does, then answer 201."""
    parse_json(await request.body())
    return Response(b'{"created":true}', status_code=201, media_type="application/json")


@router.post("/parse-dict", status_code=201)
async def parse_dict(body: Annotated[dict[str, Any], Body()]) -> Response:
    """The idiomatic FastAPI way: a ``dict`` body parameter (json.loads plus validation)."""
    return Response(b'{"created":true}', status_code=201, media_type="application/json")


@router.get("/constant")
async def constant(size: int = 1024) -> Response:
    """A constant JSON-ish body of ``size`` bytes."""
    size = max(2, min(size, 16 * 1024 * 1024))
    if size not in _CONSTANT:
        _CONSTANT.clear()
        _CONSTANT[size] = b'"' + b"x" * (size - 2) + b'"'
    return Response(_CONSTANT[size], media_type="application/json")
