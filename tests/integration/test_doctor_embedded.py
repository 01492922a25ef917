"""`riskhub doctor` on an embedded hub (SQLite, files, in-process bus): what works is ok, what is
embedded-only is a warning (exit 1), and a data dir no hub ever used fails its database line."""

from __future__ import annotations

from pathlib import Path

from riskhub.config import Settings
from riskhub.ops.checklist import State
from riskhub.ops.doctor import run_doctor
from riskhub.store.sqlite import SqliteStore

from conftest import READ_TOKEN, TOKEN


def embedded(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", tokens=[TOKEN], read_tokens=[READ_TOKEN], allowed_networks="127.0.0.0/8"
    )


async def test_an_embedded_hub_is_ok_where_it_can_be_and_warns_where_it_is_embedded_only(
    tmp_path: Path,
) -> None:
    settings = embedded(tmp_path)
    store = SqliteStore(settings.data_dir / "riskhub.sqlite3")
    await store.open()  # what `riskhub serve` did
    await store.close()
    report = await run_doctor(settings, timeout_s=5)
    assert {f.line: f.state for f in report.findings} == {
        "database": State.WARN,
        "schema": State.OK,
        "outbox": State.OK,
        "cache": State.OK,
        "blob_store": State.OK,
        "brokers": State.WARN,
        "topic": State.WARN,
        "dlq_topic": State.WARN,
        "consumer_group": State.OK,
        "tokens": State.OK,
        "network_allowlist": State.OK,
    }
    details = {f.line: f.detail for f in report.findings}
    assert "one hub process only" in details["database"]
    assert details["topic"] == "not checked: in-process bus"
    assert report.exit_code == 1
    assert list((settings.data_dir / "blobs").iterdir()) == []  # the probe object is gone


async def test_a_data_dir_no_hub_used_fails_the_database_line_and_creates_no_database(tmp_path: Path) -> None:
    settings = embedded(tmp_path)
    report = await run_doctor(settings, timeout_s=5)
    states = {f.line: f.state for f in report.findings}
    assert (states["database"], states["schema"], states["outbox"]) == (State.FAIL, State.WARN, State.WARN)
    assert "no SQLite file at" in report.findings[0].detail
    assert not (settings.data_dir / "riskhub.sqlite3").exists()
    assert report.exit_code == 2
