"""`make run` (make -> uv run -> riskhub serve) stops cleanly: Ctrl-C in its terminal, or SIGTERM
to make, ends every process with no traceback and no "make: *** ... Error" line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import ROOT
from services import free_port


def start_make_run(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    """`make run` in its own session, as in a terminal of its own (the hub's data in ``data_dir``)."""
    port = free_port()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT,
        env={**terminal_env(), "RISKHUB_DATA_DIR": str(data_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120  # the first `uv sync` of a machine may take a while
    while not serves(port):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "make run did not serve"
        time.sleep(0.2)
    return proc, port


def terminal_env() -> dict[str, str]:
    """A shell's environment outside the project's venv (this suite runs inside it, and the
    Makefile's ``python3 -m uv`` needs the machine's python3), with no RISKHUB_* settings."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKHUB_") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def serves(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def processes_in_group(pgid: int) -> list[str]:
    result = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(pgid)], capture_output=True, text=True)
    return result.stdout.strip().splitlines()


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda proc: os.killpg(proc.pid, signal.SIGINT), id="ctrl-c"),  # what a terminal does
        pytest.param(lambda proc: proc.send_signal(signal.SIGTERM), id="sigterm-to-make"),
    ],
)
def test_make_run_stops_cleanly(tmp_path: Path, stop: object) -> None:
    proc, port = start_make_run(tmp_path / "data")
    assert callable(stop)
    stop(proc)
    out, _ = proc.communicate(timeout=30)
    # make dies of the signal it was sent once its recipe is done (shells show 130 / 143 and no
    # message); what matters is that the hub below it shut down gracefully and said nothing more.
    assert proc.returncode in (0, -signal.SIGINT, -signal.SIGTERM), out
    assert "Application shutdown complete." in out and "Finished server process" in out, out
    for noise in ("Traceback", "make: ***", "Error", "Aborted", "KeyboardInterrupt"):
        assert noise not in out, out
    assert processes_in_group(proc.pid) == [] and not serves(port)
