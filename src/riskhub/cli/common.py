"""Shared pieces of the ``riskhub`` command line: settings, failure reporting, logging."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, get_args, get_origin

import typer
from typer._click import Context, HelpFormatter, Parameter
from typer.core import TyperArgument, TyperCommand, TyperOption

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
    typer.Option("--token", envvar="HUB_TOKEN", help="Bearer token", show_default=False),
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


def new_app(help_text: str) -> typer.Typer:
    """A command group with plain help: click's reflowed text, no panels, no markup."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_show_locals=False,  # no locals in tracebacks: they could hold tokens
    )


# What a value is called in help, by its Python type: never the type's own name.
_METAVARS: dict[object, str] = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH"}


class PlainHelpCommand(TyperCommand):
    """A command whose help names a value the way click always did (``--port INTEGER``), not
    as a Python type (``--port <int>``, ``--world <list[str]>``); flags show no value."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is None and not (isinstance(param, TyperOption) and param.is_flag):
                param.metavar = _plain_metavar(param)

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The Arguments and Options sections; an argument is its metavar (``FILE...``) too."""
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                dots = "..." if param.nargs != 1 else ""
                arguments.append((f"{param.metavar}{dots}", record[1]))
            else:
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def _plain_metavar(param: Parameter) -> str:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if get_origin(annotation) is list:  # a repeatable option or a variadic argument: one value
        [annotation] = get_args(annotation)
    return _METAVARS.get(annotation, "VALUE")


def add_command(
    app: typer.Typer,
    command: Callable[..., None],
    *,
    name: str | None = None,
    cls: type[PlainHelpCommand] = PlainHelpCommand,
) -> None:
    """Register ``command`` on ``app`` behind the error boundary, with plain help."""
    app.command(name, cls=cls)(reporting_failures(command))


def configure_logging(level: str, log_format: LogFormat | None = None) -> None:
    """One log format for every command: ``log_format``, else the setting (env RISKHUB_LOG_FORMAT)."""
    logs.configure_logging(level, log_format or Settings().log_format)


def tune_gc_for_service() -> None:
    """Collector settings for a long-running process; call once start-up has built its objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVICE_GC_THRESHOLDS)
