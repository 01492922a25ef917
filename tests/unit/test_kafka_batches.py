"""How the Kafka publisher packs a relay pass into record batches: a key's records never span
two batches (a batch is appended whole or not at all, so a key can never get a gap), and what
does not fit a key's batch is held back for the next pass."""

from __future__ import annotations

from aiokafka.producer.message_accumulator import BatchBuilder

from riskhub.bus.codec import KafkaRecord
from riskhub.bus.kafka import _by_key, _KeyBatches


def record(key: str, size: int = 100) -> KafkaRecord:
    return KafkaRecord(key=key.encode(), value=b"x" * size, headers=[("content-type", b"a")])


def batch_bytes_for(count: int) -> int:
    """The smallest batch size that holds ``count`` of our 100-byte records."""
    size = 64
    while True:
        probe = BatchBuilder(size, 0)
        r = record("a")
        fitted = 0
        while probe.append(key=r.key, value=r.value, timestamp=None, headers=r.headers) is not None:
            fitted += 1
        if fitted >= count:
            return size
        size += 8


THREE = batch_bytes_for(3)


def pack(records: list[KafkaRecord], batch_bytes: int, partition_of: dict[bytes, int]) -> _KeyBatches:
    batches = _KeyBatches(lambda: BatchBuilder(batch_bytes, 0))
    for key, indexed in _by_key(records).items():
        assert key is not None
        batches.add(partition_of[key], indexed)
    return batches


def test_each_key_sits_in_one_batch_in_order() -> None:
    records = [record(k) for k in "abcabcab"]
    batches = pack(records, THREE, {b"a": 0, b"b": 0, b"c": 1})
    layout = [(partition, indexes) for partition, _, indexes in batches.all()]
    # a's three records fill a batch, so b's start a fresh one on the same partition
    assert layout == [(0, [0, 3, 6]), (0, [1, 4, 7]), (1, [2, 5])]
    assert batches.held_back == []


def test_the_tail_of_a_key_that_overflows_its_batch_is_held_back() -> None:
    records = [record("a") for _ in range(6)] + [record("b")]
    batches = pack(records, THREE, {b"a": 0, b"b": 0})
    layout = [indexes for _, _, indexes in batches.all()]
    assert layout[0] == [0, 1, 2] and layout[1] == [6]
    assert batches.held_back == [3, 4, 5]  # later than a's sent records, never before them


def test_a_record_larger_than_a_batch_still_goes_alone() -> None:
    batches = pack([record("a", 5000), record("a")], THREE, {b"a": 2})
    assert [(p, i) for p, _, i in batches.all()] == [(2, [0])]
    assert batches.held_back == [1]
