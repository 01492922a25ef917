"""The read-write token ``serve`` generates when ``RISKHUB_TOKENS`` is unset.

It is kept in the data dir (mode 0600) and reused at the next start, so the producers and
monitors configured with it keep working across restarts. Printed once, when generated.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

_TOKEN = re.compile(r"[!-~]+")  # what a Bearer header can carry: printable ASCII, no spaces


@dataclass(frozen=True, slots=True)
class KeptToken:
    """A token and the file that keeps it; ``generated``: created by this start."""

    value: str = field(repr=False)
    path: Path
    generated: bool

    def readable_by_others(self) -> bool:
        """Whether the file's mode lets anyone but its owner read it."""
        return bool(self.path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def kept_token(path: Path) -> KeptToken:
    """The token kept in ``path``, or a new one written there (``OSError`` if it cannot be;
    ``ValueError`` if the file holds no usable token)."""
    if path.exists():
        return KeptToken(_read(path), path, generated=False)
    token = secrets.token_urlsafe(24)
    try:
        _create(path, token)
    except FileExistsError:  # another `serve` on this data dir was first: share its token
        return KeptToken(_read(path), path, generated=False)
    return KeptToken(token, path, generated=True)


def _create(path: Path, token: str) -> None:
    """Write the whole file, then link it into place: a reader never sees a half-written token,
    and an existing token is never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def _read(path: Path) -> str:
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if not _TOKEN.fullmatch(token):
        raise ValueError(
            f"{path}: holds no usable token (printable ASCII, no spaces); delete it for a new one"
        )
    return token
