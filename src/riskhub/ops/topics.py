"""The hub's two topics (the ControlBus topic and its DLQ): what they need, creating them, and
judging an existing one. ``riskhub topics create`` and ``riskhub doctor`` share the judgement.

What the hub needs of a topic:
* ``max.message.bytes`` >= the largest event: ``max_event_bytes`` of data plus its envelope; a
  DLQ event wraps the original event in one more envelope;
* ``retention.ms`` of at least a day (or -1), so a stopped worker catches up without a gap;
* ``cleanup.policy`` ``delete``: compaction would keep only the newest event of each world;
* as many replicas as the cluster allows, up to three (the relay produces with ``acks=all``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from riskhub.bus.kafka_admin import KafkaAdmin, TopicLayout
from riskhub.config import (
    EVENT_ENVELOPE_BYTES,
    MIN_TOPIC_RETENTION_MS,
    TOPIC_REPLICATION_FACTOR,
    Settings,
)
from riskhub.errors import BrokerUnavailable
from riskhub.ops.checklist import State, Verdict, verdict, worst

CHECKED_CONFIGS = ("retention.ms", "max.message.bytes", "cleanup.policy")
_DURATION = re.compile(r"(?P<number>-?\d+)\s*(?P<unit>ms|s|m|h|d)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_retention(text: str) -> int:
    """``7d``, ``36h``, ``90m``, ``3600s``, ``600000ms`` or plain milliseconds; ``-1`` or
    ``forever`` keep events forever. Returns milliseconds."""
    if text.strip().lower() in ("-1", "forever"):
        return -1
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match["number"]) <= 0:
        raise ValueError(f"--retention: {text!r} is not a duration such as 7d, 36h, 90m or 600000ms")
    return int(match["number"]) * _UNIT_MS[match["unit"] or "ms"]


def format_ms(value: int) -> str:
    """``7d`` / ``36h`` / ``1500ms``: a retention as an operator writes it."""
    if value < 0:
        return "forever"
    for unit in ("d", "h", "m", "s"):
        if value % _UNIT_MS[unit] == 0 and value >= _UNIT_MS[unit]:
            return f"{value // _UNIT_MS[unit]}{unit}"
    return f"{value}ms"


def required_message_bytes(max_event_bytes: int, *, dlq: bool) -> int:
    """The ``max.message.bytes`` a topic needs for the largest event the hub sends to it."""
    return max_event_bytes + EVENT_ENVELOPE_BYTES * (2 if dlq else 1)


def dlq_topic_name(settings: Settings) -> str:
    """The DLQ topic: ``RISKHUB_DLQ_TOPIC``, else the runbook's ``${controlbus_topic}.dlq``."""
    return settings.dlq_topic or f"{settings.controlbus_topic}.dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the hub needs, with the settings ``topics create`` gives it."""

    name: str
    partitions: int
    replication_factor: int | None  # None: as many as the cluster allows, up to three
    retention_ms: int
    max_message_bytes: int

    def configs(self) -> dict[str, str]:
        """Topic configs at creation."""
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
        }


def hub_topics(
    settings: Settings, *, partitions: int, replication_factor: int | None, retention_ms: int
) -> list[TopicSpec]:
    """The ControlBus topic and its DLQ topic, sized for ``max_event_bytes``."""
    return [
        TopicSpec(
            name,
            partitions,
            replication_factor,
            retention_ms,
            required_message_bytes(settings.max_event_bytes, dlq=dlq),
        )
        for name, dlq in ((settings.controlbus_topic, False), (dlq_topic_name(settings), True))
    ]


def wanted_replicas(brokers: int) -> int:
    """Replicas a topic should have on a cluster of ``brokers`` brokers."""
    return max(1, min(TOPIC_REPLICATION_FACTOR, brokers))


@dataclass(frozen=True, slots=True)
class TopicInspection:
    """An existing topic: its layout, the configs the broker reported, and the verdict."""

    layout: TopicLayout
    configs: dict[str, str] | None  # None: the broker did not answer DescribeConfigs
    state: State
    detail: str


async def inspect_topic(admin: KafkaAdmin, name: str, *, needed_bytes: int, brokers: int) -> TopicInspection:
    """Judge an existing topic against what the hub needs."""
    layout = await admin.topic_layout(name)
    try:
        configs: dict[str, str] | None = await admin.topic_configs(name)
        unanswered = None
    except BrokerUnavailable as exc:
        configs, unanswered = None, exc.message
    state, detail = judge_topic(layout, configs, needed_bytes=needed_bytes, brokers=brokers)
    if unanswered is not None:
        state, detail = (
            worst([state, State.WARN]),
            f"{detail}; configs not checked, the broker did not answer: {unanswered}",
        )
    return TopicInspection(layout, configs, state, detail)


def judge_topic(
    layout: TopicLayout, configs: dict[str, str] | None, *, needed_bytes: int, brokers: int
) -> Verdict:
    """The verdict on a topic's layout and the configs its broker reported (None: unknown)."""
    facts = f"{layout.partitions} partitions, replication {layout.replication_factor}"
    for key in CHECKED_CONFIGS:
        if configs is not None and key in configs:
            shown = (
                f"{configs[key]} ({format_ms(int(configs[key]))})" if key == "retention.ms" else configs[key]
            )
            facts += f", {key} {shown}"
    problems = _layout_problems(layout, brokers)
    if configs is not None:
        problems += _config_problems(configs, needed_bytes)
    return verdict(facts, problems)


def _layout_problems(layout: TopicLayout, brokers: int) -> list[Verdict]:
    wanted = wanted_replicas(brokers)
    if layout.replication_factor < wanted:
        return [
            (
                State.WARN,
                f"{layout.replication_factor} replica(s) on a {brokers}-broker cluster, want {wanted}",
            )
        ]
    return []


def _config_problems(configs: dict[str, str], needed_bytes: int) -> list[Verdict]:
    unreported = [key for key in CHECKED_CONFIGS if key not in configs]
    found = [
        (State.WARN, f"the broker did not report {', '.join(unreported)}") if unreported else None,
        _retention_problem(configs.get("retention.ms")),
        _size_problem(configs.get("max.message.bytes"), needed_bytes),
        _cleanup_problem(configs.get("cleanup.policy")),
    ]
    return [problem for problem in found if problem is not None]


def _retention_problem(value: str | None) -> Verdict | None:
    if value is None or not 0 <= int(value) < MIN_TOPIC_RETENTION_MS:
        return None
    why = "events may be deleted before a stopped worker reads them"
    return (
        State.WARN,
        f"retention.ms {format_ms(int(value))} is under {format_ms(MIN_TOPIC_RETENTION_MS)}: {why}",
    )


def _size_problem(value: str | None, needed_bytes: int) -> Verdict | None:
    if value is None or int(value) >= needed_bytes:
        return None
    why = "the largest events cannot be published"
    return (
        State.FAIL,
        f"max.message.bytes {value} < {needed_bytes} (RISKHUB_MAX_EVENT_BYTES + envelope): {why}",
    )


def _cleanup_problem(value: str | None) -> Verdict | None:
    if value is None or "compact" not in value:
        return None
    return State.FAIL, f"cleanup.policy {value}: compaction keeps only the newest event of each world"


@dataclass(frozen=True, slots=True)
class TopicOutcome:
    """What ``topics create`` did with one topic."""

    spec: TopicSpec
    created: bool
    inspection: TopicInspection
    notes: list[str]

    def text(self) -> str:
        """``policy: created (...)`` or ``policy: exists, left unchanged (...)``."""
        done = "created" if self.created else "exists, left unchanged"
        return f"{self.spec.name}: {done} ({self.inspection.detail})"


async def create_topics(admin: KafkaAdmin, specs: Sequence[TopicSpec]) -> list[TopicOutcome]:
    """Create each topic that does not exist; an existing one is inspected, never changed."""
    brokers = len(await admin.broker_ids())
    existing = await admin.topic_names()
    outcomes = []
    for spec in specs:
        replicas = spec.replication_factor or wanted_replicas(brokers)
        created = spec.name not in existing and await admin.create_topic(
            spec.name, partitions=spec.partitions, replication_factor=replicas, configs=spec.configs()
        )
        inspection = await inspect_topic(
            admin, spec.name, needed_bytes=spec.max_message_bytes, brokers=brokers
        )
        notes = [] if created else _differences(spec, replicas, inspection)
        outcomes.append(TopicOutcome(spec, created, inspection, notes))
    return outcomes


def _differences(spec: TopicSpec, replicas: int, inspection: TopicInspection) -> list[str]:
    """What an existing topic has other than what this run asked (reported, not changed)."""
    layout, configs = inspection.layout, inspection.configs or {}
    retention = _int_or_none(configs.get("retention.ms"))
    asked: list[tuple[str, int, int | None, Callable[[int], str]]] = [
        ("partitions", spec.partitions, layout.partitions, str),
        ("replication factor", replicas, layout.replication_factor, str),
        ("retention.ms", spec.retention_ms, retention, lambda ms: f"{ms} ({format_ms(ms)})"),
    ]
    return [
        f"asked for {name} {shown(want)}, the topic has {shown(have)} (left unchanged)"
        for name, want, have, shown in asked
        if have is not None and have != want
    ]


def _int_or_none(value: str | None) -> int | None:
    return None if value is None else int(value)
