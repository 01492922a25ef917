"""Log output of every riskhub process: one format for all loggers (uvicorn's included), text for
people or JSON lines for machines (``RISKHUB_LOG_FORMAT``).

Fields of a line go in ``extra`` (``log.info("snapshot stored", extra={"world_id": ...})``): the
JSON format writes them as keys, the text format appends them as ``key=value``. A value that comes
from a request is cut to ``MAX_LOGGED_CHARS`` first (``clip``): a client must not be able to write
megabytes into the log. Tokens are never passed to a logger.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
MAX_LOGGED_CHARS = 200
# The pid tells apart the lines of processes that share one log (`riskhub serve --workers N`).
_TEXT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
_ISO_TIME = "%Y-%m-%dT%H:%M:%S%z"
# The attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def clip(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """A request-supplied value as logged: at most ``limit`` characters, marked when cut."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more]"


class TextFormatter(logging.Formatter):
    """The classic line, with the record's extra fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(_TEXT, datefmt=_ISO_TIME)

    def format(self, record: logging.LogRecord) -> str:
        """The line, then its fields."""
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        return f"{line} {fields}" if fields else line


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Route every logger (uvicorn's too) to one handler on stderr in ``log_format``."""
    handler = logging.StreamHandler()
    formatter: logging.Formatter = (
        JsonFormatter(_TEXT, rename_fields=_JSON_NAMES, datefmt=_ISO_TIME)
        if log_format == "json"
        else TextFormatter()
    )
    handler.setFormatter(formatter)
    handler.addFilter(_without_colors)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


_JSON_NAMES: dict[str, Any] = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


def _without_colors(record: logging.LogRecord) -> bool:
    """uvicorn adds a terminal-colored copy of its message; neither format wants it."""
    record.__dict__.pop("color_message", None)
    return True
