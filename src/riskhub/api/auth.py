"""Bearer-token auth: ``tokens`` read and write, ``read_tokens`` only read. Several tokens may be
valid at once (rotation). Every configured token is compared, in constant time, on every request.

The tokens files are re-read when they change (``reloading_tokens``): the new set replaces the
old one in one assignment, so a request sees either set whole, and a token present in both is
never refused in between."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from riskhub.errors import Forbidden, Unauthorized
from riskhub.tokens import TokenFileError, Tokens, TokenSource, fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Grants:
    """Tokens as bytes with their fingerprints, ready for comparison."""

    writers: tuple[tuple[bytes, str], ...]
    readers: tuple[tuple[bytes, str], ...]


def _grants(tokens: Tokens) -> _Grants:
    if not tokens.write:
        raise ValueError("tokens: at least one read-write token is required")
    return _Grants(_named(tokens.write), _named(tokens.read))


def _named(tokens: tuple[str, ...]) -> tuple[tuple[bytes, str], ...]:
    return tuple((token.encode("utf-8", "surrogateescape"), fingerprint(token)) for token in tokens)


class TokenAuth:
    """Checks an ``Authorization`` header value."""

    def __init__(self, tokens: Tokens) -> None:
        self._grants = _grants(tokens)

    def replace(self, tokens: Tokens) -> None:
        """Make ``tokens`` the valid set (one assignment: no request sees a mix of two sets)."""
        self._grants = _grants(tokens)

    def require(self, authorization: str | None, *, write: bool) -> str:
        """The fingerprint of the token that grants access; ``Unauthorized`` (401) or
        ``Forbidden`` (403) unless the header grants it."""
        token = _bearer(authorization)
        if token is None:
            raise Unauthorized("Authorization: a Bearer token is required", field="Authorization")
        grants = self._grants  # the same set for the whole check
        writer = _match(token, grants.writers)
        reader = _match(token, grants.readers)
        if writer is None and reader is None:
            raise Unauthorized("Authorization: unknown token", field="Authorization")
        if write and writer is None:
            raise Forbidden("Authorization: this token may only read", field="Authorization")
        return writer or reader or ""


def _bearer(header: str | None) -> bytes | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("utf-8", "surrogateescape")


def _match(token: bytes, candidates: tuple[tuple[bytes, str], ...]) -> str | None:
    # No short-circuit: the time taken does not reveal which token (if any) matched.
    matched = None
    for candidate, name in candidates:
        if hmac.compare_digest(token, candidate):
            matched = name
    return matched


@contextlib.asynccontextmanager
async def reloading_tokens(auth: TokenAuth, source: TokenSource, interval_s: float) -> AsyncIterator[None]:
    """While the block runs, re-read the tokens files every ``interval_s`` when they changed."""
    if not source.files:
        yield
        return
    task = asyncio.create_task(_reload_forever(auth, source, interval_s), name="tokens-reload")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _reload_forever(auth: TokenAuth, source: TokenSource, interval_s: float) -> None:
    seen = await asyncio.to_thread(source.signature)
    while True:
        await asyncio.sleep(interval_s)
        current = await asyncio.to_thread(source.signature)
        if current != seen:
            seen = current  # a failed reload is reported once; the next change is tried again
            await reload_tokens(auth, source)


async def reload_tokens(auth: TokenAuth, source: TokenSource) -> bool:
    """Read the files and swap the set; on an unreadable file or no read-write token left, keep
    the current set (a half-written file must not lock every producer out) and say why."""
    try:
        tokens = await asyncio.to_thread(source.load)
        auth.replace(tokens)
    except (TokenFileError, ValueError) as exc:
        log.warning("tokens not reloaded, the previous ones stay valid: %s", exc)
        return False
    log.info("tokens reloaded from %s: %s", ", ".join(map(str, source.files)), tokens.describe())
    return True
