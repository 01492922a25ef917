"""The ControlBus: CloudEvents codec, bus adapters (in-process, Kafka), outbox relay, consumer.

A bus adapter only moves records: ``Publisher.send`` returns once the bus acknowledged a record,
and a subscription feeds ``ReceivedRecord`` objects to the consumer, which does everything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from riskhub.bus.codec import KafkaRecord


@dataclass(frozen=True, slots=True)
class ReceivedRecord:
    """A record as delivered to a consumer, with its position."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


# Handles records in order; returns per record whether it was fully handled.
BatchHandler = Callable[[Sequence[ReceivedRecord]], Awaitable[list[bool]]]


class Publisher(Protocol):
    """Sends records; ``send`` returns after the bus acknowledged (acks=all on Kafka)."""

    async def send(self, topic: str, record: KafkaRecord) -> None:
        """Publish one record or raise."""

    async def send_in_order(self, topic: str, records: Sequence[KafkaRecord]) -> list[BaseException | None]:
        """Publish several records; per record None (acknowledged) or why not. Per key, what is
        acknowledged is a prefix of the key's records, in order: a record is never delivered
        after a failed earlier record of its key. ``NotSentYet`` marks records held back."""

    async def ping(self) -> None:
        """Raise unless the bus answers."""

    async def close(self) -> None:
        """Flush and release connections."""
