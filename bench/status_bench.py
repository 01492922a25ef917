"""Server-side render time of the status page with 1,000 worlds.

    uv run python bench/status_bench.py          (also part of `make bench`, config status)

An embedded hub (SQLite, in-process relay and consumer) gets SNAPSHOTS_PER_WORLD snapshots for
each of 1,000 worlds over three stages through its real write path, the consumer computes their
risk, then the signed-in page is requested in process (httpx ASGI transport, no network) and the
median of the renders is printed: the one store query, the outbox backlog, the dead letters, the
metrics window and the template.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from report import Line, at_most

from riskhub.api.app import create_app
from riskhub.bootstrap import build_components
from riskhub.config import Settings

WORLDS = 1000
SNAPSHOTS_PER_WORLD = 4
STAGES = ("backtest", "paper", "live")
RENDERS = 15
GOAL_MS = 200.0
TOKEN = "bench-status-token-0123456789abcdef0123"


def snapshot(world: int, n: int) -> bytes:
    """A 5-id snapshot with returns, dated minutes apart so that ages differ."""
    ids = [f"s{i}" for i in range(5)]
    as_of = datetime.now(UTC) - timedelta(minutes=(world % 40) * 1.5 + (SNAPSHOTS_PER_WORLD - n))
    returns = {k: [((world + n + i + t) % 7 - 3) / 1000 for t in range(30)] for i, k in enumerate(ids)}
    body = {
        "as_of": as_of.isoformat().replace("+00:00", "Z"),
        "version": f"v{n}",
        "weights": dict.fromkeys(ids, 0.2),
        "realized_returns": returns,
        "stress": {"crash": {"pnl": -0.05 - world % 5 / 100}},
        "ttl_sec": 86400,
    }
    return orjson.dumps(body)


async def render_times(workdir: Path) -> list[float]:
    """Seconds per page render, after loading the hub."""
    settings = Settings(data_dir=workdir, tokens=[TOKEN], run_relay=False)
    parts = build_components(settings)
    app = create_app(settings, components=parts)
    async with app.router.lifespan_context(app):
        for n in range(SNAPSHOTS_PER_WORLD):
            for world in range(WORLDS):
                stage = STAGES[world % len(STAGES)]
                await parts.hub.write_snapshot(
                    f"w{world:04d}", snapshot(world, n), actor="bench", stage=stage
                )
            await parts.relay.run(until_idle=True)  # the in-process consumer computes the risk
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            await client.post("/sign-in", data={"token": TOKEN})
            times = []
            for _ in range(RENDERS):
                started = time.perf_counter()
                page = await client.get("/")
                times.append(time.perf_counter() - started)
                if page.status_code != 200 or page.text.count('<tr class="world') != WORLDS:
                    raise RuntimeError(f"unexpected page: {page.status_code}")
    return times


def status_lines() -> list[Line]:
    """The table line of ``make bench`` (config status)."""
    print(f"\nconfig status: the status page with {WORLDS} worlds, rendered in process", flush=True)
    with tempfile.TemporaryDirectory(prefix="riskhub-status-") as workdir:
        times = asyncio.run(render_times(Path(workdir)))
    median_ms = statistics.median(times) * 1000
    details = (
        f"median of {len(times)} renders; min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )
    print(f"  page with {WORLDS} worlds: {median_ms:.0f} ms ({details})", flush=True)
    return [at_most("status", f"page render, {WORLDS} worlds", median_ms, GOAL_MS, "ms", details)]


if __name__ == "__main__":
    for line in status_lines():
        print(line)
