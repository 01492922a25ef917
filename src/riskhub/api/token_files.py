"""Tokens files re-read while ``serve`` runs: rotation without a restart.

The files are polled off the event loop (a stat per file per ``interval_s``); when one changed, the
whole set is read and swapped into ``TokenAuth`` at once. An unreadable file, or one left without a
read-write token (an editor's half-written file), keeps the set read before, and the log says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from riskhub.api.auth import TokenAuth
from riskhub.tokens import TokenFileError, TokenSource

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def reloading_tokens(auth: TokenAuth, source: TokenSource, interval_s: float) -> AsyncIterator[None]:
    """While the block runs, re-read the tokens files when they change."""
    if not source.files:
        yield
        return
    task = asyncio.create_task(_reload_on_change(auth, source, interval_s), name="tokens-reload")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _reload_on_change(auth: TokenAuth, source: TokenSource, interval_s: float) -> None:
    seen = await asyncio.to_thread(source.signature)
    while True:
        await asyncio.sleep(interval_s)
        current = await asyncio.to_thread(source.signature)
        if current != seen:
            seen = current  # a failed reload is reported once; the next change is tried again
            await reload_tokens(auth, source)


async def reload_tokens(auth: TokenAuth, source: TokenSource) -> bool:
    """Read the files and swap the set; False (the previous set stays valid) when they cannot be
    read or hold no read-write token."""
    try:
        tokens = await asyncio.to_thread(source.load)
        auth.replace(tokens.write, tokens.read)
    except (TokenFileError, ValueError) as exc:
        log.warning("tokens not reloaded, the previous ones stay valid: %s", exc)
        return False
    log.info("tokens reloaded from %s: %s", ", ".join(map(str, source.files)), tokens.describe())
    return True
