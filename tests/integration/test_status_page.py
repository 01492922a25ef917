"""The status page at `/`, on embedded defaults and on PostgreSQL + Redis + S3: sign-in with a
cookie (never a token in a URL), OK / WARN / CRIT per world and stage, figures, counts, DLQ."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import flaky_workers

from conftest import READ_TOKEN, TOKEN, HubClient, sample_snapshot


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def fresh(version: str, age_s: float, **changes: Any) -> dict[str, Any]:
    """The runbook sample dated ``age_s`` ago, with a TTL that outlives the test (unless changed)."""
    as_of = iso(datetime.now(UTC) - timedelta(seconds=age_s))
    return sample_snapshot(**{"version": version, "as_of": as_of, "ttl_sec": 3600, **changes})


async def signed_in(hub: HubClient, token: str = READ_TOKEN) -> str:
    """Sign in through the form; the page's HTML."""
    answer = await hub.client.post("/sign-in", data={"token": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    page = await hub.client.get("/")
    assert page.status_code == 200
    return page.text


def row_of(page: str, world: str) -> str:
    match = re.search(rf'<tr class="world (\w+)" data-world="{world}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row for {world}"
    return f"{match.group(1)}|{match.group(2)}"


async def test_the_page_asks_for_a_token_and_sets_a_strict_httponly_cookie(hub: HubClient) -> None:
    form = await hub.client.get("/")
    assert form.status_code == 200 and 'name="token"' in form.text and 'type="password"' in form.text
    wrong = await hub.client.post("/sign-in", data={"token": "nope"})
    assert wrong.status_code == 401 and "unknown token" in wrong.text
    assert "riskhub_session" not in wrong.headers.get("set-cookie", "")
    answer = await hub.client.post("/sign-in", data={"token": READ_TOKEN})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert READ_TOKEN not in cookie and TOKEN not in cookie  # the browser holds a digest, not the token
    assert READ_TOKEN not in answer.headers["location"]
    page = await hub.client.get("/")
    assert 'id="worlds"' in page.text and READ_TOKEN not in page.text
    out = await hub.client.post("/sign-out")
    assert out.status_code == 303
    assert 'name="token"' in (await hub.client.get("/")).text  # signed out


async def test_each_world_and_stage_gets_its_freshness_class_and_figures(
    make_hub: Callable[..., Any],
) -> None:
    async with make_hub() as hub:
        assert (await hub.post("ok", fresh("v1", 60))).status_code == 201
        assert (await hub.post("late", fresh("v1", 700))).status_code == 201  # over 600 s: WARN
        assert (await hub.post("stale", fresh("v1", 2000))).status_code == 201  # over 1800 s: CRIT
        assert (await hub.post("gone", fresh("v1", 60, ttl_sec=1))).status_code == 201
        live = fresh("v2", 30, provenance={"actor": "gateway", "stage": "live"})
        assert (await hub.post("ok", live, stage="live")).status_code == 201
        await hub.drain()
        hub.parts.hub.clock = lambda: datetime.now(UTC) + timedelta(seconds=2)  # "gone" expired
        page = await signed_in(hub)
    assert row_of(page, "late").startswith("warn|") and ">WARN<" in row_of(page, "late")
    assert row_of(page, "stale").startswith("crit|") and ">CRIT<" in row_of(page, "stale")
    assert row_of(page, "gone").startswith("crit|") and ">EXPIRED<" in row_of(page, "gone")
    paper = re.search(r'<tr class="world (\w+)" data-world="ok" data-stage="paper">(.*?)</tr>', page, re.S)
    live = re.search(r'<tr class="world (\w+)" data-world="ok" data-stage="live">(.*?)</tr>', page, re.S)
    assert paper and live and paper.group(1) == live.group(1) == "ok"
    # sigma of the sample: 0.6 * stdev(a) + 0.4 * stdev(b) (correlation 1 fallback), as computed by hand
    assert '<td class="sigma">0.00691442</td>' in paper.group(2)
    assert '<td class="worst-stress">crash (0.25)</td>' in paper.group(2)
    assert '<td class="risk-status">done</td>' in live.group(2)


async def test_counts_sparkline_backlog_and_dead_letters(make_hub: Callable[..., Any]) -> None:
    flaky_workers.FAILING_VERSIONS.add("doomed")
    try:
        workers = ["riskhub.risk.workers:DEFAULT_WORKERS", "flaky_workers:FLAKY"]
        async with make_hub(workers=workers) as hub:
            bodies = [fresh(f"v{n}", 300 - n) for n in range(3)]
            for body in bodies:
                assert (await hub.post("w1", body)).status_code == 201
            assert (await hub.post("w1", bodies[-1])).status_code == 200  # a duplicate
            assert (await hub.post("w2", fresh("doomed", 60))).status_code == 201
            pending = await signed_in(hub)
            assert '<b id="backlog">4</b>' in pending and ">pending<" in row_of(pending, "w1")
            await hub.drain()
            page = (await hub.client.get("/")).text
    finally:
        flaky_workers.FAILING_VERSIONS.discard("doomed")
    w1 = row_of(page, "w1")
    assert '<td class="count dedupe">1</td>' in w1 and "<polyline points=" in w1
    assert len(re.search(r'points="([^"]*)"', w1).group(1).split()) == 3  # type: ignore[union-attr]
    w2 = row_of(page, "w2")
    assert '<td class="count dlq">1</td>' in w2 and '<td class="count retry">2</td>' in w2
    assert ">failed<" in w2
    assert "w2|doomed|" in page and "RuntimeError: permanent failure" in page
    assert '<b id="backlog">0</b>' in page


@pytest.mark.parametrize("path", ["/static/status.css"])
async def test_the_page_assets_are_served_by_the_hub(hub: HubClient, path: str) -> None:
    answer = await hub.client.get(path)
    assert answer.status_code == 200 and "tr.crit" in answer.text
