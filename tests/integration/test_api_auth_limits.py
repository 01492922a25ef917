"""Auth on writes and reads, token rotation, body size limit, the one-transaction guarantee,
health/readiness, and error bodies without stack traces."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import READ_TOKEN, TOKEN, HubClient, pg_execute, sample_snapshot

LATEST = "/risk-hub/worlds/w1/snapshots/latest"


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("wrong-token", 401), (READ_TOKEN, 403), (TOKEN, 201)],
    ids=["missing", "wrong", "read-only", "read-write"],
)
async def test_write_requires_a_read_write_token(hub: HubClient, token: str | None, status: int) -> None:
    response = await hub.post("w1", sample_snapshot(), token=token)
    assert response.status_code == status
    if status != 201:
        assert response.json()["error"]["field"] == "Authorization"
        assert (await hub.get(LATEST)).status_code == 404


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("wrong-token", 401), (READ_TOKEN, 200), (TOKEN, 200)],
    ids=["missing", "wrong", "read-only", "read-write"],
)
async def test_reads_require_a_token(hub: HubClient, token: str | None, status: int) -> None:
    assert (await hub.post("w1", sample_snapshot(ttl_sec=600))).status_code == 201
    for path in (LATEST, "/risk-hub/worlds/w1/snapshots", "/risk-hub/worlds/w1/snapshots/lookup"):
        params = {"version": "v1"} if path.endswith("lookup") else {}
        response = await hub.get(path, token=token, **params)
        assert response.status_code == status, path
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_malformed_authorization_header_is_401(hub: HubClient) -> None:
    for header in ("Basic abc", "Bearer", "Bearer ", TOKEN):
        response = await hub.client.get(LATEST, headers={"authorization": header})
        assert response.status_code == 401, header


async def test_rotated_tokens_are_valid_at_the_same_time(make_hub: Callable[..., Any]) -> None:
    async with make_hub(tokens=["old-token", "new-token"]) as hub:
        assert (await hub.post("w1", sample_snapshot(version="a"), token="old-token")).status_code == 201
        assert (await hub.post("w1", sample_snapshot(version="b"), token="new-token")).status_code == 201
        assert (await hub.get(LATEST, token="old-token")).status_code == 200
        assert (await hub.post("w1", sample_snapshot(version="c"), token=TOKEN)).status_code == 401


async def test_rejected_writes_are_logged_by_reason_without_the_token(
    hub: HubClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "not-a-token-but-secret-anyway"
    with caplog.at_level(logging.WARNING, logger="riskhub.hub"):
        assert (await hub.post("w1", sample_snapshot(), token=secret)).status_code == 401
        assert (await hub.post("w1", sample_snapshot(version=""))).status_code == 422
    rejections = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejections) == 2, rejections
    assert "unauthorized" in rejections[0] and "'gateway'" in rejections[0]
    assert "version: must be a non-empty string" in rejections[1]
    assert all(secret not in record.getMessage() for record in caplog.records)


async def test_health_and_metrics_need_no_token(hub: HubClient) -> None:
    assert (await hub.client.get("/healthz")).status_code == 200
    ready = await hub.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    metrics = await hub.client.get("/metrics")
    assert metrics.status_code == 200 and "risk_hub_outbox_backlog" in metrics.text


async def test_body_over_the_limit_is_413_and_nothing_is_stored(make_hub: Callable[..., Any]) -> None:
    async with make_hub(max_body_bytes=2048) as hub:
        padded = sample_snapshot(constraints={"note": "x" * 4096})
        response = await hub.post("w1", padded)
        assert response.status_code == 413
        assert response.json()["error"]["field"] == "body"
        assert (await hub.get(LATEST)).status_code == 404


async def test_chunked_body_over_the_limit_is_413(make_hub: Callable[..., Any]) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1024

    async with make_hub(max_body_bytes=4096) as hub:
        response = await hub.client.post(
            "/risk-hub/worlds/w1/snapshots",
            content=chunks(),
            headers={"authorization": f"Bearer {TOKEN}", "x-actor": "gateway"},
        )
        assert response.status_code == 413


async def test_a_failure_between_the_two_inserts_leaves_neither(hub: HubClient, tmp_path: Path) -> None:
    # A real database failure on the outbox insert, inside the snapshot's transaction.
    await install_failing_outbox_trigger(hub, tmp_path)
    response = await hub.post("w1", sample_snapshot())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "Traceback" not in response.text and "disk on fire" not in response.text
    assert (await hub.get(LATEST)).status_code == 404
    assert await count_rows(hub, tmp_path) == (0, 0)


async def install_failing_outbox_trigger(hub: HubClient, tmp_path: Path) -> None:
    """Make every outbox insert fail with a database error."""
    if hub.backend == "embedded":
        with sqlite3.connect(tmp_path / "data" / "riskhub.sqlite3") as conn:
            conn.execute(
                "CREATE TRIGGER fail_outbox BEFORE INSERT ON risk_outbox"
                " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
        return
    await pg_execute(
        hub,
        "CREATE FUNCTION fail_outbox() RETURNS trigger AS"
        " $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER fail_outbox BEFORE INSERT ON risk_outbox FOR EACH ROW EXECUTE FUNCTION fail_outbox()",
    )


async def count_rows(hub: HubClient, tmp_path: Path) -> tuple[int, int]:
    """(snapshots, outbox rows)."""
    sql = ("SELECT count(*) FROM risk_snapshots", "SELECT count(*) FROM risk_outbox")
    if hub.backend == "embedded":
        with sqlite3.connect(tmp_path / "data" / "riskhub.sqlite3") as conn:
            return conn.execute(sql[0]).fetchone()[0], conn.execute(sql[1]).fetchone()[0]
    counts = await pg_execute(hub, *sql)
    return counts[0], counts[1]


async def test_unknown_route_and_method_get_json_errors(hub: HubClient) -> None:
    missing = await hub.client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await hub.client.delete("/risk-hub/worlds/w1/snapshots")
    assert wrong.status_code == 405 and "error" in wrong.json()
    # RFC 9110: a 405 names allowed methods (Starlette lists those of the first route on the path)
    assert "POST" in wrong.headers["allow"]


async def test_the_openapi_document_describes_what_the_routes_really_take_and_answer(hub: HubClient) -> None:
    """The handlers read the raw body and headers themselves; the document must still say so
    (a generated client or a fuzzer reads it), and its errors have the hub's one shape."""
    spec = (await hub.client.get("/openapi.json")).json()
    post = spec["paths"]["/risk-hub/worlds/{world_id}/snapshots"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert {"as_of", "version", "weights"} <= set(body["required"])
    assert {"X-Actor", "X-Stage", "X-Correlation-Id"} <= {p["name"] for p in post["parameters"]}
    assert {"200", "201", "400", "401", "403", "409", "413", "422", "503"} == set(post["responses"])
    for path in spec["paths"].values():
        for operation in path.values():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"
                    }
    assert "HTTPValidationError" not in spec["components"]["schemas"]


async def test_metrics_need_the_metrics_token_when_one_is_set(make_hub: Callable[..., Any]) -> None:
    async with make_hub(metrics_token="metrics-secret-0123456789abcdef0123456789") as hub:
        assert (await hub.client.get("/metrics")).status_code == 401
        wrong = await hub.client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert wrong.status_code == 401
        ok = await hub.client.get(
            "/metrics", headers={"authorization": "Bearer metrics-secret-0123456789abcdef0123456789"}
        )
        assert ok.status_code == 200 and "risk_hub_outbox_backlog" in ok.text
        assert (await hub.client.get("/healthz")).status_code == 200
