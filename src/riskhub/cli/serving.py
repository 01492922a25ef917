"""uvicorn's server as ``riskhub serve`` runs it in one process: one Ctrl-C stops it gracefully,
however many copies of the signal reach it."""

from __future__ import annotations

import signal
import time
from types import FrameType

import uvicorn

# `uv run` without a controlling terminal (make run under a test, a supervisor's killpg) relays
# the SIGINT its child already got from the process group about 200 ms later. uvicorn takes a
# second SIGINT as "force exit", which skips the app's shutdown (relay, consumer, store close).
# A copy this soon after the first is not a second request; a later one still forces the exit.
RELAYED_COPY_WINDOW_S = 1.0


class GracefulServer(uvicorn.Server):
    """A uvicorn server that a relayed copy of the same Ctrl-C does not force down."""

    _stop_asked_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Record the stop request; a SIGINT within the window of the first is its copy."""
        now = time.monotonic()
        if self._stop_asked_at is None:
            self._stop_asked_at = now
        elif sig == signal.SIGINT and now - self._stop_asked_at < RELAYED_COPY_WINDOW_S:
            return
        super().handle_exit(sig, frame)
