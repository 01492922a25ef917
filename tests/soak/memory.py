"""Resident memory of every process of the soak, sampled from ``/proc`` over the run.

A process is measured by its RSS; PostgreSQL, a postmaster with a backend per connection, by the
PSS summed over them all (their RSS would count the shared buffers once per backend).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (PostgreSQL forks a backend per connection)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _kib(path: str, field_name: str) -> int:
    """A ``<field>: <n> kB`` line of a /proc file (0 if the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_kib(pid: int) -> int:
    """``VmRSS`` of one process in KiB."""
    return _kib(f"/proc/{pid}/status", "VmRSS")


def tree_pss_kib(pid: int) -> int:
    """PSS summed over a process and its descendants, in KiB."""
    return sum(_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in process_tree(pid))


@dataclass
class Memory:
    """One process's RSS in KiB: the first sample, the last, the largest."""

    start: int = 0
    end: int = 0
    peak: int = 0


@dataclass
class RssTracker:
    """Samples the RSS of named processes (``pids()`` is asked each time: restarts change them)."""

    pids: Callable[[], Mapping[str, int | None]]
    trees: frozenset[str] = frozenset({"postgres"})  # measured as PSS over the process tree
    interval_s: float = 5.0
    samples: dict[str, Memory] = field(default_factory=dict)

    def sample(self) -> None:
        """Record the current RSS of every named process that is running."""
        for name, pid in {**self.pids(), "soak runner": os.getpid()}.items():
            if pid is None:
                continue
            kib = tree_pss_kib(pid) if name in self.trees else rss_kib(pid)
            if kib == 0:
                continue
            memory = self.samples.setdefault(name, Memory(start=kib))
            memory.end = kib
            memory.peak = max(memory.peak, kib)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            await asyncio.to_thread(self.sample)
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                continue
