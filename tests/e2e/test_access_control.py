"""Access control of a real `riskhub serve` over real sockets: the network allowlist seen from two
loopback addresses (and through a trusted proxy), and token rotation by editing the tokens file
while the hub serves, without a restart and without a refused request for a token kept across."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from riskhub.tokens import fingerprint

from conftest import SAMPLE, TOKEN, ServerProcess

ALLOWED, PROXY, OUTSIDER = "127.0.0.1", "127.0.0.2", "127.0.0.3"
OLD = "old-gateway-token-0123456789abcdef01"
KEPT = "kept-engine-token-0123456789abcdef01"
NEW = "new-gateway-token-0123456789abcdef01"


@contextmanager
def client_from(address: str, server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client whose connections leave from ``address``."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, base_url=server.url, timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def post_sample(client: httpx.Client, token: str, version: str, **headers: str) -> httpx.Response:
    doc = json.loads(SAMPLE.read_text())
    doc.update(version=version, ttl_sec=3600)
    return client.post(
        "/risk-hub/worlds/w1/snapshots",
        content=json.dumps(doc).encode(),
        headers={**bearer(token), "x-actor": "gateway", "x-stage": "paper", **headers},
    )


def test_an_address_outside_the_allowlist_gets_403_on_every_api_route_but_healthz(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(RISKHUB_ALLOWED_NETWORKS=f"{ALLOWED}/32")
    with client_from(ALLOWED, server) as inside, client_from(PROXY, server) as outside:
        assert post_sample(inside, TOKEN, "v1").status_code == 201
        assert post_sample(outside, TOKEN, "v2").status_code == 403
        for path in (
            "/risk-hub/worlds/w1/snapshots/latest",
            "/risk-hub/worlds/w1/snapshots",
            "/risk-hub/worlds/w1/risk/latest",
            "/readyz",
            "/metrics",
            "/docs",
        ):
            refused = outside.get(path, headers=bearer(TOKEN))
            assert refused.status_code == 403, path
            assert refused.json()["error"]["code"] == "network_forbidden"
            assert inside.get(path, headers=bearer(TOKEN)).status_code == 200, path
        assert outside.get("/healthz").status_code == 200
        versions = [
            s["version"]
            for s in inside.get("/risk-hub/worlds/w1/snapshots", headers=bearer(TOKEN)).json()["snapshots"]
        ]
        assert versions == ["v1"]


def test_a_trusted_proxys_forwarded_for_is_honoured_and_an_untrusted_ones_is_not(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(RISKHUB_ALLOWED_NETWORKS=f"{ALLOWED}/32", RISKHUB_TRUSTED_PROXIES=f"{PROXY}/32")
    latest = "/risk-hub/worlds/w1/snapshots"
    with client_from(PROXY, server) as proxy, client_from(OUTSIDER, server) as outsider:
        assert proxy.get(latest, headers={**bearer(TOKEN), "x-forwarded-for": ALLOWED}).status_code == 200
        assert proxy.get(latest, headers={**bearer(TOKEN), "x-forwarded-for": OUTSIDER}).status_code == 403
        assert proxy.get(latest, headers=bearer(TOKEN)).status_code == 403  # the proxy itself is not allowed
        # A forged left-most entry does not help: the proxy appended the real client last.
        forged = f"{ALLOWED}, {OUTSIDER}"
        assert proxy.get(latest, headers={**bearer(TOKEN), "x-forwarded-for": forged}).status_code == 403
        assert outsider.get(latest, headers={**bearer(TOKEN), "x-forwarded-for": ALLOWED}).status_code == 403


def replace_file(path: Path, text: str) -> None:
    """Write a new version beside the file and rename it over (what the runbook tells operators)."""
    draft = path.with_suffix(".new")
    draft.write_text(text)
    draft.replace(path)


class SteadyClient(threading.Thread):
    """Reads without pause with one token and records every status until stopped."""

    def __init__(self, server: ServerProcess, token: str) -> None:
        super().__init__(daemon=True)
        self.server, self.token = server, token
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with client_from(ALLOWED, self.server) as client:
            while not self.stop.is_set():
                self.statuses.append(
                    client.get("/risk-hub/worlds/w1/snapshots", headers=bearer(self.token)).status_code
                )


def wait_for_status(client: httpx.Client, token: str, status: int, timeout_s: float = 5) -> float:
    """Seconds until a read with ``token`` answers ``status``."""
    started = time.monotonic()
    while client.get("/risk-hub/worlds/w1/snapshots", headers=bearer(token)).status_code != status:
        assert time.monotonic() - started < timeout_s, f"{fingerprint(token)} never got {status}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_token_is_rotated_by_editing_the_tokens_file_while_the_hub_serves(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# gateway\n{OLD}\n# risk engine\n{KEPT}\n")
    server = server_factory(RISKHUB_TOKENS="", RISKHUB_TOKENS_FILE=str(tokens))
    steady = SteadyClient(server, KEPT)
    steady.start()
    with client_from(ALLOWED, server) as client:
        assert post_sample(client, OLD, "v1").status_code == 201
        assert post_sample(client, NEW, "v2").status_code == 401
        replace_file(tokens, f"# gateway, rotated\n{NEW}\n# risk engine\n{KEPT}\n")
        assert wait_for_status(client, NEW, 200) < 3
        assert post_sample(client, NEW, "v2").status_code == 201
        assert post_sample(client, OLD, "v3").status_code == 401
    steady.stop.set()
    steady.join(timeout=10)
    assert len(steady.statuses) > 20 and set(steady.statuses) == {200}
    log = server.log_path.read_text()
    assert f"token={fingerprint(OLD)}" in log and f"token={fingerprint(NEW)}" in log
    assert "tokens reloaded" in log
    assert all(secret not in log for secret in (OLD, NEW, KEPT))
