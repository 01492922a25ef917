"""Charging py-spy samples to the hub's steps (pure: no process, no I/O).

A sample is one stack, root first, as py-spy's raw format writes it (``frame;frame;... count``,
each frame ``function (path:line)``). Its *step* is the innermost frame any step rule matches (so
canonical JSON called by the risk worker is still canonical JSON); its *phase* is the innermost
frame a phase rule matches (the relay, the consumer and the risk workers run as tasks of the same
event loop as the HTTP requests).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
OTHER = "other"
EVENT_LOOP = "event loop, threads, between tasks"


@dataclass(frozen=True)
class Rule:
    """A label and what a frame must have to earn it: one of ``functions`` (any, when empty) in
    a file whose path contains one of ``paths`` (any, when empty)."""

    label: str
    paths: tuple[str, ...] = ()
    functions: frozenset[str] = frozenset()

    def matches(self, function: str, path: str) -> bool:
        """True when the frame ``function (path)`` is one of this rule's."""
        if self.functions and function not in self.functions:
            return False
        return not self.paths or any(fragment in path for fragment in self.paths)


PHASES = (
    # Starlette's BaseHTTPMiddleware runs the app below it in a task of its own: no uvicorn frame.
    Rule("HTTP request", ("uvicorn/protocols/", "starlette/", "fastapi/")),
    Rule("relay (outbox -> bus)", ("riskhub/bus/relay.py",)),
    Rule("consumer (decode, dedupe, outcome)", ("riskhub/bus/consumer.py",)),
    Rule("risk workers", ("riskhub/risk/workers.py",)),
)

CANONICAL = frozenset({"canonical_json", "_respell_tiny_floats", "_reference"})
STEPS = (
    Rule("canonical JSON (orjson + float respelling)", ("contract/canonical.py",), CANONICAL),
    Rule(
        "JSON parse (orjson, big-integer scan)",
        ("contract/canonical.py",),
        frozenset({"loads_exact", "_may_hold_big_integer", "_reject_non_finite"}),
    ),
    Rule("duplicate keys and depth", ("contract/shape.py",)),
    Rule("hash digest", ("contract/hashing.py",), frozenset({"digest"})),
    Rule("weights, covariance, returns, stress checks", ("contract/numbers.py",)),
    Rule("other contract rules", ("riskhub/contract/",)),
    Rule("json.loads (stdlib)", ("json/decoder.py", "json/__init__.py")),
    Rule("store (SQLite / PostgreSQL)", ("riskhub/store/", "asyncpg/", "sqlite3/")),
    Rule("cache (in-process / Redis)", ("riskhub/cache.py", "redis/")),
    Rule("metrics", ("riskhub/metrics.py", "prometheus_client/")),
    Rule("logging", ("logging/", "riskhub/logs.py")),
    Rule("event codec (CloudEvents)", ("riskhub/bus/codec.py", "riskhub/bus/json_format.py", "cloudevents/")),
    Rule(
        "risk analytics (numpy)",
        ("riskhub/risk/analytics.py", "riskhub/risk/history.py", "riskhub/risk/stress.py", "numpy/"),
    ),
    Rule("risk limits and results", ("riskhub/risk/",)),
    Rule("hub write path (record, event)", ("riskhub/hub.py", "riskhub/events.py", "riskhub/model.py")),
    Rule("route (auth, body read, receipt)", ("riskhub/api/",)),
    Rule("bus (relay, consumer, dedupe)", ("riskhub/bus/",)),
    Rule("FastAPI / Starlette / pydantic", ("fastapi/", "starlette/", "pydantic/")),
    Rule("uvicorn (HTTP parsing, transport)", ("uvicorn/", "httptools/", "h11/")),
    Rule("asyncio", ("asyncio/",)),
)


@dataclass(frozen=True)
class Sample:
    """One stack (root first, as ``(function, path)``) seen ``count`` times."""

    frames: tuple[tuple[str, str], ...]
    count: int


def parse_raw(text: str) -> list[Sample]:
    """py-spy's ``--format raw`` output as samples (lines it cannot read are skipped)."""
    samples = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for frame in stack.split(";"):
            match = FRAME.match(frame)
            frames.append((match["function"], match["path"]) if match else (frame, ""))
        samples.append(Sample(tuple(frames), int(count)))
    return samples


def innermost(frames: Sequence[tuple[str, str]], rules: Iterable[Rule], default: str) -> str:
    """The label of the first rule matching the innermost frame that any rule matches."""
    rules = tuple(rules)
    for function, path in reversed(frames):
        for rule in rules:
            if rule.matches(function, path):
                return rule.label
    return default


def charge(samples: Iterable[Sample]) -> Counter[tuple[str, str]]:
    """Sample counts by (phase, step)."""
    counts: Counter[tuple[str, str]] = Counter()
    for sample in samples:
        phase = innermost(sample.frames, PHASES, EVENT_LOOP)
        counts[phase, innermost(sample.frames, STEPS, OTHER)] += sample.count
    return counts


def unexplained(samples: Iterable[Sample], top: int = 5) -> list[tuple[str, int]]:
    """The most frequent innermost frames of samples no step rule matched."""
    leaves: Counter[str] = Counter()
    for sample in samples:
        if innermost(sample.frames, STEPS, OTHER) == OTHER and sample.frames:
            function, path = sample.frames[-1]
            leaves[f"{function} ({path})"] += sample.count
    return leaves.most_common(top)
