"""The operator's view end to end: a real `riskhub serve` (JSON logs) takes a scripted scenario
(valid, duplicate, expired, conflict, bad token, a live breach, a dead-lettered event); headless
Chromium signs in to the status page and finds every world with its class and figures (screenshot
kept in the test's output); the process's JSON logs parse, carry what operators need, and hold
no token."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from conftest import READ_TOKEN, ROOT, SAMPLE, TOKEN
from services import free_port, tcp_accepts

LIMITS = '[[limit]]\nstage = "live"\nmetric = "var_99"\nmax = 0.0001\nseverity = "breach"\n'
CORRELATION = "corr-scenario-0001"


@dataclass
class Hub:
    url: str
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """`riskhub serve` with JSON logs, a limits file and a worker that dooms some versions."""
    (tmp_path / "limits.toml").write_text(LIMITS)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests"),
        "RISKHUB_TOKENS": TOKEN,
        "RISKHUB_READ_TOKENS": READ_TOKEN,
        "RISKHUB_DATA_DIR": str(tmp_path / "data"),
        "RISKHUB_LOG_FORMAT": "json",
        "RISKHUB_LIMITS_FILE": str(tmp_path / "limits.toml"),
        "RISKHUB_DLQ_TOPIC": "policy.dlq",
        "RISKHUB_RETRY_BACKOFF_SEC": "0.01",
        "RISKHUB_WORKERS": "riskhub.risk.workers:DEFAULT_WORKERS,doomed_worker:DOOMED",
    }
    stdout, stderr = tmp_path / "hub.out", tmp_path / "hub.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=err,
        )
    deadline = time.monotonic() + 30
    while not tcp_accepts(port):
        assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()[-2000:]
        time.sleep(0.05)
    yield Hub(f"http://127.0.0.1:{port}", proc, stdout, stderr)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def snapshot(version: str, age_s: float, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    doc.pop("provenance")
    as_of = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat().replace("+00:00", "Z")
    doc.update({"version": version, "as_of": as_of, "ttl_sec": 3600, **changes})
    return doc


def post(hub: Hub, world: str, doc: dict[str, Any], stage: str = "paper", token: str = TOKEN) -> int:
    headers = {
        "authorization": f"Bearer {token}",
        "x-actor": "gateway",
        "x-stage": stage,
        "x-correlation-id": CORRELATION,
    }
    return httpx.post(f"{hub.url}/risk-hub/worlds/{world}/snapshots", json=doc, headers=headers).status_code


def run_scenario(hub: Hub) -> None:
    ok = snapshot("v1", 60)
    assert post(hub, "fresh", ok) == 201
    assert post(hub, "fresh", ok) == 200  # duplicate
    assert post(hub, "fresh", {**ok, "weights": {"strategy_a": 0.5, "strategy_b": 0.5}}) == 409
    assert post(hub, "late", snapshot("v1", 700)) == 201  # WARN
    assert post(hub, "stale", snapshot("v1", 2000)) == 201  # CRIT
    assert post(hub, "gone", snapshot("v1", 60, ttl_sec=1)) == 201  # expires: EXPIRED
    assert post(hub, "fresh", snapshot("v2", 30), token="wrong-token-0123456789") == 401
    assert post(hub, "limits", snapshot("v1", 30), stage="live") == 201  # var_99 over 0.0001
    assert post(hub, "dlq", snapshot("doomed-1", 30)) == 201
    time.sleep(1.5)  # the relay and consumer run in the hub; "gone" expires


def browse(hub: Hub, screenshot: Path) -> list[dict[str, str]]:
    """Sign in with headless Chromium and read every world row of the page."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(hub.url + "/")
        driver.find_element(By.ID, "token").send_keys(READ_TOKEN)
        driver.find_element(By.CSS_SELECTOR, "form button").click()
        WebDriverWait(driver, 10).until(expected_conditions.presence_of_element_located((By.ID, "worlds")))
        assert READ_TOKEN not in driver.current_url
        driver.save_screenshot(str(screenshot))
        rows = []
        for tr in driver.find_elements(By.CSS_SELECTOR, "tr.world"):
            cell = {td.get_attribute("class"): td.text for td in tr.find_elements(By.TAG_NAME, "td")}
            rows.append({"world": tr.get_attribute("data-world"), "class": tr.get_attribute("class"), **cell})
        return rows
    finally:
        driver.quit()


def test_the_status_page_and_the_logs_show_the_scenario(hub: Hub, tmp_path: Path) -> None:
    run_scenario(hub)
    rows = {row["world"]: row for row in browse(hub, tmp_path / "status.png")}
    print(f"\nscreenshot: {tmp_path / 'status.png'}")
    assert (tmp_path / "status.png").stat().st_size > 10_000
    expected = {"fresh": "ok", "late": "warn", "stale": "crit", "gone": "crit", "limits": "ok", "dlq": "ok"}
    assert {world: row["class"].split()[-1] for world, row in rows.items()} == expected
    assert rows["gone"]["state"] == "EXPIRED" and rows["late"]["state"] == "WARN"
    sigma = 0.6 * statistics.stdev([0.01, -0.005, 0.002]) + 0.4 * statistics.stdev([0.008, -0.004, 0.001])
    assert float(rows["fresh"]["sigma"]) == pytest.approx(sigma, rel=1e-5)  # shown with 6 digits
    assert rows["fresh"]["count dedupe"] == "1" and rows["fresh"]["risk-status"] == "done"
    assert rows["limits"]["breaches blocking"] == "1 BLOCKING"
    assert rows["dlq"]["risk-status"] == "failed" and rows["dlq"]["count dlq"] == "1"
    hub.proc.send_signal(signal.SIGTERM)
    hub.proc.wait(timeout=15)
    check_logs(hub)


def check_logs(hub: Hub) -> None:
    text = hub.stderr.read_text()
    assert TOKEN not in text + hub.stdout.read_text() and READ_TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    access = [line for line in lines if line["logger"] == "riskhub.access"]
    assert access and all({"route", "status", "duration_ms", "request_id"} <= set(a) for a in access)
    writes = [a for a in access if a["method"] == "POST" and a["route"].endswith("/snapshots")]
    assert sorted(a["status"] for a in writes) == [200, 201, 201, 201, 201, 201, 201, 401, 409]
    assert all(a["request_id"] == CORRELATION for a in writes)
    stored = [line for line in lines if line["message"] == "snapshot stored"]
    assert len(stored) == 6 and all(line["correlation_id"] == CORRELATION for line in stored)
    assert {line["world_id"] for line in stored} == {"fresh", "late", "stale", "gone", "limits", "dlq"}
    assert any(line["message"].startswith("snapshot rejected") for line in lines)
