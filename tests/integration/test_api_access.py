"""Access control in-process: the allowlist's answer, token files swapped while serving, and
the accepted write's log line naming its token by fingerprint (embedded hub)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from riskhub.api.app import create_app
from riskhub.api.auth import TokenAuth
from riskhub.api.token_files import reload_tokens
from riskhub.tokens import TokenSource, fingerprint

from conftest import httpx_json, hub_settings, sample_snapshot

OLD = "old-token-0123456789abcdef0123456789"
NEW = "new-token-0123456789abcdef0123456789"


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, client: tuple[str, int], **settings: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An embedded hub (real lifespan) and a client that connects from ``client``."""
    app = create_app(hub_settings(tmp_path, **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
            yield app, http


def write_headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "x-actor": "gateway", "x-stage": "paper"}


async def test_a_refused_address_gets_403_in_the_hubs_error_shape_and_is_counted(tmp_path: Path) -> None:
    async with serving(tmp_path, ("192.0.2.10", 5000), allowed_networks="10.0.0.0/8") as (app, http):
        refused = await http.post(
            "/risk-hub/worlds/w1/snapshots", content=httpx_json(sample_snapshot()), headers=write_headers(OLD)
        )
        assert refused.status_code == 403
        assert refused.json() == {
            "error": {
                "code": "network_forbidden",
                "message": "client address is not in the hub's allowed networks",
                "field": None,
            }
        }
        assert (await http.get("/metrics")).status_code == 403
        assert (await http.get("/healthz")).status_code == 200
        registry = app.state.components.metrics.registry
        labels = {"route": "unmatched", "method": "POST", "status": "403"}
        assert registry.get_sample_value("risk_hub_http_responses_total", labels) == 1


async def test_an_emptied_or_vanished_tokens_file_keeps_the_tokens_read_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{OLD}\n")
    source = TokenSource(write_file=path)
    auth = TokenAuth(*source.load().pair())
    path.write_text("# every token removed, or an editor's half-written file\n")
    with caplog.at_level(logging.WARNING):
        assert not await reload_tokens(auth, source)
        path.unlink()
        assert not await reload_tokens(auth, source)
    assert auth.require(f"Bearer {OLD}", write=True) == fingerprint(OLD)
    assert "previous ones stay valid" in caplog.text and OLD not in caplog.text


async def test_each_accepted_write_is_logged_with_its_tokens_fingerprint_never_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# gateway\n{OLD}\n{NEW}\n")
    with caplog.at_level(logging.INFO, logger="riskhub"):
        async with serving(tmp_path, ("127.0.0.1", 5000), tokens=[], tokens_file=tokens) as (_, http):
            for token in (OLD, NEW):
                response = await http.post(
                    "/risk-hub/worlds/w1/snapshots",
                    content=httpx_json(sample_snapshot()),
                    headers=write_headers(token),
                )
                assert response.status_code in (200, 201)
    accepted = [
        (r.getMessage(), r.world_id, r.version, r.actor, r.stage, r.token)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() in ("snapshot stored", "snapshot deduplicated")
    ]
    assert accepted == [
        ("snapshot stored", "w1", "v1", "gateway", "paper", fingerprint(OLD)),
        ("snapshot deduplicated", "w1", "v1", "gateway", "paper", fingerprint(NEW)),
    ]
    assert all(OLD not in r.getMessage() and NEW not in r.getMessage() for r in caplog.records)
