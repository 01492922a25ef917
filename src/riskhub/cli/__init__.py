"""``riskhub`` command line: thin wrappers over the same code the server runs.

hub.py       serve, worker, relay, migrate      (the processes)
data.py      backfill, dlq list|replay          (operations on stored data and topics)
publish.py   publish                            (the producer tool)
producer.py  monitor, lint                      (operator tools)
risk.py      risk show                          (a world's risk figures)
snapshots.py snapshots retract                  (take a bad version out of latest)
deploy.py    doctor, topics create              (the runbook's deployment checklist)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from riskhub.cli import data, deploy, hub, producer, publish, risk, snapshots
from riskhub.cli.common import new_app

__all__ = ["app", "main", "run_command"]

app = new_app("riskhub: the Risk Signal Hub.")
hub.register(app)
data.register(app)
publish.register(app)
producer.register(app)
risk.register(app)
snapshots.register(app)
deploy.register(app)


def _print_version(asked: bool) -> None:
    if asked:
        try:
            number = version("riskhub")
        except PackageNotFoundError:  # a checkout run from its sources, never installed
            number = "unknown (not installed)"
        typer.echo(f"riskhub {number}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """riskhub: the Risk Signal Hub."""


def main() -> None:
    """Console entry point."""
    app(prog_name="riskhub")


def run_command(name: str, args: list[str], *, prog_name: str) -> None:
    """Run one command as a program of its own (a runbook script): its usage line reads
    ``<prog_name> [OPTIONS]``, not ``<prog_name> <name> [OPTIONS]``."""
    typer.main.get_group(app).commands[name].main(args, prog_name=prog_name)
