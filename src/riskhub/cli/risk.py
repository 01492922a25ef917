"""``riskhub risk show``: a world's risk figures from the results API, as a table or JSON."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from riskhub.cli.common import TokenOption, add_command, fail, new_app
from riskhub.config import HOST, PORT

DEFAULT_BASE_URL = f"http://{HOST}:{PORT}"  # `riskhub serve` with its defaults
# The figures a risk manager reads first, in this order; every other figure follows.
_FIRST = ("sigma", "sigma_annual", "var_95", "var_99", "es_975", "max_drawdown", "worst_stress_loss")


def show(
    world: Annotated[str, typer.Option("--world", help="World id")],
    stage: Annotated[str | None, typer.Option("--stage", help="Latest of this stage")] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="This version instead of the latest")
    ] = None,
    base_url: Annotated[str, typer.Option("--base-url", envvar="WS_URL", help="Hub URL")] = (
        DEFAULT_BASE_URL
    ),
    token: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer as JSON")] = False,
) -> None:
    """The risk results of a world's latest snapshot (or of --version): status, method,
    figures, contributions, stress scenarios, findings and limit breaches."""
    if not token:
        fail("no token: pass --token or set HUB_TOKEN")
    answer = asyncio.run(_fetch(base_url, token, world, stage, version))
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    console = Console()
    console.print(_headline(answer))
    for table in _tables(answer):
        console.print(table)


async def _fetch(
    base_url: str, token: str, world: str, stage: str | None, version: str | None
) -> dict[str, Any]:
    from riskhub.client import AsyncRiskHubClient, RetryPolicy

    async with AsyncRiskHubClient(base_url, token, retry=RetryPolicy(max_attempts=2, budget_s=10)) as client:
        return await client.risk(world, stage=stage, version=version)


def _headline(answer: dict[str, Any]) -> Text:
    line = (
        f"world {answer['world_id']}  version {answer['version']}  stage {answer.get('stage') or '-'}"
        f"  as_of {answer['as_of']}  status {answer['status']}  method {answer.get('method') or '-'}"
    )
    if answer.get("error"):
        line += f"  error: {answer['error']}"
    return Text(line)  # Text, not markup: ids and errors are data


def _tables(answer: dict[str, Any]) -> list[Table]:
    tables = []
    figures = answer.get("figures") or {}
    if figures:
        ordered = [*_FIRST, *(name for name in figures if name not in _FIRST)]
        tables.append(_table("figure", ["value"], [[name, _number(figures.get(name))] for name in ordered]))
    if answer.get("contributions"):
        columns = ["weight", "marginal", "component", "percent"]
        rows = [[row["id"], *(_number(row.get(c)) for c in columns)] for row in answer["contributions"]]
        tables.append(_table("id", columns, rows))
    if answer.get("stress"):
        rows = [
            [row["scenario"], _number(row.get("loss")), _number(row.get("pnl"))] for row in answer["stress"]
        ]
        tables.append(_table("scenario", ["loss", "pnl"], rows))
    if answer.get("breaches"):
        columns = ["value", "max", "severity", "source", "id"]
        rows = [[b["metric"], *(_cell(b.get(c)) for c in columns)] for b in answer["breaches"]]
        tables.append(_table("breach", columns, rows))
    if answer.get("findings"):
        rows = [[f["code"], f["severity"], f["message"]] for f in answer["findings"]]
        tables.append(_table("finding", ["severity", "message"], rows))
    return tables


def _table(first: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(first, *columns)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _cell(value: Any) -> str:
    return _number(value) if isinstance(value, float | int) else "-" if value is None else str(value)


def register(app: typer.Typer) -> None:
    """Add ``risk show`` to the app."""
    risk_app = new_app("A world's risk figures (the results API).")
    add_command(risk_app, show)
    app.add_typer(risk_app, name="risk")
