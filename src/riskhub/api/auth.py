"""Bearer-token auth: ``tokens`` read and write, ``read_tokens`` only read. Several tokens may be
valid at once (rotation). Every configured token is compared, in constant time, on every request.
The valid set can be replaced while serving (``api/token_files.py`` re-reads the tokens files)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from riskhub.errors import Forbidden, Unauthorized
from riskhub.tokens import fingerprint


class TokenAuth:
    """Checks an ``Authorization`` header value."""

    def __init__(self, write_tokens: Iterable[str], read_tokens: Iterable[str] = ()) -> None:
        self.replace(write_tokens, read_tokens)

    def replace(self, write_tokens: Iterable[str], read_tokens: Iterable[str] = ()) -> None:
        """Make these the valid tokens. Both lists are assigned in one statement and nothing here
        awaits, so a request is checked against the old set or the new one, never a mix."""
        writers = [t.encode("utf-8", "surrogateescape") for t in write_tokens]
        if not writers:
            raise ValueError("tokens: at least one read-write token is required")
        self._writers, self._readers = writers, [t.encode("utf-8", "surrogateescape") for t in read_tokens]

    def require(self, authorization: str | None, *, write: bool) -> str:
        """The fingerprint of the token that grants access (for the logs); ``Unauthorized`` (401)
        or ``Forbidden`` (403) unless the header grants it."""
        token = _bearer(authorization)
        if token is None:
            raise Unauthorized("Authorization: a Bearer token is required", field="Authorization")
        writer = _matches_any(token, self._writers)
        reader = _matches_any(token, self._readers)
        if not (writer or reader):
            raise Unauthorized("Authorization: unknown token", field="Authorization")
        if write and not writer:
            raise Forbidden("Authorization: this token may only read", field="Authorization")
        return fingerprint(token)

    def session_for(self, token: str) -> str | None:
        """The status page's session cookie for a valid token (read or write): its sha256, so
        the browser never holds the token itself; None for an unknown token."""
        raw = token.strip().encode("utf-8", "surrogateescape")
        if not raw or not _matches_any(raw, self._writers + self._readers):
            return None
        return _session_of(raw)

    def require_session(self, cookie: str | None) -> None:
        """Raise ``Unauthorized`` unless the cookie is the session of a configured token."""
        sessions = [_session_of(t).encode() for t in self._writers + self._readers]
        if not cookie or not _matches_any(cookie.encode("utf-8", "surrogateescape"), sessions):
            raise Unauthorized("session: sign in with a token", field="session")


def _session_of(token: bytes) -> str:
    return hashlib.sha256(b"riskhub-session:" + token).hexdigest()


def _bearer(header: str | None) -> bytes | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("utf-8", "surrogateescape")


def _matches_any(token: bytes, candidates: list[bytes]) -> bool:
    # No short-circuit: the time taken does not reveal which token (if any) matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(token, candidate)
    return matched
