"""One SQLite file shared by several processes (``riskhub serve --workers N``): opening it, and
one outbox relay pass at a time.

WAL mode lets the processes read while one writes; ``busy_timeout`` makes a writer wait for the
write lock instead of failing. Two things it does not cover are handled here: the switch of a new
file to WAL, and relays of different processes claiming the same outbox rows.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 5000
_RETRY_S = 0.01
_MAX_POLL_S = 0.02


def enable_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried: while another process switches a new file to WAL,
    SQLite answers "database is locked" at once (the busy timeout does not apply to this one),
    so try again for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(_RETRY_S)


class OutboxClaimLock:
    """One relay pass at a time over a SQLite file, across every process that opens it.

    A pass reads the pending rows, publishes them and marks them, and only then lets the next
    pass read: so no row is published twice, and a world's rows go out in outbox order however
    many processes run a relay. An exclusive ``flock`` on a file next to the database does it
    across processes (the kernel drops it when its holder dies: a crash never leaves the outbox
    locked); an asyncio lock does it within the process, since ``flock`` does not exclude two
    holders of the same open file.
    """

    def __init__(self, database: Path) -> None:
        self._path = database.with_name(database.name + "-relay.lock")
        self._fd: int | None = None
        self._in_process = asyncio.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the lock for the block (waiting for another process's pass to end)."""
        async with self._in_process:
            if self._fd is None:
                self._fd = await asyncio.to_thread(self._open)
            await _lock(self._fd)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        return os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def close(self) -> None:
        """Close the lock file (a later ``held`` opens it again)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        self._in_process = asyncio.Lock()  # the next open may run on another event loop


async def _lock(fd: int) -> None:
    # Non-blocking tries: a thread blocked in flock could not be cancelled with its task.
    poll_s = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(poll_s)
            poll_s = min(poll_s * 2, _MAX_POLL_S)
