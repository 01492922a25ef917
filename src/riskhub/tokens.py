"""Bearer tokens from the settings and from token files, and their fingerprints.

A tokens file holds one token per line; blank lines and ``#`` comments are ignored. ``serve``
re-reads the files when they change (``api/auth.py``), so a token is rotated without a restart:
add the new one, move the producers over, remove the old one. Tokens never appear in logs or
outputs: ``fingerprint`` names one (the first 8 hex of its sha256).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from riskhub.config import Settings

FINGERPRINT_HEX = 8

# What identifies a file's version without reading it: inode, size, mtime (None if absent).
FileSignature = tuple[int, int, int] | None


class TokenFileError(ValueError):
    """A tokens file cannot be read (a configuration error: the message names the file)."""


def fingerprint(token: str | bytes) -> str:
    """A short, stable name for a token that reveals nothing usable of it."""
    raw = token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:FINGERPRINT_HEX]


def parse_token_lines(text: str) -> list[str]:
    """The tokens of a file's text: one per line, blank lines and ``#`` comments skipped."""
    tokens = []
    for line in text.splitlines():
        token = line.split("#", 1)[0].strip()
        if token:
            tokens.append(token)
    return tokens


@dataclass(frozen=True, slots=True)
class Tokens:
    """The valid tokens at one moment: ``write`` may read and write, ``read`` only read."""

    write: tuple[str, ...]
    read: tuple[str, ...]

    def pair(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(write, read)``, as ``TokenAuth`` takes them."""
        return self.write, self.read

    def describe(self) -> str:
        """Counts and fingerprints, for logs and outputs (never the tokens)."""
        return f"write {_fingerprints(self.write)}, read {_fingerprints(self.read)}"


def _fingerprints(tokens: Iterable[str]) -> str:
    names = [fingerprint(t) for t in tokens]
    return f"{len(names)} ({', '.join(names)})" if names else "0"


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where a hub's tokens come from: the settings' lists plus the tokens files."""

    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    write_file: Path | None = None
    read_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenSource:
        """The sources ``RISKHUB_TOKENS``, ``READ_TOKENS``, ``TOKENS_FILE``, ``READ_TOKENS_FILE`` name."""
        return cls(
            write=tuple(t.get_secret_value() for t in settings.tokens),
            read=tuple(t.get_secret_value() for t in settings.read_tokens),
            write_file=settings.tokens_file,
            read_file=settings.read_tokens_file,
        )

    @property
    def configured(self) -> bool:
        """Whether any token is configured (else ``serve`` generates one)."""
        return bool(self.write) or self.write_file is not None

    @property
    def files(self) -> tuple[Path, ...]:
        """The tokens files, if any."""
        return tuple(path for path in (self.write_file, self.read_file) if path is not None)

    def load(self) -> Tokens:
        """Read the files now (blocking: call it off the event loop while serving)."""
        return Tokens(
            write=_unique(self.write + _read_file(self.write_file)),
            read=_unique(self.read + _read_file(self.read_file)),
        )

    def signature(self) -> tuple[FileSignature, ...]:
        """The files' versions; a change means ``load`` would read something else."""
        return tuple(_signature(path) for path in self.files)


def _read_file(path: Path | None) -> tuple[str, ...]:
    if path is None:
        return ()
    try:
        return tuple(parse_token_lines(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"tokens file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _signature(path: Path) -> FileSignature:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _unique(tokens: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tokens))
