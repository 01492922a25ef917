"""In-process ControlBus for the embedded hub: delivery is a direct call to the subscribers.

A send returns only after every subscriber handled the records, so the relay marks an outbox row
published only once the embedded consumer has fully handled its event (or dead-lettered it): a
crash in between re-delivers the event, never loses it. A relay pass reaches the subscribers as
one batch. Records are not retained (memory must not grow with history), except the last
``keep`` per topic for inspection (DLQ listing, tests).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence

from riskhub.bus import BatchHandler, ReceivedRecord
from riskhub.bus.codec import KafkaRecord
from riskhub.errors import NotDelivered


class MemoryBus:
    """Topics with subscribers and a small ring of recent records each."""

    def __init__(self, *, keep: int = 1000) -> None:
        self._subscribers: dict[str, list[BatchHandler]] = defaultdict(list)
        self._recent: dict[str, deque[ReceivedRecord]] = defaultdict(lambda: deque(maxlen=keep))
        self._next_offset: dict[str, int] = defaultdict(int)

    def subscribe(self, topic: str, handler: BatchHandler) -> None:
        """Feed every record sent to ``topic`` from now on to ``handler``."""
        self._subscribers[topic].append(handler)

    async def send(self, topic: str, record: KafkaRecord) -> None:
        """Deliver to every subscriber; raises if one of them did not handle it."""
        (result,) = await self.send_in_order(topic, [record])
        if result is not None:
            raise result

    async def send_in_order(self, topic: str, records: Sequence[KafkaRecord]) -> list[BaseException | None]:
        """Deliver as one batch; per record None if every subscriber handled it."""
        received = [self._received(topic, record) for record in records]
        handled = [True] * len(received)
        for handler in self._subscribers[topic]:
            handled = [a and b for a, b in zip(handled, await handler(received), strict=True)]
        return [
            None if ok else NotDelivered(f"{topic}@{record.offset} not handled")
            for ok, record in zip(handled, received, strict=True)
        ]

    def _received(self, topic: str, record: KafkaRecord) -> ReceivedRecord:
        offset = self._next_offset[topic]
        self._next_offset[topic] = offset + 1
        received = ReceivedRecord(topic, 0, offset, record.key, record.value, record.headers)
        self._recent[topic].append(received)
        return received

    def recent(self, topic: str) -> list[ReceivedRecord]:
        """The last records sent to ``topic`` (at most ``keep``)."""
        return list(self._recent[topic])

    async def ping(self) -> None:
        """Always up."""

    async def close(self) -> None:
        """Nothing to release."""
