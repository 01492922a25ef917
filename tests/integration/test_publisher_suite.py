"""One publisher suite, run against the in-process ``MemoryBus`` and against ``KafkaPublisher`` on
the session's real Kafka-protocol broker (Tansu), each test on a fresh topic.

The ``Publisher`` contract (``riskhub.bus``): ``send`` returns once the bus acknowledged the record;
``send_in_order`` returns per record None (acknowledged) or why not, and per key what is
acknowledged is a prefix of the key's records, in order (on Kafka a key's records of one call share
one record batch, appended whole or not at all); ``ping`` raises unless the bus answers.

"Read back" is what a subscriber sees: on the memory bus the records its subscriber handled, on
Kafka the records on the topic, read partition by partition from the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from riskhub.bus import ReceivedRecord
from riskhub.bus.codec import KafkaRecord
from riskhub.bus.kafka import KafkaPublisher
from riskhub.bus.memory import MemoryBus

from services import KafkaService, create_topic, free_port

try:  # where the refactor in progress puts it; riskhub.bus before
    from riskhub.errors import NotSentYet
except ImportError:  # pragma: no cover - the layout before the refactor
    from riskhub.bus import NotSentYet  # type: ignore[attr-defined,no-redef]

PARTITIONS = 3
HEADERS = [("content-type", b"application/cloudevents+json"), ("x-test", b"\x00\xff")]
# The broker is frozen for the outage tests; a send must give up well within the test's patience.
REQUEST_TIMEOUT_MS = 2_000
PATIENCE_S = 30.0
T = TypeVar("T")


@dataclass(frozen=True)
class ReadBack:
    """A record as a subscriber of the topic sees it."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class Publisher(Protocol):
    async def send(self, topic: str, record: KafkaRecord) -> None: ...

    async def send_in_order(
        self, topic: str, records: Sequence[KafkaRecord]
    ) -> list[BaseException | None]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class BusUnderTest(Protocol):
    """What the suite needs of each implementation."""

    name: str
    publisher: Publisher

    async def new_topic(self) -> str:
        """A topic no other test uses."""

    async def read_back(self, topic: str, *, at_least: int = 0) -> list[ReadBack]:
        """Every record on ``topic``, in order per partition (waiting for ``at_least`` of them)."""

    async def acknowledged_now(self, topic: str) -> bool:
        """Whether anything on ``topic`` is visible to a reader right now, without waiting."""

    def outage(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The bus cannot take records inside the block (the broker frozen, the subscriber failing)."""


class MemoryUnderTest:
    """``MemoryBus`` with one subscriber per topic that records what it handled."""

    name = "memory"

    def __init__(self) -> None:
        self.bus = MemoryBus()
        self.publisher: Publisher = self.bus
        self._handled: dict[str, list[ReceivedRecord]] = defaultdict(list)
        self._down = False

    async def new_topic(self) -> str:
        topic = f"pub-{uuid.uuid4().hex[:10]}"

        async def handle(records: Sequence[ReceivedRecord]) -> list[bool]:
            if self._down:  # e.g. the embedded consumer's store is unavailable
                return [False] * len(records)
            self._handled[topic].extend(records)
            return [True] * len(records)

        self.bus.subscribe(topic, handle)
        return topic

    async def read_back(self, topic: str, *, at_least: int = 0) -> list[ReadBack]:
        return [ReadBack(r.key, r.value or b"", list(r.headers)) for r in self._handled[topic]]

    async def acknowledged_now(self, topic: str) -> bool:
        return bool(self._handled[topic])

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        self._down = True
        try:
            yield
        finally:
            self._down = False


class KafkaUnderTest:
    """``KafkaPublisher`` on the session broker; topics of ``PARTITIONS`` partitions."""

    name = "kafka"

    def __init__(self, kafka: KafkaService) -> None:
        self.kafka = kafka
        self.publisher: Publisher = KafkaPublisher(
            kafka.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, client_id="publisher-suite"
        )

    async def new_topic(self) -> str:
        topic = f"pub-{uuid.uuid4().hex[:10]}"
        await create_topic(self.kafka.bootstrap, topic, PARTITIONS)
        return topic

    @contextlib.asynccontextmanager
    async def _reader(self, topic: str) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        await consumer.start()
        try:
            await consumer.topics()  # metadata, so that partitions_for_topic knows the topic
            numbers = sorted(consumer.partitions_for_topic(topic) or ())
            partitions = [TopicPartition(topic, p) for p in numbers]
            assert partitions, f"topic {topic} has no partitions"
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            yield consumer, partitions
        finally:
            await consumer.stop()

    async def read_back(self, topic: str, *, at_least: int = 0) -> list[ReadBack]:
        got: dict[TopicPartition, list[Any]] = defaultdict(list)
        async with self._reader(topic) as (consumer, partitions):
            deadline = asyncio.get_running_loop().time() + PATIENCE_S
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    got[tp].extend(records)
                total = sum(map(len, got.values()))
                if not batches and total >= at_least:
                    break  # quiet, and everything we waited for is there
                if asyncio.get_running_loop().time() > deadline:
                    break  # the caller's assertions say what is missing
        return [
            ReadBack(r.key, r.value, [(k, bytes(v)) for k, v in r.headers or ()])
            for tp in partitions
            for r in got[tp]
        ]

    async def acknowledged_now(self, topic: str) -> bool:
        async with self._reader(topic) as (consumer, partitions):
            return any(offset > 0 for offset in (await consumer.end_offsets(partitions)).values())

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        self.kafka.pause()  # SIGSTOP: connections hang, data is kept
        try:
            yield
        finally:
            self.kafka.resume()


@pytest.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[BusUnderTest]:
    impl: BusUnderTest
    if request.param == "memory":
        impl = MemoryUnderTest()
    else:
        impl = KafkaUnderTest(request.getfixturevalue("kafka"))
    yield impl
    await impl.publisher.close()


# --- helpers ---------------------------------------------------------------------------------------


async def bounded(awaitable: Awaitable[T]) -> T:
    """Await, failing the test (not raising into it) if no answer comes within ``PATIENCE_S``:
    a publisher must fail, not hang. Timeouts of the publisher itself propagate as they are."""
    limit = asyncio.timeout(PATIENCE_S)
    try:
        async with limit:
            return await awaitable
    except TimeoutError:
        if limit.expired():
            pytest.fail(f"no answer within {PATIENCE_S}s")
        raise


async def raised(awaitable: Awaitable[object]) -> Exception | None:
    """The exception ``awaitable`` raised (a refusal, as the ``Publisher`` contract allows), or None."""
    try:
        await bounded(awaitable)
    except Exception as exc:
        return exc
    return None


def record(key: str, value: str, size: int = 0) -> KafkaRecord:
    payload = value.encode() + (b"." * max(size - len(value), 0))
    return KafkaRecord(key=key.encode(), value=payload, headers=list(HEADERS))


def interleaved(keys: Sequence[str], per_key: int, tag: str = "") -> list[KafkaRecord]:
    """``per_key`` records of each key, the keys taking turns (a0 b0 c0 a1 b1 c1 ...)."""
    return [record(key, f"{key}:{tag}{i}") for i in range(per_key) for key in keys]


def per_key(records: Sequence[KafkaRecord] | Sequence[ReadBack]) -> dict[bytes | None, list[bytes]]:
    """Values by key, in the order given."""
    values: dict[bytes | None, list[bytes]] = defaultdict(list)
    for item in records:
        values[item.key].append(item.value)
    return dict(values)


async def send_in_order(
    publisher: Publisher, topic: str, records: list[KafkaRecord]
) -> list[BaseException | None]:
    """``send_in_order``; a raise counts as "nothing of the call acknowledged", which is how the
    outbox relay reads it."""
    try:
        results = await bounded(publisher.send_in_order(topic, records))
    except Exception as exc:
        return [exc] * len(records)
    assert len(results) == len(records)
    return results


def assert_whole_copies(
    seen: list[bytes], before: list[bytes], unacknowledged: list[bytes], after: list[bytes]
) -> None:
    """``seen`` is ``before``, then whole copies (zero or more) of ``unacknowledged``, then
    ``after``: the unacknowledged batch of a key may have landed, but only whole and in order."""
    assert seen[: len(before)] == before, seen
    assert seen[len(seen) - len(after) :] == after, seen
    middle = seen[len(before) : len(seen) - len(after)]
    copies, rest = divmod(len(middle), len(unacknowledged))
    assert rest == 0 and middle == unacknowledged * copies, f"a partial batch of a key landed: {middle}"


# --- the suite -------------------------------------------------------------------------------------


async def test_ping_answers_while_the_bus_is_up(bus: BusUnderTest) -> None:
    assert await raised(bus.publisher.ping()) is None


async def test_send_returns_only_once_the_record_is_acknowledged(bus: BusUnderTest) -> None:
    topic = await bus.new_topic()
    sent = record("w1", "first")
    await bounded(bus.publisher.send(topic, sent))
    assert await bus.acknowledged_now(topic), "send returned before the record was on the bus"
    assert await bus.read_back(topic, at_least=1) == [ReadBack(sent.key, sent.value, sent.headers)]


async def test_sends_of_one_key_are_read_back_in_send_order(bus: BusUnderTest) -> None:
    topic = await bus.new_topic()
    records = interleaved(["w1", "w2", "w3", "w4"], 5)
    for item in records:
        await bounded(bus.publisher.send(topic, item))
    seen = await bus.read_back(topic, at_least=len(records))
    assert len(seen) == len(records), "lost or doubled records"
    assert per_key(seen) == per_key(records)


async def test_send_in_order_acknowledges_a_batch_and_keeps_each_keys_order(bus: BusUnderTest) -> None:
    topic = await bus.new_topic()
    records = interleaved([f"w{i}" for i in range(8)], 6)
    assert await send_in_order(bus.publisher, topic, records) == [None] * len(records)
    seen = await bus.read_back(topic, at_least=len(records))
    assert len(seen) == len(records), "lost or doubled records"
    assert per_key(seen) == per_key(records)
    assert all(item.headers == HEADERS for item in seen)


async def test_consecutive_batches_of_a_key_follow_each_other_in_order(bus: BusUnderTest) -> None:
    topic = await bus.new_topic()
    first, second = interleaved(["w1", "w2"], 3, "a"), interleaved(["w1", "w2"], 3, "b")
    assert await send_in_order(bus.publisher, topic, first) == [None] * len(first)
    assert await send_in_order(bus.publisher, topic, second) == [None] * len(second)
    seen = await bus.read_back(topic, at_least=len(first) + len(second))
    assert per_key(seen) == per_key(first + second)


async def test_send_in_order_of_nothing_acknowledges_nothing(bus: BusUnderTest) -> None:
    topic = await bus.new_topic()
    assert await send_in_order(bus.publisher, topic, []) == []
    assert await bus.read_back(topic) == []


async def test_what_is_acknowledged_per_key_is_a_prefix_and_the_rest_is_held_back(bus: BusUnderTest) -> None:
    """Six 100 KiB records of one key do not fit one Kafka record batch: the publisher may hold
    the tail back (``NotSentYet``), but never acknowledges a record after an unacknowledged one
    of its key, and always makes progress."""
    topic = await bus.new_topic()
    big = [record("big", f"big:{i}", size=100 * 1024) for i in range(6)]
    records = [*big[:3], record("small", "small:0"), *big[3:]]
    results = await send_in_order(bus.publisher, topic, records)
    outcomes: dict[bytes | None, list[BaseException | None]] = defaultdict(list)
    for item, result in zip(records, results, strict=True):
        outcomes[item.key].append(result)
        assert result is None or isinstance(result, NotSentYet), f"the bus is up: {result!r}"
    acknowledged: dict[bytes | None, list[bytes]] = {}
    for key, values in per_key(records).items():
        count = outcomes[key].count(None)
        assert outcomes[key][:count] == [None] * count, f"{key!r}: not a prefix: {outcomes[key]}"
        assert count >= 1, f"{key!r}: no progress, not even its first record was sent"
        acknowledged[key] = values[:count]
    assert acknowledged[b"small"] == [b"small:0"]
    seen = await bus.read_back(topic, at_least=sum(map(len, acknowledged.values())))
    assert per_key(seen) == acknowledged


async def test_a_batch_sent_while_the_bus_is_down_is_not_acknowledged_and_never_lands_in_part(
    bus: BusUnderTest,
) -> None:
    keys = ["w1", "w2", "w3", "w4"]
    topic = await bus.new_topic()
    before = interleaved(keys, 2, "before")
    assert await send_in_order(bus.publisher, topic, before) == [None] * len(before)
    during = interleaved(keys, 3, "during")
    async with bus.outage():
        results = await send_in_order(bus.publisher, topic, during)
    assert all(result is not None for result in results), f"acknowledged during the outage: {results}"
    after = interleaved(keys, 2, "after")
    assert await send_in_order(bus.publisher, topic, after) == [None] * len(after), "no recovery"
    seen = per_key(await bus.read_back(topic, at_least=len(before) + len(after)))
    for key in (k.encode() for k in keys):
        parts = [per_key(batch)[key] for batch in (before, during, after)]
        assert_whole_copies(seen[key], *parts)


async def test_send_while_the_bus_is_down_raises_instead_of_returning(bus: BusUnderTest) -> None:
    topic = await bus.new_topic()
    await bounded(bus.publisher.send(topic, record("w1", "warm-up")))
    async with bus.outage():
        refusal = await raised(bus.publisher.send(topic, record("w1", "lost")))
    assert refusal is not None, "send returned although nothing could acknowledge the record"
    await bounded(bus.publisher.send(topic, record("w1", "recovered")))
    values = per_key(await bus.read_back(topic, at_least=2))[b"w1"]
    assert values[0] == b"warm-up" and values[-1] == b"recovered"


# --- Kafka only: a broker that cannot be reached at all ------------------------------------------


async def test_kafka_publisher_to_an_unreachable_broker_acknowledges_nothing_and_ping_raises() -> None:
    publisher = KafkaPublisher(f"127.0.0.1:{free_port()}", request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        results = await send_in_order(publisher, "nowhere", interleaved(["w1", "w2"], 2))
        assert len(results) == 4 and all(result is not None for result in results)
        assert await raised(publisher.ping()) is not None
        assert await raised(publisher.send("nowhere", record("w1", "x"))) is not None
    finally:
        await publisher.close()
