"""Network allowlist: requests from addresses outside ``allowed_networks`` get 403 on every route
but ``/healthz`` (load balancers probe it from wherever they are).

The client is the TCP peer, unless the peer is a trusted proxy (``trusted_proxies``): then
``X-Forwarded-For`` is read from the right, skipping trusted proxies, and the first other
address is the client. An untrusted peer's ``X-Forwarded-For`` is ignored: anyone can send one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

from riskhub.api.errors import error_response
from riskhub.errors import NetworkForbidden

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
OPEN_PATHS = frozenset({"/healthz"})
_CACHED_ADDRESSES = 4096  # verdicts kept per address string (a bounded set of clients)


def parse_address(text: str) -> Address | None:
    """An IP address, or None for anything else (``unknown``, a host name, garbage)."""
    try:
        return ip_address(text.strip())
    except ValueError:
        return None


def within(address: Address | None, networks: Sequence[Network]) -> bool:
    """Whether ``address`` belongs to one of ``networks`` (an IPv4-mapped IPv6 address counts
    as its IPv4 address, as a dual-stack listener reports IPv4 peers)."""
    if address is None:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> Address | None:
    """The address the request comes from: the peer, or, behind trusted proxies, the right-most
    ``X-Forwarded-For`` entry that is not a trusted proxy."""
    client = parse_address(peer) if peer else None
    if forwarded_for is None or not within(client, trusted):
        return client
    for hop in reversed(forwarded_for.split(",")):
        client = parse_address(hop)
        if not within(client, trusted):
            return client  # None for garbage: never allowed
    return client  # every hop is a trusted proxy: the left-most one


class NetworkAllowlist:
    """Pure ASGI middleware (no body buffering): 403 in the hub's error shape."""

    def __init__(
        self, app: ASGIApp, *, allowed: Sequence[Network], trusted_proxies: Sequence[Network]
    ) -> None:
        self.app = app
        self._trusted = tuple(trusted_proxies)
        self._allowed = functools.lru_cache(maxsize=_CACHED_ADDRESSES)(
            functools.partial(_allowed, allowed=tuple(allowed), trusted=self._trusted)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else None
        forwarded = _header(scope, b"x-forwarded-for") if self._trusted else None
        if self._allowed(peer, forwarded):
            await self.app(scope, receive, send)
            return
        refused = NetworkForbidden("client address is not in the hub's allowed networks")
        response = error_response(403, refused.code, refused.message)
        await response(scope, receive, send)


def _allowed(
    peer: str | None, forwarded: str | None, *, allowed: tuple[Network, ...], trusted: tuple[Network, ...]
) -> bool:
    return within(client_address(peer, forwarded, trusted), allowed)


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ",".join(values) if values else None
