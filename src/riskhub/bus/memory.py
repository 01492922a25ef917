"""In-process ControlBus for the embedded hub: delivery is a direct call to the subscribers.

``send`` returns only after every subscriber handled the record, so the relay marks an outbox row
published only once the embedded consumer has fully handled its event (or dead-lettered it): a
crash in between re-delivers the event, never loses it. Records are not retained (memory must
not grow with history), except the last ``keep`` per topic for inspection (DLQ listing, tests).
"""

from __future__ import annotations

from collections import defaultdict, deque

from riskhub.bus import ReceivedRecord, RecordHandler
from riskhub.bus.codec import KafkaRecord


class MemoryBus:
    """Topics with subscribers and a small ring of recent records each."""

    def __init__(self, *, keep: int = 1000) -> None:
        self._subscribers: dict[str, list[RecordHandler]] = defaultdict(list)
        self._recent: dict[str, deque[ReceivedRecord]] = defaultdict(lambda: deque(maxlen=keep))
        self._next_offset: dict[str, int] = defaultdict(int)

    def subscribe(self, topic: str, handler: RecordHandler) -> None:
        """Call ``handler`` for every record sent to ``topic`` from now on."""
        self._subscribers[topic].append(handler)

    async def send(self, topic: str, record: KafkaRecord) -> None:
        """Deliver to every subscriber; raises if one of them does (nothing is acknowledged)."""
        offset = self._next_offset[topic]
        self._next_offset[topic] = offset + 1
        received = ReceivedRecord(topic, 0, offset, record.key, record.value, record.headers)
        self._recent[topic].append(received)
        for handler in self._subscribers[topic]:
            await handler(received)

    def recent(self, topic: str) -> list[ReceivedRecord]:
        """The last records sent to ``topic`` (at most ``keep``)."""
        return list(self._recent[topic])

    async def ping(self) -> None:
        """Always up."""

    async def close(self) -> None:
        """Nothing to release."""
