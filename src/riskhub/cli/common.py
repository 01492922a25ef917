"""Shared pieces of the ``riskhub`` command line: settings, failure reporting, logging."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, ParamSpec

import typer
from typer.core import TyperCommand

from riskhub import logs
from riskhub.config import Settings
from riskhub.errors import RiskHubError
from riskhub.logs import LogFormat

# A long-running hub process allocates many short-lived containers per request (a parsed 14 KB
# snapshot, its normalized copy, the stored document). With CPython's default gen-0 threshold (700)
# the collector runs every request or two and walks every snapshot in flight: 12% of `serve`'s CPU
# under load (perf). Requests make almost no reference cycles, so collect rarely, and freeze what
# start-up built so full collections skip it.
SERVICE_GC_THRESHOLDS = (50_000, 20, 10)

TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="HUB_TOKEN", help="Bearer token [env HUB_TOKEN]", show_default=False),
]
DsnOption = Annotated[
    str | None, typer.Option("--dsn", help="Database URL [RISKHUB_DATABASE_URL]", show_default=False)
]


def settings_with(**overrides: Any) -> Settings:
    """Settings from the environment, with the options the user gave on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def database_kind(settings: Settings) -> str:
    """``sqlite`` or the database URL's scheme, for messages."""
    return "sqlite" if settings.database_url is None else settings.database_url.split(":", 1)[0]


def fail(message: str) -> NoReturn:
    """One line on stderr and exit 2: no stack traces to users."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


P = ParamSpec("P")


def reporting_failures(command: Callable[P, None]) -> Callable[P, None]:
    """The command line's one error boundary: a configuration error (``ValueError``, e.g. an
    unsupported URL scheme), an unreachable service (``Unavailable``, ``OSError``) or any other
    error riskhub raises on purpose is one line on stderr and exit 2, never a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except RiskHubError as exc:
            fail(exc.message)
        except (ValueError, OSError) as exc:
            fail(str(exc))

    return run


def add_command(
    app: typer.Typer,
    command: Callable[..., None],
    *,
    name: str | None = None,
    cls: type[TyperCommand] | None = None,
) -> None:
    """Register ``command`` on ``app`` behind the error boundary."""
    app.command(name, cls=cls)(reporting_failures(command))


def configure_logging(level: str, log_format: LogFormat | None = None) -> None:
    """One log format for every command: ``log_format``, else the setting (env RISKHUB_LOG_FORMAT)."""
    logs.configure_logging(level, log_format or Settings().log_format)


def tune_gc_for_service() -> None:
    """Collector settings for a long-running process; call once start-up has built its objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVICE_GC_THRESHOLDS)
