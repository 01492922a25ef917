"""Kafka administration for the operator tools (``riskhub topics create``, ``riskhub doctor``):
topics and their configs, the consumer group's members and lag, through aiokafka's admin client.

Not every Kafka-protocol broker answers every admin request: Tansu (the test broker) closes the
connection on DescribeConfigs of named keys and on OffsetFetch without partitions, reports only
the configs a topic was created with, and keeps a group's members listed after they left. So
requests stay the plainest that do the job, and any failure is ``BrokerUnavailable`` naming the
request, for the doctor to report as a line it could not check.

Metadata of one named topic creates it on brokers that auto-create topics (Tansu does, and so do
Kafka's defaults), so whether a topic exists is read from the list of all topics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from riskhub.errors import BrokerUnavailable, TopicRefused, translated

TOPIC_ALREADY_EXISTS = 36


@contextmanager
def _kafka_errors(request: str) -> Iterator[None]:
    """This adapter's one boundary: aiokafka's and the network's errors become
    ``BrokerUnavailable``, naming the request the broker did not answer."""
    with translated((KafkaError, asyncio.TimeoutError, OSError), BrokerUnavailable, f"kafka {request}"):
        yield


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """A topic's partitions and replicas, from cluster metadata."""

    name: str
    partitions: int
    replication_factor: int


@dataclass(frozen=True, slots=True)
class GroupMembers:
    """A consumer group as the coordinator describes it."""

    group_id: str
    state: str
    members: int


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far the group's committed offset is behind a partition's end."""

    partition: int
    committed: int | None  # None: the group never committed on this partition
    start: int  # the oldest offset still on the partition (retention deletes before it)
    end: int

    @property
    def lag(self) -> int:
        """Records the group has still to handle (from the start when it never committed)."""
        position = self.start if self.committed is None else max(self.committed, self.start)
        return max(self.end - position, 0)


class KafkaAdmin:
    """Admin requests to one cluster; ``async with`` opens and closes the connections."""

    def __init__(self, brokers: str, *, timeout_s: float) -> None:
        self._brokers = brokers
        self._timeout_ms = int(timeout_s * 1000)
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> KafkaAdmin:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._brokers, request_timeout_ms=self._timeout_ms)
        try:
            with _kafka_errors(f"at {self._brokers}"):
                await admin.start()
        except BaseException:
            await admin.close()
            raise
        self._admin = admin
        return self

    async def __aexit__(self, *_: object) -> None:
        admin, self._admin = self._admin, None
        offsets, self._offsets = self._offsets, None
        if offsets is not None:
            await offsets.stop()
        if admin is not None:
            await admin.close()

    def _client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise BrokerUnavailable("kafka: the admin client is not open")
        return self._admin

    async def broker_ids(self) -> list[int]:
        """The brokers of the cluster (Metadata)."""
        with _kafka_errors("Metadata"):
            cluster = await self._client().describe_cluster()
        return sorted(int(broker["node_id"]) for broker in cluster["brokers"])

    async def topic_names(self) -> set[str]:
        """Every topic (Metadata of all topics, which creates none)."""
        with _kafka_errors("Metadata"):
            return set(await self._client().list_topics())

    async def topic_layout(self, name: str) -> TopicLayout:
        """Partitions and replication of an existing topic (check ``topic_names`` first)."""
        with _kafka_errors("Metadata"):
            [topic] = await self._client().describe_topics([name])
        if topic["error_code"]:
            raise BrokerUnavailable(f"kafka Metadata of {name!r}: {for_code(topic['error_code']).__name__}")
        partitions = topic["partitions"]
        replicas = max((len(p["replicas"]) for p in partitions), default=0)
        return TopicLayout(name, len(partitions), replicas)

    async def topic_configs(self, name: str) -> dict[str, str]:
        """The topic's configs the broker reports (all of them on Kafka; on Tansu only those
        the topic was created with)."""
        with _kafka_errors("DescribeConfigs"):
            [response] = await self._client().describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)]
            )
        error_code, _message, _type, _name, entries = response.resources[0][:5]
        if error_code:
            raise BrokerUnavailable(f"kafka DescribeConfigs of {name!r}: {for_code(error_code).__name__}")
        return {str(entry[0]): str(entry[1]) for entry in entries if entry[1] is not None}

    async def create_topic(
        self, name: str, *, partitions: int, replication_factor: int, configs: Mapping[str, str]
    ) -> bool:
        """Create the topic; False if it already exists (left as it is). ``TopicRefused`` when
        the broker refuses it (e.g. a replication factor above its broker count)."""
        topic = NewTopic(name, partitions, replication_factor, topic_configs=dict(configs))
        with _kafka_errors("CreateTopics"):
            response = await self._client().create_topics([topic], timeout_ms=self._timeout_ms)
        for entry in response.topic_errors:
            code, message = entry[1], entry[2] if len(entry) > 2 else None
            if code == TOPIC_ALREADY_EXISTS:
                return False
            if code:
                raise TopicRefused(f"topic {name!r}: {for_code(code).__name__}: {message or 'refused'}")
        return True

    async def group_members(self, group_id: str) -> GroupMembers:
        """The group's state and live members (DescribeGroups)."""
        with _kafka_errors("DescribeGroups"):
            [response] = await self._client().describe_consumer_groups([group_id])
        group: Any = response.groups[0]
        error_code, state, members = group[0], group[2], group[5]
        if error_code:
            raise BrokerUnavailable(f"kafka DescribeGroups of {group_id!r}: {for_code(error_code).__name__}")
        return GroupMembers(group_id, str(state), len(members))

    async def group_lag(self, group_id: str, topic: str, partitions: int) -> list[PartitionLag]:
        """Per partition of ``topic``, the group's committed offset and the partition's end."""
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        with _kafka_errors("OffsetFetch"):
            committed = await self._client().list_consumer_group_offsets(group_id, partitions=tps)
        with _kafka_errors("ListOffsets"):
            offsets = await self._offsets_client()
            starts, ends = await offsets.beginning_offsets(tps), await offsets.end_offsets(tps)
        lags = []
        for tp in tps:
            mark = committed.get(tp)
            offset = mark.offset if mark is not None and mark.offset >= 0 else None
            lags.append(PartitionLag(tp.partition, offset, int(starts.get(tp, 0)), int(ends.get(tp, 0))))
        return lags

    async def _offsets_client(self) -> AIOKafkaConsumer:
        """A consumer outside any group, for end offsets (the admin client has no ListOffsets)."""
        if self._offsets is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._brokers, enable_auto_commit=False, request_timeout_ms=self._timeout_ms
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._offsets = consumer
        return self._offsets
