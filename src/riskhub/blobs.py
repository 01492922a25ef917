"""Content-addressed blob store for large snapshot parts (covariance, realized returns, stress).

A blob's key is the sha256 of its content (the part's canonical JSON), so offloading the same part
twice yields the same ref, two worlds can never overwrite each other, and a read verifies the
bytes against the address. Refs: ``file://<root>/<hex>.json``, ``s3://<bucket>/<prefix>/<hex>.json``,
``redis://<prefix><hex>``. A ref from a producer is accepted only if it points into this store.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from riskhub.errors import BlobCorrupted, BlobStoreUnavailable, ContractError

_HEX = r"[0-9a-f]{64}"


def content_address(content: bytes) -> str:
    """The sha256 hex digest that names a blob."""
    return hashlib.sha256(content).hexdigest()


def verify_content(ref: str, address: str, content: bytes) -> bytes:
    """Return ``content`` if it still hashes to its address, else raise ``BlobCorrupted``."""
    if content_address(content) != address:
        raise BlobCorrupted(f"blob {ref}: content does not match its sha256 address")
    return content


class BlobStore(Protocol):
    """Where offloaded parts live."""

    def address_of(self, ref: str) -> str | None:
        """The content address if ``ref`` points into this store, else None."""

    async def put(self, content: bytes) -> str:
        """Store content (idempotent) and return its ref."""

    async def get(self, ref: str) -> bytes:
        """Fetch and verify; ``BlobCorrupted`` on a digest mismatch, ``ContractError`` if absent."""

    async def pin(self, ref: str) -> bool:
        """Make a referenced blob permanent; False if it does not exist."""

    async def ping(self) -> None:
        """Raise ``BlobStoreUnavailable`` unless the store answers."""

    async def close(self) -> None:
        """Release connections."""


def require_address(store: BlobStore, ref: str, field: str) -> str:
    """The ref's content address, or a 422 naming the field if it points elsewhere."""
    address = store.address_of(ref)
    if address is None:
        raise ContractError(f"{field}: {ref!r} does not point into the configured blob store", field=field)
    return address


class FileBlobStore:
    """Blobs as files ``<root>/<hex>.json``; refs are absolute ``file://`` URLs."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._ref = re.compile(re.escape(f"file://{self._root}/") + f"({_HEX})\\.json")

    def address_of(self, ref: str) -> str | None:
        """Content address of a ``file://<root>/<hex>.json`` ref."""
        match = self._ref.fullmatch(ref)
        return match.group(1) if match else None

    async def put(self, content: bytes) -> str:
        """Write atomically and durably (temp file, fsync, rename)."""
        address = content_address(content)
        await asyncio.to_thread(self._write, address, content)
        return f"file://{self._root}/{address}.json"

    def _write(self, address: str, content: bytes) -> None:
        target = self._root / f"{address}.json"
        if target.exists():
            return
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._root, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise BlobStoreUnavailable(f"blob store: cannot write {target.name}: {exc}") from exc

    async def get(self, ref: str) -> bytes:
        """Read and verify."""
        address = require_address(self, ref, "ref")
        try:
            content = await asyncio.to_thread((self._root / f"{address}.json").read_bytes)
        except FileNotFoundError:
            raise ContractError(f"blob {ref} does not exist", field="ref") from None
        except OSError as exc:
            raise BlobStoreUnavailable(f"blob store: cannot read {ref}: {exc}") from exc
        return verify_content(ref, address, content)

    async def pin(self, ref: str) -> bool:
        """Files never expire; pinning only checks existence."""
        address = require_address(self, ref, "ref")
        return await asyncio.to_thread((self._root / f"{address}.json").is_file)

    async def ping(self) -> None:
        """The root must be a writable directory (created if missing)."""
        ok = await asyncio.to_thread(self._writable)
        if not ok:
            raise BlobStoreUnavailable(f"blob store: {self._root} is not writable")

    def _writable(self) -> bool:
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self._root, os.W_OK)

    async def close(self) -> None:
        """Nothing to release."""
