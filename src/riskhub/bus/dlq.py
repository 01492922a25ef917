"""The dead-letter topic, read back and replayed (``riskhub dlq list|replay``)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from riskhub.bus import Publisher
from riskhub.bus.codec import KafkaRecord, decode_record
from riskhub.bus.kafka import read_topic
from riskhub.errors import UndecodableEvent
from riskhub.events import SNAPSHOT_UPDATED_DLQ

CONTENT_TYPE_HEADER = "content-type"


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One dead-lettered record and why it failed."""

    id: str
    key: bytes | None
    error_type: str
    error_message: str
    attempts: int
    topic: str
    partition: int
    offset: int
    correlation_id: str | None
    original_event: dict[str, Any] | None
    original_value: bytes | None

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly view for listings."""
        event = self.original_event or {}
        data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
        return {
            "id": self.id,
            "origin": f"{self.topic}/{self.partition}@{self.offset}",
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "event_id": event.get("id"),
            "world_id": data.get("world_id"),
            "version": data.get("version"),
            "correlation_id": self.correlation_id,
        }


async def read_dlq(brokers: str, dlq_topic: str) -> list[DlqEntry]:
    """Every DLQ event currently on the topic, oldest first per partition (no consumer group)."""
    records = await read_topic(brokers, dlq_topic)
    entries = (_entry(r.value, list(r.headers or ()), r.key) for r in records)
    return [entry for entry in entries if entry]


def _entry(value: bytes | None, headers: list[tuple[str, bytes]], key: bytes | None) -> DlqEntry | None:
    try:
        event = decode_record(value, headers, key)
    except UndecodableEvent:
        return None
    if event.type != SNAPSHOT_UPDATED_DLQ:
        return None
    data = event.data
    raw = data.get("original_value")
    if isinstance(raw, str):
        raw_bytes = base64.b64decode(raw) if data.get("original_value_encoding") == "base64" else raw.encode()
    else:
        raw_bytes = None
    return DlqEntry(
        id=event.id,
        key=key,
        error_type=str(data.get("error_type")),
        error_message=str(data.get("error_message")),
        attempts=int(data.get("attempts", 0)),
        topic=str(data.get("topic")),
        partition=int(data.get("partition", -1)),
        offset=int(data.get("offset", -1)),
        correlation_id=event.correlation_id,
        original_event=data.get("original_event"),
        original_value=raw_bytes,
    )


async def replay(publisher: Publisher, entries: list[DlqEntry]) -> int:
    """Republish each entry's original record once, to its original topic, as it was received
    (same CloudEvent id and idempotency key, so the consumer's dedupe still applies)."""
    sent = 0
    for entry in entries:
        record = original_record(entry)
        if record is not None:
            await publisher.send(entry.topic, record)
            sent += 1
    return sent


def original_record(entry: DlqEntry) -> KafkaRecord | None:
    """The original record: the decoded envelope re-serialised, or the raw bytes as they were."""
    headers = [(CONTENT_TYPE_HEADER, b"application/cloudevents+json")]
    if entry.original_event is not None:
        envelope = {k: v for k, v in entry.original_event.items() if k != "partitionkey"}
        return KafkaRecord(key=entry.key, value=orjson.dumps(envelope), headers=headers)
    if entry.original_value is not None:
        return KafkaRecord(key=entry.key, value=entry.original_value, headers=headers)
    return None
