"""The deployment checklist's pure parts: judging a topic, retention durations, the report's
exit code and JSON, redacted URLs, and a check that hangs or crashes."""

from __future__ import annotations

import asyncio
import json

import pytest

from riskhub.bus.kafka_admin import PartitionLag, TopicLayout
from riskhub.errors import BrokerUnavailable
from riskhub.ops.checklist import Finding, Report, State, Verdict, guarded, redacted
from riskhub.ops.topics import format_ms, judge_topic, parse_retention, required_message_bytes

NEEDED = required_message_bytes(1_000_000, dlq=False)
GOOD = {"retention.ms": "604800000", "max.message.bytes": str(NEEDED), "cleanup.policy": "delete"}


def judged(configs: dict[str, str] | None = None, *, replicas: int = 3, brokers: int = 3) -> Verdict:
    layout = TopicLayout("policy", 6, replicas)
    return judge_topic(layout, GOOD if configs is None else configs, needed_bytes=NEEDED, brokers=brokers)


def test_a_topic_as_topics_create_makes_it_is_ok() -> None:
    assert judged() == (
        State.OK,
        "6 partitions, replication 3, retention.ms 604800000 (7d), max.message.bytes 1008192,"
        " cleanup.policy delete",
    )


@pytest.mark.parametrize(
    ("changes", "state", "text"),
    [
        ({"max.message.bytes": "1048588"}, State.OK, ""),
        ({"max.message.bytes": "524288"}, State.FAIL, "max.message.bytes 524288 < 1008192"),
        ({"cleanup.policy": "compact"}, State.FAIL, "compaction keeps only the newest event of each world"),
        ({"cleanup.policy": "delete,compact"}, State.FAIL, "cleanup.policy delete,compact"),
        ({"retention.ms": "3600000"}, State.WARN, "retention.ms 1h is under 1d"),
        ({"retention.ms": "-1"}, State.OK, ""),
    ],
    ids=["kafka-default-size", "too-small", "compacted", "delete-and-compact", "an-hour", "forever"],
)
def test_a_topics_configs_are_judged_against_what_the_hub_needs(
    changes: dict[str, str], state: State, text: str
) -> None:
    found_state, detail = judged({**GOOD, **changes})
    assert found_state is state and text in detail


def test_configs_the_broker_does_not_report_are_a_warning() -> None:
    state, detail = judged({})
    assert state is State.WARN
    assert detail.endswith("the broker did not report retention.ms, max.message.bytes, cleanup.policy")


def test_fewer_replicas_than_the_cluster_allows_is_a_warning() -> None:
    assert judged(replicas=1, brokers=5)[0] is State.WARN
    assert "1 replica(s) on a 5-broker cluster, want 3" in judged(replicas=1, brokers=5)[1]
    assert judged(replicas=1, brokers=1)[0] is State.OK  # a one-broker cluster can do no better
    assert judged(replicas=2, brokers=2)[0] is State.OK


def test_a_dlq_topic_needs_room_for_the_original_event_in_its_own_envelope() -> None:
    assert (
        required_message_bytes(1_000_000, dlq=True) > required_message_bytes(1_000_000, dlq=False) > 1_000_000
    )


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("7d", 604_800_000),
        ("36h", 129_600_000),
        ("90m", 5_400_000),
        ("45s", 45_000),
        ("1500", 1500),
        ("250ms", 250),
        ("forever", -1),
        ("-1", -1),
    ],
)
def test_retention_reads_as_operators_write_it(text: str, ms: int) -> None:
    assert parse_retention(text) == ms


@pytest.mark.parametrize("text", ["", "0", "7 days", "1w", "-5h"])
def test_a_retention_that_is_no_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--retention"):
        parse_retention(text)


def test_a_retention_is_shown_in_the_largest_whole_unit() -> None:
    assert [format_ms(v) for v in (604_800_000, 5_400_000, 1500, -1)] == ["7d", "90m", "1500ms", "forever"]


def test_lag_counts_from_the_commit_or_from_the_oldest_record_still_kept() -> None:
    assert PartitionLag(0, committed=40, start=0, end=100).lag == 60
    assert PartitionLag(0, committed=None, start=30, end=100).lag == 70
    assert PartitionLag(0, committed=10, start=30, end=100).lag == 70  # retention deleted 10..29
    assert PartitionLag(0, committed=100, start=0, end=60).lag == 0


def test_the_report_exits_with_its_most_serious_line() -> None:
    lines = [Finding("a", State.OK, "x"), Finding("b", State.WARN, "y")]
    assert Report(lines).exit_code == 1
    assert Report([*lines, Finding("c", State.FAIL, "z")]).exit_code == 2
    assert Report([lines[0]]).exit_code == 0
    assert Report(lines).summary() == "riskhub doctor: WARN (1 ok, 1 warn, 0 fail)"
    assert json.loads(Report(lines).to_json())["lines"][1] == {"line": "b", "state": "warn", "detail": "y"}


def test_urls_are_shown_without_their_password() -> None:
    assert redacted("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redacted("postgresql://hub:s3cret@db/riskhub") == "postgresql://hub:***@db/riskhub"
    assert redacted("postgresql://hub@db:5432/riskhub") == "postgresql://hub@db:5432/riskhub"


async def test_a_check_that_hangs_or_raises_fails_its_line_only() -> None:
    async def hangs() -> Verdict:
        await asyncio.sleep(10)
        return State.OK, "never"

    async def down() -> Verdict:
        raise BrokerUnavailable("kafka DescribeGroups: KafkaConnectionError: closed")

    async def crashes() -> Verdict:
        raise KeyError("brokers")

    assert await guarded("a", hangs(), 0.05) == Finding("a", State.FAIL, "no answer within 0.05 s")
    assert await guarded("b", down(), 1) == Finding(
        "b", State.FAIL, "kafka DescribeGroups: KafkaConnectionError: closed"
    )
    assert await guarded("c", crashes(), 1) == Finding("c", State.FAIL, "KeyError: 'brokers'")
