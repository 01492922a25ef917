"""What the runbook's scripts share: run one ``riskhub`` command from a checkout, whatever the python.

A plain ``python`` outside the project's environment lacks its dependencies (typer, httpx, ...).
The script then runs itself again with the checkout's ``.venv/bin/python`` (same arguments); with
no venv it says in one line how to run it and exits with the script's own code for "could not
even start" (the monitor's 3 is Nagios UNKNOWN; an exit 1 would page as WARN).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"


def run_riskhub(command: str, *, script: str, cannot_start_exit: int) -> None:
    """``riskhub <command> <this script's arguments>``, named ``script`` in usage messages."""
    sys.path.insert(0, str(ROOT / "src"))  # a checkout that was never installed
    try:
        from riskhub.cli import run_command
    except ModuleNotFoundError as exc:
        rerun_in_venv_or_exit(script, cannot_start_exit, exc)
    run_command(command, sys.argv[1:], prog_name=script)


def rerun_in_venv_or_exit(script: str, code: int, missing: ModuleNotFoundError) -> NoReturn:
    """Replace this process by the venv's python (never twice: a venv without the module stops)."""
    venv_python = VENV / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(venv_python, [str(venv_python), *sys.argv])
    # The arguments are not repeated: they may hold a token.
    print(
        f"error: {missing} (this python lacks the project's dependencies);"
        f" run it as: uv run python scripts/{script} ...",
        file=sys.stderr,
    )
    raise SystemExit(code)
