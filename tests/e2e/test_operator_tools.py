"""The runbook's scripts against a live hub: `publish_risk_hub_snapshot.py` exit codes and
offload, `risk_hub_monitor.py` Nagios exit codes from the `as_of` of real POSTs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from live_hub import (
    lookup,
    metric,
    operator_env,
    post_fresh,
    read,
    run_riskhub,
    run_script,
    start_hub,
    stored_versions,
)
from riskhub.contract import normalize_snapshot, snapshot_hash
from scripted_proxy import ScriptedProxy

from conftest import READ_TOKEN, ROOT, SAMPLE, TOKEN, ServerProcess
from services import free_port

TWENTY = "operations/risk_hub/samples/risk_snapshot_20_strategies.json"
PUBLISH = "publish_risk_hub_snapshot.py"
MONITOR = "risk_hub_monitor.py"


@pytest.fixture(scope="module")
def blob_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tools-blobs")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, blob_dir: Path) -> Iterator[ServerProcess]:
    """One hub for the module: blobs in ``blob_dir``, hub-side offload over 4096 bytes."""
    server = start_hub(
        tmp_path_factory.mktemp("tools-hub"),
        RISKHUB_BLOB_URL=f"file://{blob_dir}",
        RISKHUB_INLINE_COV_THRESHOLD="4096",
    )
    yield server
    server.stop()


def new_world() -> str:
    return f"w-{uuid.uuid4().hex[:10]}"


def publish(base_url: str, world: str, snapshot: str | Path, *extra: str) -> tuple[int, str, str]:
    result = run_script(
        PUBLISH,
        *("--base-url", base_url, "--world", world, "--snapshot", str(snapshot), "--token", TOKEN),
        *extra,
    )
    return result.returncode, result.stdout, result.stderr


def monitor(base_url: str, *args: str, token: str = TOKEN) -> tuple[int, str]:
    result = run_script(MONITOR, "--base-url", base_url, *args, "--token", token)
    assert not result.stderr.startswith("Traceback"), result.stderr
    return result.returncode, result.stdout


# --- publish -----------------------------------------------------------------------------------


def test_publish_exits_0_when_stored_and_0_again_when_deduplicated(hub: ServerProcess) -> None:
    world = new_world()
    code, out, err = publish(hub.url, world, SAMPLE, "--actor", "gateway", "--stage", "paper")
    assert (code, err) == (0, "")
    assert out.startswith(f"201 created {world}/v1 blake3:")
    assert read(hub, f"/risk-hub/worlds/{world}/snapshots/latest")["version"] == "v1"
    code, out, _ = publish(hub.url, world, SAMPLE, "--actor", "gateway", "--stage", "paper")
    assert code == 0 and out.startswith(f"200 already stored (deduplicated) {world}/v1")
    assert metric(hub, "risk_hub_snapshot_dedupe_total", world_id=world, stage="paper") == 1


def test_publish_reads_the_token_from_hub_token(hub: ServerProcess) -> None:
    world = new_world()
    args = ("--base-url", hub.url, "--world", world, "--snapshot", str(SAMPLE))
    result = run_script(PUBLISH, *args, env=operator_env(HUB_TOKEN=TOKEN))
    assert result.returncode == 0, result.stderr
    without = run_script(PUBLISH, *args, env={**operator_env(), "HUB_TOKEN": ""})
    assert without.returncode == 1 and "HUB_TOKEN" in without.stderr  # bad usage: nothing was sent


def test_contract_violations_exit_1_naming_the_field_before_any_request(
    hub: ServerProcess, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(SAMPLE.read_text()), "weights": {"strategy_a": 0.9}}))
    not_json = tmp_path / "not.json"
    not_json.write_text("{nope")
    array = tmp_path / "array.json"
    array.write_text("[[1, 2]]")
    with ScriptedProxy(hub.url) as proxy:
        weights = publish(proxy.url, new_world(), bad)
        parse = publish(proxy.url, new_world(), not_json)
        not_an_object = publish(proxy.url, new_world(), array)
        actor = publish(proxy.url, new_world(), SAMPLE, "--actor", "risk-engine")
        stage = publish(proxy.url, new_world(), SAMPLE, "--allowed-stages", "live")
        missing = publish(proxy.url, new_world(), tmp_path / "missing.json")
    assert proxy.seen == []
    assert weights[0] == 1 and "error: weights: must sum to 1 within 0.001, got 0.9" in weights[2]
    assert parse[0] == 1 and "body: not valid JSON" in parse[2]
    assert not_an_object[0] == 1 and "body: must be a JSON object" in not_an_object[2]
    assert actor[0] == 1 and "provenance.actor: X-Actor header says 'risk-engine'" in actor[2]
    assert stage[0] == 1 and "provenance.stage: must be one of ['live']" in stage[2]
    assert missing[0] == 1 and "cannot read" in missing[2]
    for _, out, err in (weights, parse, not_an_object, actor, stage, missing):
        assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    lint = run_riskhub("lint", "--world", "w1", str(bad))
    assert lint.returncode == 1 and "weights: must sum to 1" in lint.stdout


def test_publish_lists_every_contract_violation_of_the_file_and_sends_nothing(
    hub: ServerProcess, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    doc = {**json.loads(SAMPLE.read_text()), "weights": {"strategy_a": 0.9}, "ttl_sec": 0, "as_of": 1}
    bad.write_text(json.dumps(doc))
    with ScriptedProxy(hub.url) as proxy:
        code, out, err = publish(proxy.url, new_world(), bad, "--actor", "gateway")
    assert proxy.seen == [] and (code, out) == (1, "")
    assert err.splitlines() == [
        "error: as_of: must be an ISO-8601 string (nothing was sent)",
        "error: weights: must sum to 1 within 0.001, got 0.9 (nothing was sent)",
        "error: ttl_sec: must be > 0 and <= 86400, got 0 (nothing was sent)",
    ]


def test_publish_now_dates_the_snapshot_now_so_each_run_is_a_new_snapshot(hub: ServerProcess) -> None:
    world = new_world()
    before = datetime.now(UTC)
    first = publish(hub.url, world, SAMPLE, "--now", "--ttl-sec", "3600")
    second = publish(hub.url, world, SAMPLE, "--now", "--ttl-sec", "3600")
    after = datetime.now(UTC)
    assert (first[0], second[0]) == (0, 0), first[2] + second[2]
    versions = [
        re.match(rf"201 created {world}/(v1-\d{{8}}T\d{{6}}\.\d{{6}}Z) blake3:", out)
        for _, out, _ in (first, second)
    ]
    assert all(versions), (first, second)
    older, newer = (match.group(1) for match in versions if match is not None)
    assert older < newer and stored_versions(hub, world) == [newer, older]
    latest = read(hub, f"/risk-hub/worlds/{world}/snapshots/latest")
    as_of = datetime.fromisoformat(latest["as_of"])
    assert latest["version"] == newer and before <= as_of <= after and latest["ttl_sec"] == 3600
    assert newer.removeprefix("v1-") == as_of.strftime("%Y%m%dT%H%M%S.%fZ")  # one instant, two fields


def test_publish_ttl_sec_overrides_the_files_ttl_and_its_hash(hub: ServerProcess, tmp_path: Path) -> None:
    world, doc = new_world(), json.loads(SAMPLE.read_text())
    files_hash = snapshot_hash(normalize_snapshot(doc, world_id=world).body, "blake3")  # valid as is
    hashed = tmp_path / "hashed.json"
    hashed.write_text(json.dumps({**doc, "hash": files_hash}))
    code, out, err = publish(hub.url, world, hashed, "--ttl-sec", "600")
    assert code == 0 and out.startswith(f"201 created {world}/v1 blake3:"), err
    assert files_hash not in out  # it certified ttl_sec 10: the snapshot sent has 600
    assert lookup(hub, world, "v1")["ttl_sec"] == 600
    code, out, err = publish(hub.url, new_world(), SAMPLE, "--ttl-sec", "0")
    assert (code, out) == (1, "") and "ttl_sec: must be > 0 and <= 86400, got 0 (nothing was sent)" in err


BAD_TOKENS = ("tok\r\nX-Evil: 1", "t\u00f6k-en", "two words")


def test_bad_usage_exits_1_before_any_request_and_never_prints_the_token(hub: ServerProcess) -> None:
    with ScriptedProxy(hub.url) as proxy:
        bad_tokens = [publish(proxy.url, new_world(), SAMPLE, "--token", token) for token in BAD_TOKENS]
    assert proxy.seen == []
    for token, (code, out, err) in zip(BAD_TOKENS, bad_tokens, strict=True):
        assert code == 1 and "token: must be printable ASCII without spaces" in err, err
        assert token not in out + err and "Traceback" not in err
    bad_url = run_script(
        PUBLISH, "--base-url", "notaurl", "--world", "w1", "--snapshot", str(SAMPLE), "--token", TOKEN
    )
    assert bad_url.returncode == 1 and bad_url.stderr.startswith("error: base_url: must be an http")
    assert "attempt" not in bad_url.stderr and len(bad_url.stderr.strip().splitlines()) == 1


def test_refusals_by_the_hub_exit_2(hub: ServerProcess, tmp_path: Path) -> None:
    world = new_world()
    assert publish(hub.url, world, SAMPLE)[0] == 0
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**json.loads(SAMPLE.read_text()), "weights": {"strategy_a": 1.0}}))
    code, out, err = publish(hub.url, world, changed)
    assert (code, out) == (2, "")
    assert err.startswith("error: refused by the hub (version_conflict):")
    wrong_token = run_script(
        PUBLISH, "--base-url", hub.url, "--world", world, "--snapshot", str(SAMPLE), "--token", "nope"
    )
    assert (
        wrong_token.returncode == 2 and "(unauthorized): Authorization: unknown token" in wrong_token.stderr
    )
    assert "nope" not in wrong_token.stderr + wrong_token.stdout
    read_only = run_script(
        PUBLISH, "--base-url", hub.url, "--world", world, "--snapshot", str(SAMPLE), "--token", READ_TOKEN
    )
    assert read_only.returncode == 2 and "(forbidden)" in read_only.stderr


def test_an_unreachable_hub_exits_3_after_the_retries() -> None:
    code, out, err = publish(
        f"http://127.0.0.1:{free_port()}", "w1", SAMPLE, "--max-attempts", "2", "--timeout-seconds", "1"
    )
    assert (code, out) == (3, "")
    assert "unreachable" in err and "gave up after 2 attempts" in err and "Traceback" not in err


def test_covariance_over_the_threshold_is_offloaded_by_publish_into_the_hubs_store(
    hub: ServerProcess, blob_dir: Path
) -> None:
    world, original = new_world(), json.loads((ROOT / TWENTY).read_text())
    code, out, err = publish(
        hub.url,
        world,
        TWENTY,
        *("--actor", "risk-engine", "--stage", "live", "--inline-cov-threshold", "4096"),
        *("--blob-url", f"file://{blob_dir}"),
    )
    assert code == 0, err
    assert f"offloaded covariance -> file://{blob_dir}/" in out and "201 created" in out
    stored = lookup(hub, world, "v20")
    assert stored["covariance_ref"].startswith(f"file://{blob_dir}/") and "hub_offloaded" not in stored
    assert lookup(hub, world, "v20", expand=True)["covariance"] == original["covariance"]


def test_covariance_sent_inline_is_offloaded_by_the_hub(hub: ServerProcess) -> None:
    world, original = new_world(), json.loads((ROOT / TWENTY).read_text())
    code, out, err = publish(hub.url, world, TWENTY, "--actor", "risk-engine", "--stage", "live")
    assert code == 0, err
    assert "offloaded" not in out
    stored = lookup(hub, world, "v20")
    assert "covariance" in stored["hub_offloaded"] and stored["covariance_ref"].startswith("file://")
    assert lookup(hub, world, "v20", expand=True)["covariance"] == original["covariance"]


def test_a_blob_url_outside_the_hubs_store_is_refused_with_2(hub: ServerProcess, tmp_path: Path) -> None:
    code, _, err = publish(
        hub.url,
        new_world(),
        TWENTY,
        *("--actor", "risk-engine", "--inline-cov-threshold", "4096", "--blob-url", f"file://{tmp_path}"),
    )
    assert code == 2 and "does not point into the configured blob store" in err


# --- monitor -----------------------------------------------------------------------------------


def test_monitor_exits_0_for_a_fresh_world(hub: ServerProcess) -> None:
    world = new_world()
    post_fresh(hub, world, age_s=5, version="fresh")
    code, out = monitor(hub.url, "--world", world, "--warn-seconds", "600")
    assert code == 0, out
    assert out.startswith(f"RISKHUB FRESHNESS OK - {world} OK ")
    assert world in out and "fresh" in out  # the table


def test_monitor_exits_1_past_warn_seconds(hub: ServerProcess) -> None:
    world = new_world()
    post_fresh(hub, world, age_s=700, version="late")
    code, out = monitor(hub.url, "--world", world, "--warn-seconds", "600")
    assert code == 1 and out.startswith(f"RISKHUB FRESHNESS WARN - {world} WARN 11m"), out


def test_monitor_exits_2_past_crit_seconds(hub: ServerProcess) -> None:
    world = new_world()
    post_fresh(hub, world, age_s=2000, version="stale")
    code, out = monitor(hub.url, "--world", world, "--warn-seconds", "600", "--crit-seconds", "1800")
    assert code == 2 and out.startswith(f"RISKHUB FRESHNESS CRIT - {world} CRIT 33m"), out


def test_monitor_exits_2_when_a_world_has_no_snapshot(hub: ServerProcess) -> None:
    fresh, empty = new_world(), new_world()
    post_fresh(hub, fresh, age_s=5, version="fresh")
    code, out = monitor(hub.url, "--world", fresh, "--world", empty, "--json")
    report = json.loads(out)
    assert code == 2 and report["status"] == "MISSING" and report["exit_code"] == 2
    assert [(r["world_id"], r["status"]) for r in report["results"]] == [(fresh, "OK"), (empty, "MISSING")]
    assert 0 <= report["results"][0]["lag_seconds"] < 600


def test_monitor_exits_2_when_the_newest_snapshot_expired(hub: ServerProcess, tmp_path: Path) -> None:
    world = new_world()
    short = tmp_path / "short.json"
    short.write_text(json.dumps({**json.loads(SAMPLE.read_text()), "ttl_sec": 1}))
    assert publish(hub.url, world, short)[0] == 0
    time.sleep(1.2)
    code, out = monitor(hub.url, "--world", world, "--json")
    result = json.loads(out)["results"][0]
    assert code == 2 and result["status"] == "MISSING" and "expired" in result["detail"]


def test_monitor_checks_each_stage_separately(hub: ServerProcess) -> None:
    world = new_world()
    post_fresh(hub, world, age_s=5, version="paper-fresh", stage="paper")
    post_fresh(hub, world, age_s=700, version="live-late", stage="live")
    code, out = monitor(hub.url, "--world", world, "--stage", "paper", "--stage", "live", "--json")
    statuses = {r["stage"]: r["status"] for r in json.loads(out)["results"]}
    assert code == 1 and statuses == {"paper": "OK", "live": "WARN"}


def test_monitor_works_with_a_read_only_token(hub: ServerProcess) -> None:
    world = new_world()
    post_fresh(hub, world, age_s=5, version="fresh")
    assert monitor(hub.url, "--world", world, token=READ_TOKEN)[0] == 0


def test_monitor_exits_3_when_the_hub_is_unreachable() -> None:
    code, out = monitor(f"http://127.0.0.1:{free_port()}", "--world", "w1", "--timeout-seconds", "1")
    assert code == 3 and out.startswith("RISKHUB FRESHNESS UNKNOWN - w1 UNKNOWN"), out


def test_monitor_exits_3_when_the_token_is_wrong(hub: ServerProcess) -> None:
    world = new_world()
    post_fresh(hub, world, age_s=5, version="fresh")
    code, out = monitor(hub.url, "--world", world, token="not-a-token")
    assert code == 3 and "Authorization: unknown token" in out and "not-a-token" not in out


def test_monitor_exits_3_on_a_token_that_cannot_be_sent_and_never_prints_it(hub: ServerProcess) -> None:
    for token in BAD_TOKENS:
        result = run_script(MONITOR, "--base-url", hub.url, "--world", "w1", "--token", token)
        assert result.returncode == 3, result.stderr
        assert "token: must be printable ASCII without spaces" in result.stdout + result.stderr
        assert token not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_monitor_without_worlds_or_token_exits_3(hub: ServerProcess) -> None:
    no_world = run_script(MONITOR, "--base-url", hub.url, "--token", TOKEN)
    assert no_world.returncode == 3 and "--world" in no_world.stderr
    no_token = run_script(
        MONITOR, "--base-url", hub.url, "--world", "w1", env={**operator_env(), "HUB_TOKEN": ""}
    )
    assert no_token.returncode == 3 and "HUB_TOKEN" in no_token.stderr
    assert stored_versions(hub, "w1") == []


# --- one-line errors ---------------------------------------------------------------------------


def test_configuration_errors_and_unreachable_services_are_one_line_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in operator_env().items() if not k.startswith("RISKHUB_")}
    env["RISKHUB_DATA_DIR"] = str(tmp_path / "data")
    unreachable = f"127.0.0.1:{free_port()}"
    kafka_down = {**env, "RISKHUB_CONTROLBUS_BROKERS": unreachable, "RISKHUB_DLQ_TOPIC": "policy.dlq"}
    (tmp_path / "store.sqlite3").touch()  # an empty file is an empty SQLite database
    sqlite = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    missing = tmp_path / "missing.sqlite3"
    runs = {
        "worker without brokers": run_riskhub("worker", "--metrics-port", "0", env=env),
        "worker, broker down": run_riskhub("worker", "--metrics-port", "0", env=kafka_down),
        "dlq list, broker down": run_riskhub("dlq", "list", env=kafka_down),
        "backfill, bad dsn": run_riskhub(
            "backfill", "--dsn", "bogus://x", "--redis", f"redis://{unreachable}", "--world", "w1", env=env
        ),
        "backfill, bad redis url": run_riskhub(
            "backfill", "--dsn", sqlite, "--redis", "notaurl", "--world", "w1", env=env
        ),
        "backfill, no such sqlite file": run_script(
            "backfill_risk_snapshots.py",
            *("--dsn", f"sqlite:///{missing}", "--redis", f"redis://{unreachable}", "--world", "w1"),
            env=env,
        ),
    }
    for name, result in runs.items():
        assert result.returncode == 2, (name, result.stderr)
        assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr, (name, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith("error: "), (name, result.stderr)
        if not name.startswith("worker"):  # the worker logs its start-up before the error
            assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, name
    assert "controlbus_brokers" in runs["worker without brokers"].stderr
    assert unreachable in runs["dlq list, broker down"].stderr
    assert "unsupported scheme in 'bogus'" in runs["backfill, bad dsn"].stderr
    assert "Redis URL" in runs["backfill, bad redis url"].stderr
    assert runs["backfill, no such sqlite file"].stderr == (
        f"error: no SQLite database at {missing}: backfill reads an existing store (check --dsn)\n"
    )
    assert not missing.exists()  # refused, not created empty


def test_monitor_bad_arguments_exit_3_with_the_usage(hub: ServerProcess) -> None:
    for args in (("--warn-seconds", "abc"), ("--bogus",)):
        script = run_script(MONITOR, "--base-url", hub.url, "--world", "w1", *args)
        command = run_riskhub("monitor", "--base-url", hub.url, "--world", "w1", *args)
        for result in (script, command):
            assert result.returncode == 3, (args, result.stderr)
            assert "Usage:" in result.stderr and "Traceback" not in result.stderr
    assert run_riskhub("publish", "--bogus").returncode == 2  # other commands: click's usual 2


# --- the scripts from a python without the project's dependencies ------------------------------

BARE_PYTHON = [str(Path(sys.base_prefix) / "bin" / "python3"), "-S"]  # -S: no site-packages at all


def test_a_script_run_with_a_bare_python_reruns_itself_with_the_project_venv(hub: ServerProcess) -> None:
    world = new_world()
    post_fresh(hub, world, age_s=5, version="fresh")
    args = ["--base-url", hub.url, "--world", world, "--token", TOKEN]
    result = subprocess.run(
        [*BARE_PYTHON, f"scripts/{MONITOR}", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"RISKHUB FRESHNESS OK - {world} OK ")


@pytest.mark.parametrize(("script", "code"), [(MONITOR, 3), (PUBLISH, 1), ("backfill_risk_snapshots.py", 2)])
def test_without_a_venv_a_script_says_how_to_run_it_in_one_line(
    tmp_path: Path, script: str, code: int
) -> None:
    (tmp_path / "src").symlink_to(ROOT / "src")  # a checkout never synced: no .venv
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    result = subprocess.run(
        [*BARE_PYTHON, f"scripts/{script}", "--world", "w1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == code and result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"uv run python scripts/{script} " in result.stderr
