"""`riskhub lint`: offline contract validation of snapshot files, one line per problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from riskhub.cli import app

from conftest import ROOT

SAMPLES = sorted((ROOT / "operations/risk_hub/samples").glob("*.json"))


def test_every_shipped_sample_passes_lint() -> None:
    result = CliRunner().invoke(app, ["lint", "--world", "w1", *map(str, SAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok ") == len(SAMPLES) >= 4


def test_lint_reports_each_bad_file_with_the_field_and_exits_1(tmp_path: Path) -> None:
    bad_weights = tmp_path / "bad_weights.json"
    bad_weights.write_text(json.dumps({**json.loads(SAMPLES[0].read_text()), "weights": {"a": "0.5"}}))
    not_json = tmp_path / "not_json.json"
    not_json.write_text("{nope")
    result = CliRunner().invoke(
        app, ["lint", "--world", "w1", str(bad_weights), str(not_json), str(SAMPLES[0])]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{bad_weights}: weights.a: must be a finite number")
    assert lines[1].startswith(f"{not_json}: body: not valid JSON")
    assert ": ok " in lines[2]


def test_lint_lists_every_problem_of_a_file_one_line_each(tmp_path: Path) -> None:
    doc = json.loads(SAMPLES[0].read_text())
    doc.update(as_of="yesterday", ttl_sec=0, weights={"a": "0.5"}, constraints=[], hash="md5:1")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["lint", "--world", "w1", str(bad), str(SAMPLES[0])])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    fields = [line.removeprefix(f"{bad}: ").split(":", 1)[0] for line in lines[:-1]]
    assert fields == ["as_of", "weights.a", "ttl_sec", "constraints", "hash"], result.output
    assert lines[1] == f"{bad}: weights.a: must be a finite number, got a string"
    assert ": ok " in lines[-1]


def test_lint_without_world_uses_the_file_or_says_what_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lint", str(SAMPLES[0])])
    assert result.exit_code == 1
    assert "world_id: not in the file; pass --world" in result.output


def test_the_readmes_lint_example_passes_on_every_shipped_sample() -> None:
    [example] = re.findall(r"`riskhub (lint [^`]*)`", (ROOT / "README.md").read_text())
    assert example.endswith(" FILE...")
    args = example.removesuffix(" FILE...").split()
    result = CliRunner().invoke(app, [*args, *map(str, SAMPLES)])
    assert result.exit_code == 0, result.output
