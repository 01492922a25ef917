"""The operator's view, proven: the alert rules pass `promtool check rules` and their unit tests;
each alert points at a runbook entry that exists; the rules and the Grafana dashboard name only
metrics that exist, and the dashboard charts every one of them. Then a real Prometheus (1 s scrape
and evaluation) scrapes a real `riskhub serve` and a real `riskhub worker` (PostgreSQL, Redis, S3,
Kafka) through a scripted day of trouble, and the alerts that must fire do, no others do, and every
query of the dashboard answers with data.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from riskhub.metrics import Metrics

from conftest import READ_TOKEN, ROOT, SAMPLE, TOKEN, Production, ServerProcess
from services import KafkaService, PrometheusService, create_topic, free_port, log_tail, start_prometheus

RULES = ROOT / "operations/prometheus/riskhub-alerts.yml"
RULE_TESTS = ROOT / "operations/prometheus/riskhub-alerts.test.yml"
DASHBOARD = ROOT / "operations/grafana/riskhub.json"
RUNBOOK = ROOT / "docs/runbook.md"
TESTS_DIR = Path(__file__).resolve().parents[1]
SEVERITIES = {"warning", "critical"}
# How the dashboard's template variables are filled in for a query straight to Prometheus:
# every world and stage, and a rate window that holds many 1 s scrapes.
VARIABLES = {"$__rate_interval": "1m", "${world}": ".*", "$world": ".*", "${stage}": ".*", "$stage": ".*"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
METRIC_NAME = re.compile(r"\b(risk_hub_[a-z0-9_]*[a-z0-9])\b")
LIMITS = '[[limit]]\nstage = "live"\nmetric = "var_99"\nmax = 0.0001\nseverity = "breach"\n'


# --- the files themselves ----------------------------------------------------------------------


def promtool() -> str:
    exe = shutil.which("promtool")
    assert exe is not None, "promtool not found: run scripts/install_system_deps.sh (Debian `prometheus`)"
    return exe


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target."""
    return [(panel["title"], t["expr"]) for panel in dashboard_panels() for t in panel.get("targets", [])]


def filled_in(expr: str) -> str:
    """A dashboard expression with its template variables replaced (see VARIABLES)."""
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown template variable in {expr!r}"
    return expr


def exposed_metric_names() -> set[str]:
    """Every metric a hub or worker exposes, as PromQL names it (counters with `_total`)."""
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in Metrics().registry.collect()
    }


def metric_names_in(expr: str) -> set[str]:
    """The riskhub metrics an expression reads (a histogram's series count as the histogram)."""
    exposed = exposed_metric_names()
    names = set()
    for name in METRIC_NAME.findall(expr):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        names.add(base if base != name and base in exposed else name)
    return names


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Anchor -> text of each runbook section (up to the next heading of any level)."""
    parts = re.split(r"^#{1,6} (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    check = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in check.stdout
    tested = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    assert set(names) - firing == set(), "alerts never tested firing"
    assert set(names) - quiet == set(), "alerts never tested staying quiet"
    assert firing | quiet == set(names), "tests of alerts that do not exist"


def test_every_alert_has_a_severity_a_summary_and_an_existing_runbook_entry() -> None:
    sections = runbook_sections()
    for rule in alert_rules():
        name, annotations = rule["alert"], rule["annotations"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert annotations["summary"] and annotations["description"], name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/runbook.md" and anchor in sections, f"{name}: no runbook section #{anchor}"
        assert annotations["runbook_entry"] in sections[anchor], f"{name}: {annotations['runbook_entry']!r}"


def test_the_runbook_lists_every_alert_with_its_severity() -> None:
    rows = re.findall(r"^\| `(RiskHub\w+)` \| .+ \| (\w+) \|$", RUNBOOK.read_text(), re.MULTILINE)
    assert dict(rows) == {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}


def test_the_rules_and_the_dashboard_name_only_metrics_that_exist() -> None:
    exposed = exposed_metric_names()
    in_rules = set().union(*(metric_names_in(rule["expr"]) for rule in alert_rules()))
    in_dashboard = set().union(*(metric_names_in(expr) for _, expr in dashboard_queries()))
    assert in_rules - exposed == set(), "the alert rules read metrics that do not exist"
    assert in_dashboard - exposed == set(), "the dashboard reads metrics that do not exist"
    assert exposed - in_dashboard == set(), "metrics the dashboard does not chart"
    for metric in (  # one alert per runbook monitoring line
        "risk_hub_snapshot_age_seconds",
        "risk_hub_snapshot_dedupe_total",
        "risk_hub_snapshot_expired_total",
        "risk_hub_producer_violations_total",
        "risk_hub_snapshot_failed_total",
        "risk_hub_consumer_lag",
        "risk_hub_snapshot_retry_total",
        "risk_hub_snapshot_dlq_total",
        "risk_hub_blob_errors_total",
        "risk_hub_cache_requests_total",
        "risk_hub_http_responses_total",
        "risk_hub_outbox_oldest_age_seconds",
        "risk_hub_limit_breaches_total",
    ):
        assert metric in in_rules, metric


def test_the_dashboard_picks_its_datasource_world_and_stage_from_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, label in (("world", "world_id"), ("stage", "stage")):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
        match = LABEL_VALUES.match(variables[name]["definition"])
        assert match is not None and match["label"] == label
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        for holder in (panel, *panel["targets"]):
            assert holder["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    for title, expr in dashboard_queries():  # a panel per world/stage follows the variables
        if re.search(r"by \([^)]*world_id", expr):
            assert 'world_id=~"$world"' in expr and 'stage=~"$stage"' in expr, title


# --- a real Prometheus on real hub processes ---------------------------------------------------


class WorkerProcess:
    """A real `riskhub worker` with its /metrics on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "riskhub.cli", "worker", "--metrics-port", str(self.metrics_port)],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], WorkerProcess]]:
    """Make worker processes (started by the test); all are stopped at the end."""
    made: list[WorkerProcess] = []

    def make(env: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"worker-{len(made)}.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusService]]:
    started: list[PrometheusService] = []

    def start(jobs: dict[str, list[str]]) -> PrometheusService:
        """Prometheus scraping ``jobs`` with the alert rules loaded (destroyed at the end)."""
        prometheus = start_prometheus(tmp_path, jobs, rule_files=[RULES])
        started.append(prometheus)
        return prometheus

    yield start
    for prometheus in started:
        prometheus.destroy()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page: (name, labels) -> value."""
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def prometheus_api(prometheus: PrometheusService, path: str, **params: str) -> Any:
    response = httpx.get(f"{prometheus.url}/api/v1/{path}", params=params, timeout=10)
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def firing_alerts(prometheus: PrometheusService) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """(alertname, labels other than alertname and severity) of every firing alert."""
    return {
        (
            alert["labels"]["alertname"],
            frozenset((k, v) for k, v in alert["labels"].items() if k not in ("alertname", "severity")),
        )
        for alert in prometheus_api(prometheus, "alerts")["alerts"]
        if alert["state"] == "firing"
    }


def wait_for(check: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> float:
    """Poll ``check`` until true; the seconds it took (fails with ``what()`` on timeout)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s: {what()}"
        time.sleep(0.2)
    return time.monotonic() - start


def snapshot(version: str, *, ttl_s: int = 3600, **changes: Any) -> bytes:
    """The runbook sample as of now (fresh), under another version."""
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    doc.pop("provenance")
    as_of = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    doc.update(version=version, as_of=as_of, ttl_sec=ttl_s, **changes)
    return json.dumps(doc).encode()


class Producer:
    """A producer and a reader of one hub, over real HTTP."""

    def __init__(self, server: ServerProcess) -> None:
        self.url = server.url

    def post(self, world: str, body: bytes, stage: str, token: str = TOKEN) -> int:
        headers = {"authorization": f"Bearer {token}", "x-actor": "gateway", "x-stage": stage}
        response = httpx.post(
            f"{self.url}/risk-hub/worlds/{world}/snapshots",
            content=body,
            headers={**headers, "content-type": "application/json"},
            timeout=10,
        )
        return response.status_code

    def get(self, path: str, **params: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {READ_TOKEN}"}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=10)


def play_the_scenario(hub: Producer) -> float:
    """Every kind of write an operator should hear of, before any worker runs; returns when the
    short-lived snapshot had been stored (monotonic clock). The worlds: w-exp (expires before a
    worker sees it), w1 (a duplicate and a version conflict), w2, w-live (breaches the live
    limit), w-doom (a worker always fails: DLQ), w-blob (its blob will go missing)."""
    assert hub.post("w-exp", snapshot("short-lived", ttl_s=1), "paper") == 201
    stored_short_lived = time.monotonic()
    assert hub.post("w1", snapshot("v1"), "paper") == 201
    assert hub.post("w2", snapshot("v1"), "backtest") == 201
    assert hub.post("w-live", snapshot("v1"), "live") == 201
    assert hub.post("w-doom", snapshot("doomed-1"), "paper") == 201
    returns = {"strategy_a": [0.011, -0.004, 0.003], "strategy_b": [0.007, -0.003, 0.002]}
    assert hub.post("w-blob", snapshot("v1", realized_returns=returns), "paper") == 201
    # A retry of the same bytes is deduplicated; other content under a stored version is a 409.
    same = snapshot("v2")
    assert hub.post("w1", same, "paper") == 201
    assert hub.post("w1", same, "paper") == 200
    assert hub.post("w1", snapshot("v2", weights={"strategy_a": 0.5, "strategy_b": 0.5}), "paper") == 409
    assert hub.post("w1", snapshot("v3"), "paper", token="not-a-token") == 401
    for _ in range(3):  # the cache serves what the writes put there
        assert hub.get("/risk-hub/worlds/w1/snapshots/latest", stage="paper").status_code == 200
    return stored_short_lived


def test_alerts_fire_and_every_dashboard_query_answers_on_a_real_prometheus(
    server_factory: Callable[..., ServerProcess],
    worker_process: Callable[[dict[str, str]], WorkerProcess],
    prometheus_factory: Callable[..., PrometheusService],
    production: Production,
    kafka: KafkaService,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    topic = f"policy-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka.bootstrap, topic, 1))
    asyncio.run(create_topic(kafka.bootstrap, f"{topic}.dlq", 1))
    limits = tmp_path / "limits.toml"
    limits.write_text(LIMITS)
    env = {
        **production.env(),
        "RISKHUB_CONTROLBUS_BROKERS": kafka.bootstrap,
        "RISKHUB_CONTROLBUS_TOPIC": topic,
        "RISKHUB_DLQ_TOPIC": f"{topic}.dlq",
        "RISKHUB_CONSUMER_GROUP": f"group-{uuid.uuid4().hex[:8]}",
        "RISKHUB_CONSUMER_SESSION_TIMEOUT_MS": "2000",
        "RISKHUB_CONSUMER_HEARTBEAT_INTERVAL_MS": "300",
        "RISKHUB_RETRY_BACKOFF_SEC": "0.01",
        "RISKHUB_LIMITS_FILE": str(limits),
        "RISKHUB_WORKERS": "riskhub.risk.workers:DEFAULT_WORKERS,doomed_worker:DOOMED",
        "RISKHUB_INLINE_COV_THRESHOLD": "64",  # the hub offloads the sample's parts to S3
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    server = server_factory(**env)
    hub = Producer(server)
    worker = worker_process(env)
    prometheus = prometheus_factory(
        {
            "riskhub": [server.url.removeprefix("http://")],
            "riskhub-worker": [f"127.0.0.1:{worker.metrics_port}"],
        }
    )

    stored_short_lived = play_the_scenario(hub)
    time.sleep(max(0.0, stored_short_lived + 1.1 - time.monotonic()))  # ttl 1 s: expired by now
    worker.start()

    def worker_done() -> bool:
        try:
            seen = scrape(worker.metrics_url)
        except httpx.HTTPError:
            return False
        breaches = sample(
            seen, "risk_hub_limit_breaches_total", world_id="w-live", stage="live", metric="var_99"
        )
        return (
            breaches == 1
            and sample(seen, "risk_hub_snapshot_dlq_total", world_id="w-doom", stage="paper") == 1
            and sample(seen, "risk_hub_snapshot_expired_total", world_id="w-exp", stage="paper") == 1
            and sample(seen, "risk_hub_snapshot_processed_total", world_id="w-blob", stage="paper") == 1
        )

    wait_for(worker_done, 40, lambda: f"worker log:\n{log_tail(worker.log_path)}")
    # Now that the worker has read it, w-blob's returns go missing from S3: an expand is a 502.
    ref = hub.get("/risk-hub/worlds/w-blob/snapshots/latest").json()["realized_returns_ref"]
    bucket, _, key = ref.removeprefix("s3://").partition("/")
    boto3.client("s3", **production.s3.client_kwargs()).delete_object(Bucket=bucket, Key=key)
    assert hub.get("/risk-hub/worlds/w-blob/snapshots/latest", expand="true").status_code == 502

    expected = {
        ("RiskHubDeadLetters", frozenset({("world_id", "w-doom"), ("stage", "paper")})),
        ("RiskHubConsumerFailures", frozenset({("world_id", "w-doom"), ("stage", "paper")})),
        ("RiskHubSnapshotsExpired", frozenset({("world_id", "w-exp"), ("stage", "paper")})),
        (
            "RiskHubLiveLimitBreach",
            frozenset({("world_id", "w-live"), ("stage", "live"), ("metric", "var_99")}),
        ),
        ("RiskHubBlobStoreErrors", frozenset({("operation", "get"), ("kind", "missing")})),
    }
    wait_for(
        lambda: expected <= firing_alerts(prometheus),
        20,
        lambda: f"firing {sorted(firing_alerts(prometheus))}",
    )
    assert firing_alerts(prometheus) == expected  # nothing else crossed a threshold

    def empty_queries() -> list[str]:
        return [
            f"{title}: {filled_in(expr)}"
            for title, expr in dashboard_queries()
            if not prometheus_api(prometheus, "query", query=filled_in(expr))["result"]
        ]

    wait_for(lambda: not empty_queries(), 15, lambda: "queries without data:\n" + "\n".join(empty_queries()))
    offered = {
        "world": {"w1", "w2", "w-live", "w-doom", "w-blob", "w-exp"},
        "stage": {"paper", "backtest", "live"},
    }
    for variable in dashboard()["templating"]["list"][1:]:
        match = LABEL_VALUES.match(variable["definition"])
        assert match is not None
        series = prometheus_api(prometheus, "series", **{"match[]": filled_in(match["selector"])})
        assert {s.get(match["label"]) for s in series} == offered[variable["name"]], variable["name"]
    print(f"\n{len(dashboard_queries())} dashboard queries answered, {len(expected)} alerts fired")
    print(f"in {time.monotonic() - started:.1f} s (services already up)")
