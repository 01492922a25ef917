"""``riskhub`` command line: thin wrappers over the same code the server runs."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer

from riskhub.config import Settings
from riskhub.contract import normalize_snapshot, parse_json
from riskhub.errors import RiskHubError

# No locals in tracebacks: they could hold tokens.
app = typer.Typer(
    help="riskhub: the Risk Signal Hub.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [RISKHUB_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [RISKHUB_PORT]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Embedded data dir [RISKHUB_DATA_DIR]")] = None,
    log_level: Annotated[str, typer.Option(help="Log level")] = "info",
) -> None:
    """Run the hub (HTTP API + outbox relay + in-process consumer) on settings from env."""
    import uvicorn

    from riskhub.api.app import create_app

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v is not None
    }
    settings = Settings(**overrides)
    generated = None
    if not settings.tokens:
        generated = secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"tokens": [generated]})
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _print_banner(settings, generated)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()


def _print_banner(settings: Settings, generated: str | None) -> None:
    url = f"http://{settings.host}:{settings.port}"
    embedded = settings.database_url is None
    where = f"embedded, data in {settings.data_dir.absolute()}" if embedded else "production backends"
    typer.echo(f"riskhub serving on {url} ({where})")
    if generated is not None:
        typer.echo(f"generated read-write token (shown once; set RISKHUB_TOKENS to choose): {generated}")
    token = generated or "$HUB_TOKEN"
    typer.echo(f"try: curl -H 'Authorization: Bearer {token}' {url}/risk-hub/worlds/w1/snapshots/latest")


@app.command()
def lint(
    files: Annotated[list[Path], typer.Argument(help="Snapshot JSON files")],
    world: Annotated[str | None, typer.Option(help="World id (default: the file's world_id)")] = None,
    actor: Annotated[str | None, typer.Option(help="Actor, as X-Actor would give it")] = None,
    stage: Annotated[str | None, typer.Option(help="Stage, as X-Stage would give it")] = None,
) -> None:
    """Validate snapshot files offline with the shared contract (exit 1 on any problem)."""
    rules = Settings().contract_rules
    problems = 0
    for path in files:
        try:
            doc = parse_json(path.read_bytes())
            world_id = world or (doc.get("world_id") if isinstance(doc, dict) else None)
            if not isinstance(world_id, str):
                raise _LintProblem("world_id: not in the file; pass --world")
            snap = normalize_snapshot(doc, world_id=world_id, actor=actor, stage=stage, rules=rules)
        except OSError as exc:
            problems += 1
            typer.echo(f"{path}: cannot read: {exc.strerror}")
        except (RiskHubError, _LintProblem) as exc:
            problems += 1
            typer.echo(f"{path}: {exc}")
        else:
            typer.echo(f"{path}: ok {snap.world_id}/{snap.version} {snap.hash}")
    raise typer.Exit(1 if problems else 0)


class _LintProblem(Exception):
    pass


def main() -> None:
    """Console entry point."""
    app(prog_name="riskhub")


if __name__ == "__main__":
    main()
