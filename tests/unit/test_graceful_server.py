"""`riskhub serve`'s uvicorn server: a relayed copy of one Ctrl-C stops gracefully; a real
second Ctrl-C still forces the exit."""

from __future__ import annotations

import signal

import pytest
import uvicorn

from riskhub.cli import serving
from riskhub.cli.serving import RELAYED_COPY_WINDOW_S, GracefulServer


def server_at(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> GracefulServer:
    monkeypatch.setattr(serving.time, "monotonic", lambda: clock[0])
    return GracefulServer(uvicorn.Config(app=lambda scope, receive, send: None))


def test_a_copy_of_the_same_ctrl_c_does_not_force_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    server = server_at(monkeypatch, clock)
    server.handle_exit(signal.SIGINT, None)
    clock[0] += 0.2  # uv run's relay of the same SIGINT
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.force_exit


def test_a_later_second_ctrl_c_forces_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    server = server_at(monkeypatch, clock)
    server.handle_exit(signal.SIGINT, None)
    clock[0] += RELAYED_COPY_WINDOW_S + 0.1
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


def test_sigterm_then_ctrl_c_in_the_window_stays_graceful(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    server = server_at(monkeypatch, clock)
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.force_exit
