"""uvicorn's server as ``riskhub serve`` runs it: one Ctrl-C or SIGTERM stops it gracefully and
the process exits 0, however the signal reaches it."""

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


def run_until_stopped(server: uvicorn.Server) -> None:
    """Serve until Ctrl-C or SIGTERM, then return: a stop that was asked for exits 0.

    Once shut down, uvicorn raises the signal again into the handlers it found at its start,
    so that the process dies of it: `uv run` then exits 130 (143) and `make run` adds
    "make: *** [run] Error 130". The handlers it finds here let the repeat pass; afterwards the
    signals are ignored, so a relayed copy arriving while the interpreter exits (Python then
    restores default handlers, but not ignored ones) cannot kill the process either."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_already_handled)
    server.run()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _stop_already_handled(signum: int, frame: FrameType | None) -> None:
    """uvicorn's re-raise after a graceful shutdown: nothing is left to do."""
