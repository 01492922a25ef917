"""``riskhub`` command line: thin wrappers over the same code the server runs.

hub.py       serve, worker, relay, migrate      (the processes)
data.py      backfill, dlq list|replay          (operations on stored data and topics)
producer.py  publish, monitor, lint             (producer and operator tools)
risk.py      risk show                          (a world's risk figures)
deploy.py    doctor, topics create              (the runbook's deployment checklist)
"""

from __future__ import annotations

import typer

from riskhub.cli import data, deploy, hub, producer, risk

__all__ = ["app", "main"]

# No locals in tracebacks: they could hold tokens.
app = typer.Typer(
    help="riskhub: the Risk Signal Hub.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
hub.register(app)
data.register(app)
producer.register(app)
risk.register(app)
deploy.register(app)


def main() -> None:
    """Console entry point."""
    app(prog_name="riskhub")
