"""Content-addressed blob store for large snapshot parts (covariance, realized returns, stress).

A blob's key is the sha256 of its content (the part's canonical JSON), so offloading the same part
twice yields the same ref, two worlds can never overwrite each other, and a read verifies the
bytes against the address. Refs: ``file://<root>/<hex>.json``, ``s3://<bucket>/<prefix>/<hex>.json``,
``redis://<prefix><hex>``. A ref from a producer is accepted only if it points into this store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, cast

import aioboto3
import redis.asyncio as aioredis
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import RedisError

from riskhub.config import BLOB_REDIS_PREFIX
from riskhub.contract import OFFLOADABLE_PARTS
from riskhub.contract.canonical import canonical_json, loads_exact
from riskhub.errors import BlobCorrupted, BlobMissing, BlobStoreUnavailable, ContractError, translated

_HEX = r"[0-9a-f]{64}"
TEMP_FILE_MAX_AGE_S = 3600.0  # a temp file this old belongs to no write still running


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

    async def put(self, content: bytes, *, pin: bool = False) -> str:
        """Store content (idempotent) and return its ref. ``pin``: an accepted snapshot refers to
        it, it never expires; an unpinned put never takes that away from an already pinned blob."""

    async def get(self, ref: str) -> bytes:
        """Fetch and verify; ``BlobCorrupted`` on a digest mismatch, ``BlobMissing`` if absent
        (``ContractError`` for a ref outside this store)."""

    async def pin(self, ref: str) -> bool:
        """Make a referenced blob permanent; False if it does not exist."""

    async def delete(self, ref: str) -> None:
        """Remove a blob no snapshot refers to (the doctor's probe object); absent is fine. The
        hub never deletes the blobs of snapshots."""

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

    async def sweep_temp_files(self, older_than_s: float = TEMP_FILE_MAX_AGE_S) -> int:
        """Delete the temp files of writes that died half-way (kill -9 between the write and the
        rename), once older than any write still running; returns how many."""
        return await asyncio.to_thread(self._sweep, time.time() - older_than_s)

    def _sweep(self, before: float) -> int:
        removed = 0
        for path in self._root.glob(".tmp-*") if self._root.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):  # another process swept it first
                if path.stat().st_mtime < before:
                    path.unlink()
                    removed += 1
        return removed

    async def put(self, content: bytes, *, pin: bool = False) -> str:
        """Write atomically and durably (temp file, fsync, rename). Files never expire."""
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
            raise BlobMissing(f"blob {ref} does not exist") from None
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

    async def delete(self, ref: str) -> None:
        """Unlink the file."""
        address = require_address(self, ref, "ref")
        try:
            await asyncio.to_thread((self._root / f"{address}.json").unlink, missing_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(f"blob store: cannot delete {ref}: {exc}") from exc

    def _writable(self) -> bool:
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self._root, os.W_OK)

    async def close(self) -> None:
        """Nothing to release."""


# Existence check and TTL removal in one step: a blob cannot expire between the two.
# An unpinned put: (re)arm the expiry, unless the blob is already pinned (exists, no expiry).
_SET_UNLESS_PINNED = """
if redis.call('TTL', KEYS[1]) == -1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
_PERSIST_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PERSIST', KEYS[1])
  return 1
end
return 0
"""


def _redis_errors() -> AbstractContextManager[None]:
    """The Redis adapter's one boundary: redis-py's errors become ``BlobStoreUnavailable``."""
    return translated((RedisError,), BlobStoreUnavailable, "blob store")


class RedisBlobStore:
    """Blobs as Redis strings ``<prefix><hex>`` (default prefix ``risk-blobs:``)."""

    def __init__(self, url: str, *, prefix: str = BLOB_REDIS_PREFIX, ttl_s: int | None = None) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
        self._url_base = url.split("://", 1)[1].split("/", 1)[0]
        self._prefix = prefix
        self._ttl_s = ttl_s  # for blobs nobody references yet; pinning clears it
        self._ref = re.compile(re.escape(f"redis://{prefix}") + f"({_HEX})")
        self._persist = self._redis.register_script(_PERSIST_IF_EXISTS)
        self._set_unless_pinned = self._redis.register_script(_SET_UNLESS_PINNED)

    def address_of(self, ref: str) -> str | None:
        """Content address of a ``redis://<prefix><hex>`` ref."""
        match = self._ref.fullmatch(ref)
        return match.group(1) if match else None

    async def put(self, content: bytes, *, pin: bool = False) -> str:
        """SET, idempotent by content. Without ``pin`` and with a TTL configured the blob expires
        unless referenced later (``pin``), and a pinned blob stays pinned; a plain SET pins."""
        key = self._prefix + content_address(content)
        with _redis_errors():
            if pin or self._ttl_s is None:
                await self._redis.set(key, content)
            else:
                await self._set_unless_pinned(keys=[key], args=[content, self._ttl_s])
        return f"redis://{key}"

    async def get(self, ref: str) -> bytes:
        """GET and verify."""
        address = require_address(self, ref, "ref")
        with _redis_errors():
            content = await self._redis.get(self._prefix + address)
        if content is None:
            raise BlobMissing(f"blob {ref} does not exist")
        return verify_content(ref, address, bytes(content))

    async def pin(self, ref: str) -> bool:
        """PERSIST: a referenced blob must outlive the snapshot rows that point to it."""
        address = require_address(self, ref, "ref")
        with _redis_errors():
            exists = await self._persist(keys=[self._prefix + address])
        return bool(exists)

    async def delete(self, ref: str) -> None:
        """DEL."""
        address = require_address(self, ref, "ref")
        with _redis_errors():
            await self._redis.delete(self._prefix + address)

    async def ping(self) -> None:
        """PING."""
        with _redis_errors():
            await cast("Awaitable[bool]", self._redis.ping())

    async def close(self) -> None:
        """Close the pool."""
        await self._redis.aclose()


_S3_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


@contextmanager
def _s3_errors(*, missing: str | None = None) -> Iterator[None]:
    """The S3 adapter's one boundary: an absent object is ``BlobMissing`` (naming the ref
    ``missing``, when a missing object is an answer), any other botocore error is
    ``BlobStoreUnavailable``."""
    with translated((BotoCoreError, ClientError), BlobStoreUnavailable, "blob store"):
        try:
            yield
        except ClientError as exc:
            if missing is not None and exc.response.get("Error", {}).get("Code") in _S3_MISSING:
                raise BlobMissing(f"blob {missing} does not exist") from None
            raise


class S3BlobStore:
    """Blobs as objects ``s3://<bucket>/<prefix>/<hex>.json`` (any S3-compatible endpoint)."""

    def __init__(
        self, bucket: str, prefix: str, *, endpoint_url: str | None = None, region: str = "us-east-1"
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._endpoint_url = endpoint_url
        self._region = region
        base = f"s3://{bucket}/" + (f"{self._prefix}/" if self._prefix else "")
        self._base = base
        self._ref = re.compile(re.escape(base) + f"({_HEX})\\.json")
        self._session = aioboto3.Session()
        self._client: Any = None
        self._client_context: Any = None

    def address_of(self, ref: str) -> str | None:
        """Content address of a ref into this bucket and prefix."""
        match = self._ref.fullmatch(ref)
        return match.group(1) if match else None

    def _object_key(self, address: str) -> str:
        return (f"{self._prefix}/" if self._prefix else "") + f"{address}.json"

    async def _s3(self) -> Any:
        if self._client is None:
            config = AioConfig(
                connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
            )
            self._client_context = self._session.client(
                "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config
            )
            self._client = await self._client_context.__aenter__()
        return self._client

    async def put(self, content: bytes, *, pin: bool = False) -> str:
        """PUT the object (same key for the same content; objects carry no expiry here)."""
        address = content_address(content)
        with _s3_errors():
            s3 = await self._s3()
            await s3.put_object(
                Bucket=self._bucket,
                Key=self._object_key(address),
                Body=content,
                ContentType="application/json",
            )
        return f"{self._base}{address}.json"

    async def get(self, ref: str) -> bytes:
        """GET and verify."""
        address = require_address(self, ref, "ref")
        with _s3_errors(missing=ref):
            s3 = await self._s3()
            response = await s3.get_object(Bucket=self._bucket, Key=self._object_key(address))
            async with response["Body"] as stream:
                content = await stream.read()
        return verify_content(ref, address, bytes(content))

    async def pin(self, ref: str) -> bool:
        """S3 objects here carry no expiry: pinning checks existence (HEAD)."""
        address = require_address(self, ref, "ref")
        try:
            with _s3_errors(missing=ref):
                s3 = await self._s3()
                await s3.head_object(Bucket=self._bucket, Key=self._object_key(address))
        except BlobMissing:
            return False
        return True

    async def delete(self, ref: str) -> None:
        """DELETE the object (needs ``s3:DeleteObject``, which the hub's own role need not have)."""
        address = require_address(self, ref, "ref")
        with _s3_errors():
            s3 = await self._s3()
            await s3.delete_object(Bucket=self._bucket, Key=self._object_key(address))

    async def ping(self) -> None:
        """HEAD the bucket."""
        with _s3_errors():
            s3 = await self._s3()
            await s3.head_bucket(Bucket=self._bucket)

    async def close(self) -> None:
        """Close the client."""
        if self._client_context is not None:
            await self._client_context.__aexit__(None, None, None)
            self._client = self._client_context = None


async def read_part(store: BlobStore, ref: str) -> Any:
    """The part a ref holds, digest-verified; ``BlobCorrupted`` if it is no JSON (refs are checked
    on write, so only a ref accepted by an older version can hold such a blob)."""
    content = await store.get(ref)
    try:
        return loads_exact(content)
    except (ValueError, RecursionError):
        raise BlobCorrupted(f"blob {ref}: content is not JSON") from None


async def offload_large_parts(
    body: dict[str, Any], store: BlobStore, threshold_bytes: int, *, pin: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """Replace each inline part whose canonical JSON is over ``threshold_bytes`` by a
    content-addressed ``<part>_ref``; returns the new body and part -> ref. Used by the hub
    (``pin``: the snapshot it stores will refer to them) and by producers alike, so both write
    the same blobs under the same refs."""
    encoded = {part: canonical_json(body[part]) for part in OFFLOADABLE_PARTS if part in body}
    oversized = {part: content for part, content in encoded.items() if len(content) > threshold_bytes}
    if not oversized:
        return body, {}
    refs = await asyncio.gather(*(store.put(content, pin=pin) for content in oversized.values()))
    offloaded = dict(zip(oversized, refs, strict=True))
    lighter = {key: value for key, value in body.items() if key not in offloaded}
    lighter.update({f"{part}_ref": ref for part, ref in offloaded.items()})
    return lighter, offloaded
