"""What a new user reads first: `--help` of every command in plain words, `--version`, the
defaults `serve` runs with, and the runbook scripts' usage lines under their own names."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from live_hub import run_riskhub, run_script
from riskhub.cli import app
from riskhub.config import DATA_DIR, HOST, PORT

RUNBOOK_SCRIPTS = ("risk_hub_monitor.py", "backfill_risk_snapshots.py", "publish_risk_hub_snapshot.py")
# Python's names for a value, as typer prints them: <str>, <int>, <list[str]>, <Path>, ...
PYTHON_TYPE = re.compile(r"<[A-Za-z_][\w.\[\], ]*>")


def command_paths(group: typer.core.TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of the app, as the words that name it."""
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


ALL_COMMANDS = command_paths(typer.main.get_group(app))


@pytest.mark.parametrize("words", ALL_COMMANDS, ids=lambda words: " ".join(words) or "riskhub")
def test_help_names_values_in_words_and_flags_take_none(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*words, "--help"], prog_name="riskhub")
    assert result.exit_code == 0, result.output
    assert PYTHON_TYPE.search(result.output) is None, result.output
    assert "╭" not in result.output  # plain text, no panels
    assert re.search(r"\[env (?!var:)", result.output) is None  # once, by click: [env var: X]
    assert re.search(r"^  --help\s+Show this message", result.output, re.MULTILINE), result.output


def test_help_shows_which_options_take_a_value() -> None:
    monitor = CliRunner().invoke(app, ["monitor", "--help"]).output
    assert re.search(r"^  --world TEXT\s+World id \(repeatable\)", monitor, re.MULTILINE), monitor
    assert re.search(r"^  --warn-seconds NUMBER\s", monitor, re.MULTILINE), monitor
    assert re.search(r"^  --json\s+Machine-readable report", monitor, re.MULTILINE), monitor
    assert "[env var: HUB_TOKEN]" in monitor and "env HUB_TOKEN]" not in monitor  # said once
    lint = CliRunner().invoke(app, ["lint", "--help"], prog_name="riskhub").output
    assert "riskhub lint [OPTIONS] {FILE}..." in lint and re.search(r"^  FILE\.\.\.\s+Snapshot", lint, re.M)


def test_serve_help_shows_its_defaults() -> None:
    result = run_riskhub("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # the help wraps long lines
    assert f"--host TEXT Bind address [env var: RISKHUB_HOST; default: {HOST}]" in text
    assert f"--port INTEGER Port [env var: RISKHUB_PORT; default: {PORT}]" in text
    assert f"RISKHUB_DATA_DIR; default: {DATA_DIR}]" in text


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = run_riskhub("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"riskhub {version('riskhub')}\n", "")


@pytest.mark.parametrize("script", RUNBOOK_SCRIPTS)
def test_each_runbook_script_has_its_own_name_in_its_usage_line(script: str) -> None:
    helped = run_script(script, "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith(f"Usage: {script} [OPTIONS]\n"), helped.stdout
    wrong = run_script(script, "--no-such-option")
    assert wrong.returncode in (2, 3) and wrong.stdout == ""  # the monitor's 3 is Nagios UNKNOWN
    assert wrong.stderr.startswith(f"Usage: {script} [OPTIONS]\nTry '{script} --help' for help.")
