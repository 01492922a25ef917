"""The status page at ``/``: what on-call watches, per world and stage, on one server-rendered page.

A browser signs in once with a token through a form; the answer sets an HttpOnly, SameSite=Strict
cookie holding the token's session digest (``TokenAuth.session_for``), so no token ever goes into
a URL or the page. The page refreshes itself; its data comes from one store query (the newest
snapshots per world and stage with their outcome and risk row), the outbox backlog, the newest
dead-lettered keys and this process's metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from riskhub.api.routes import components, read_body
from riskhub.bootstrap import Components
from riskhub.errors import Unauthorized
from riskhub.metrics import WINDOW_KINDS, stage_label
from riskhub.model import OUTCOME_DLQ, OUTCOME_PROCESSED, StatusPoint

router = APIRouter(include_in_schema=False)
COOKIE = "riskhub_session"
HISTORY_POINTS = 20  # sigma sparkline length per world and stage
FAILURES_SHOWN = 10
MAX_FORM_BYTES = 4096
RISK_STATUS = {OUTCOME_PROCESSED: "done", OUTCOME_DLQ: "failed"}
_TEMPLATES = Environment(loader=PackageLoader("riskhub.api", "templates"), autoescape=select_autoescape())


def _number(value: object, spec: str = "%.6g") -> str:
    """A figure as the page shows it; ``-`` when it could not be had (None, or no result yet)."""
    return spec % value if isinstance(value, int | float) and not isinstance(value, bool) else "-"


_TEMPLATES.filters["number"] = _number


@dataclass(frozen=True, slots=True)
class WorldRow:
    """One world/stage line of the page."""

    world_id: str
    stage: str
    version: str
    as_of: str
    age: str
    state: str  # OK | WARN | CRIT | EXPIRED
    risk_status: str
    figures: dict[str, Any]
    worst_stress: str | None
    breaches: int
    blocking: bool
    counts: dict[str, int]
    sparkline: str  # SVG polyline points, oldest to newest

    @property
    def css(self) -> str:
        """The row's class: ok, warn or crit (an expired latest is critical)."""
        return {"OK": "ok", "WARN": "warn"}.get(self.state, "crit")

    def cells(self) -> Markup:
        """The row's cells as HTML, escaped here in one pass (a thousand rows of template
        expressions, each escaped on its own, cost more than the page's query)."""
        figures = self.figures
        worst = f"{self.worst_stress} ({_number(figures.get('worst_stress_loss'), '%.4g')})"
        cells = [
            ("world-id", self.world_id),
            ("stage", self.stage),
            ("version", self.version),
            ("as-of", self.as_of),
            ("age", self.age),
            ("state", self.state),
            ("risk-status", self.risk_status),
            ("sigma", _number(figures.get("sigma"))),
            ("sigma-annual", _number(figures.get("sigma_annual"), "%.4g")),
            ("var-99", _number(figures.get("var_99"))),
            ("worst-stress", worst if self.worst_stress else "-"),
            (
                "breaches blocking" if self.blocking else "breaches",
                f"{self.breaches}{' BLOCKING' * self.blocking}",
            ),
            *((f"count {kind}", str(count)) for kind, count in self.counts.items()),
        ]
        html = "".join(f'<td class="{css}">{escape(text)}</td>' for css, text in cells)
        line = f'<svg class="sparkline" width="100" height="20"><polyline points="{self.sparkline}"/></svg>'
        return Markup(f"{html}<td>{line if self.sparkline else ''}</td>")


@router.get("/", response_class=HTMLResponse)
async def status_page(request: Request) -> Response:
    """The page, or the sign-in form without a valid session."""
    parts = components(request)
    try:
        request.app.state.auth.require_session(request.cookies.get(COOKIE))
    except Unauthorized:
        return _sign_in_form(error=None, status=200)
    now = parts.hub.clock()
    points = await parts.store.status_points(HISTORY_POINTS)
    increase = parts.metrics.recent.increase(parts.metrics.queue_totals(), time.time())
    rows = world_rows(points, increase, now, parts)
    page = _TEMPLATES.get_template("status.html").render(
        rows=rows,
        now=_iso(now),
        counts={state: sum(r.state == state for r in rows) for state in ("OK", "WARN", "CRIT", "EXPIRED")},
        backlog=await parts.store.outbox_backlog(),
        lag=_consumer_lag(parts),
        failures=await parts.store.recent_failures(FAILURES_SHOWN),
        refresh_s=parts.settings.status_refresh_sec,
        kinds=WINDOW_KINDS,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the form's token; on success set the session cookie and go to the page."""
    form = parse_qs((await read_body(request, MAX_FORM_BYTES)).decode("utf-8", "replace"))
    session = request.app.state.auth.session_for((form.get("token") or [""])[0])
    if session is None:
        return _sign_in_form(error="unknown token", status=401)
    response = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, session, httponly=True, samesite="strict", secure=secure, path="/")
    return response


@router.post("/sign-out")
async def sign_out() -> Response:
    """Forget the session."""
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def world_rows(
    points: list[StatusPoint], increase: dict[tuple[str, str, str], float], now: datetime, parts: Components
) -> list[WorldRow]:
    """The page's rows from the store's points (grouped by world and stage, newest first)."""
    groups: dict[tuple[str, str | None], list[StatusPoint]] = {}
    for point in points:
        groups.setdefault((point.world_id, point.stage), []).append(point)
    allowed = parts.settings.contract_rules.allowed_stages
    warn_s, crit_s = parts.settings.status_warn_sec, parts.settings.status_crit_sec
    rows = []
    for (world_id, stage), history in groups.items():
        label = stage_label(stage, allowed)
        counts = {kind: int(increase.get((kind, world_id, label), 0)) for kind in WINDOW_KINDS}
        rows.append(_row(history, label, counts, now, warn_s, crit_s))
    return rows


def _row(
    history: list[StatusPoint], label: str, counts: dict[str, int], now: datetime, warn_s: int, crit_s: int
) -> WorldRow:
    latest = history[0]
    age_s = (now - latest.as_of).total_seconds()
    state = _state(age_s, latest.expires_at <= now, warn_s, crit_s)
    result: dict[str, Any] = latest.result or {}
    figures: dict[str, Any] = result.get("figures") or {}
    return WorldRow(
        world_id=latest.world_id,
        stage=label,
        version=latest.version,
        as_of=_iso(latest.as_of),
        age=_duration(age_s),
        state=state,
        risk_status="pending"
        if latest.outcome is None
        else "done"
        if latest.outcome == "processed"
        else "failed",
        figures=figures,
        worst_stress=result.get("worst_stress"),
        breaches=int(result.get("breaches") or 0),
        blocking=bool(result.get("blocking")),
        counts=counts,
        sparkline=_sparkline([p.sigma for p in reversed(history)]),
    )


def _state(age_s: float, expired: bool, warn_s: int, crit_s: int) -> str:
    if expired:
        return "EXPIRED"
    return "CRIT" if age_s > crit_s else "WARN" if age_s > warn_s else "OK"


def _sparkline(values: list[float | None], width: int = 100, height: int = 20) -> str:
    """SVG polyline points of the known values, scaled into the box (empty below two)."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return ""
    low, high = min(v for _, v in known), max(v for _, v in known)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in known)


def _consumer_lag(parts: Components) -> float | None:
    """Records behind, as this process's consumer reports it (None: no consumer group here)."""
    samples = [s for family in parts.metrics.consumer_lag.collect() for s in family.samples]
    return sum(s.value for s in samples) if samples else None


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _sign_in_form(error: str | None, status: int) -> HTMLResponse:
    page = _TEMPLATES.get_template("sign_in.html").render(error=error)
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
