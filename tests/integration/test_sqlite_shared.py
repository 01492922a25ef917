"""Several processes on one SQLite file, as `riskhub serve --workers N` runs them."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

from riskhub.store.sqlite import SqliteStore

PROCESSES = 6
ROUNDS = 15  # before migrations were re-checked under the write lock, one round in four failed


def open_and_close(path: Path, start: Any) -> None:
    async def run() -> None:
        store = SqliteStore(path)
        start.wait()  # every process opens the new file at the same moment
        await store.open()
        await store.close()

    asyncio.run(run())


def test_processes_opening_a_new_file_at_once_all_start_and_migrate_it_once(tmp_path: Path) -> None:
    fork = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        path = tmp_path / f"round-{round_}" / "riskhub.sqlite3"
        start = fork.Barrier(PROCESSES)
        processes = [fork.Process(target=open_and_close, args=(path, start)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=30)
        assert [process.exitcode for process in processes] == [0] * PROCESSES, f"round {round_}"
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
        assert versions == sorted(set(versions)) and len(versions) >= 3
