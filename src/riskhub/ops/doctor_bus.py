"""The doctor's ControlBus lines: ``brokers``, ``topic``, ``dlq_topic``, ``consumer_group``.

Where the broker cannot answer a request (Tansu, the test broker, has no DescribeConfigs of named
keys, and keeps a group's members listed after they left), the line says so as a warning.
"""

from __future__ import annotations

from riskhub.bus.kafka_admin import KafkaAdmin, PartitionLag
from riskhub.config import CONSUMER_LAG_WARN, Settings
from riskhub.errors import BrokerUnavailable
from riskhub.ops.checklist import Finding, State, Verdict, guarded, not_checked, verdict
from riskhub.ops.topics import dlq_topic_name, inspect_topic, required_message_bytes

BUS_LINES = ("topic", "dlq_topic", "consumer_group")
CREATE = "run `riskhub topics create`"


async def bus_findings(settings: Settings, timeout_s: float) -> list[Finding]:
    """Every ControlBus line; with no brokers configured, what the in-process bus means."""
    brokers = settings.controlbus_brokers
    if brokers is None:
        return in_process_findings(settings)
    try:
        async with KafkaAdmin(brokers, timeout_s=timeout_s) as admin:
            return await _kafka_findings(admin, settings, timeout_s)
    except BrokerUnavailable as exc:
        failed = Finding("brokers", State.FAIL, f"{brokers} do not answer: {exc.message}")
        return [failed, *(not_checked(line, "brokers unreachable") for line in BUS_LINES)]


def in_process_findings(settings: Settings) -> list[Finding]:
    """Lines of a hub without Kafka (embedded: events never leave the ``serve`` process)."""
    why = "in-process bus"
    consumer = (
        Finding("consumer_group", State.OK, "the in-process consumer runs inside `riskhub serve`")
        if settings.run_consumer
        else Finding(
            "consumer_group", State.WARN, "RISKHUB_RUN_CONSUMER=false and no brokers: nothing consumes"
        )
    )
    return [
        Finding(
            "brokers", State.WARN, "RISKHUB_CONTROLBUS_BROKERS is not set: in-process bus (embedded only)"
        ),
        not_checked("topic", why),
        not_checked("dlq_topic", why),
        consumer,
    ]


async def _kafka_findings(admin: KafkaAdmin, settings: Settings, timeout_s: float) -> list[Finding]:
    brokers = await admin.broker_ids()
    findings = [
        Finding("brokers", State.OK, f"{settings.controlbus_brokers}: {len(brokers)} broker(s) answer")
    ]
    existing = await admin.topic_names()
    topic, dlq = settings.controlbus_topic, dlq_topic_name(settings)
    main_needs = required_message_bytes(settings.max_event_bytes, dlq=False)
    findings.append(
        await guarded("topic", _topic(admin, topic, existing, main_needs, len(brokers)), timeout_s)
    )
    dlq_needs = required_message_bytes(settings.max_event_bytes, dlq=True)
    findings.append(
        await guarded("dlq_topic", _dlq(admin, settings, dlq, existing, dlq_needs, len(brokers)), timeout_s)
    )
    group = _group(admin, settings.consumer_group, topic, existing)
    findings.append(await guarded("consumer_group", group, timeout_s))
    return findings


async def _topic(
    admin: KafkaAdmin, name: str, existing: set[str], needed_bytes: int, brokers: int
) -> Verdict:
    if name not in existing:
        return State.FAIL, f"{name!r} does not exist: {CREATE}"
    inspection = await inspect_topic(admin, name, needed_bytes=needed_bytes, brokers=brokers)
    return inspection.state, f"{name}: {inspection.detail}"


async def _dlq(
    admin: KafkaAdmin, settings: Settings, name: str, existing: set[str], needed_bytes: int, brokers: int
) -> Verdict:
    state, detail = await _topic(admin, name, existing, needed_bytes, brokers)
    if settings.dlq_topic is not None:
        return state, detail
    why = f"RISKHUB_DLQ_TOPIC is not set: a record that keeps failing blocks its partition (set it to {name})"
    return (State.FAIL if state is State.FAIL else State.WARN), f"{why}; {detail}"


async def _group(admin: KafkaAdmin, group_id: str, topic: str, existing: set[str]) -> Verdict:
    group = await admin.group_members(group_id)
    facts = f"{group_id}: {group.members} live member(s), state {group.state}"
    problems: list[Verdict] = []
    if group.members == 0:
        problems.append((State.FAIL, "no live member: start `riskhub worker` (one per partition at most)"))
    lag, lag_problem = await _lag(admin, group_id, topic, existing)
    if lag_problem is not None:
        problems.append(lag_problem)
    return verdict(f"{facts}, {lag}", problems)


async def _lag(
    admin: KafkaAdmin, group_id: str, topic: str, existing: set[str]
) -> tuple[str, Verdict | None]:
    if topic not in existing:
        return "lag unknown", None  # the topic line fails already
    try:
        layout = await admin.topic_layout(topic)
        lags = await admin.group_lag(group_id, topic, layout.partitions)
    except BrokerUnavailable as exc:
        return "lag unknown", (State.WARN, f"lag not checked, the broker did not answer: {exc.message}")
    total = sum(p.lag for p in lags)
    text = f"lag {total} ({_per_partition(lags)})"
    if total > CONSUMER_LAG_WARN:
        return text, (State.WARN, f"lag over {CONSUMER_LAG_WARN}: the workers fall behind (add replicas?)")
    return text, None


def _per_partition(lags: list[PartitionLag]) -> str:
    return ", ".join(f"p{p.partition} {p.lag}" for p in lags)
