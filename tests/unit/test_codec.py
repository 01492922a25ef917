"""Unit tests of the ControlBus CloudEvents codec (no I/O)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat

from riskhub.bus.codec import (
    CONTENT_TYPE,
    Event,
    KafkaRecord,
    SerializedJson,
    decode_record,
    dlq_event_id,
    encode_dlq_event,
    encode_event,
)
from riskhub.errors import UndecodableEvent
from riskhub.events import SNAPSHOT_UPDATED as EVENT_TYPE
from riskhub.events import SNAPSHOT_UPDATED_DLQ as DLQ_EVENT_TYPE

WORLD_ID = "world-42"
EVENT_ID = "evt-7f3a"
CORRELATION_ID = "corr-123"
EVENT_TIME = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
DLQ_TIME = datetime(2024, 5, 6, 8, 0, 0, tzinfo=UTC)


def snapshot_data() -> dict[str, Any]:
    return {
        "world_id": WORLD_ID,
        "portfolio_id": "pf-1",
        "as_of": "2024-05-06T07:00:00Z",
        "metrics": {"var_95": 1234.5, "es_97_5": 2345.25, "correlation_id": "nested-untouched"},
        "positions": [{"instrument": "AAPL", "qty": 10}, {"instrument": "MSFT", "qty": -3}],
        "event_version": 3,
        "idempotency_key": "idem-abc",
    }


def encode_snapshot(
    correlation_id: str | None = CORRELATION_ID, data: dict[str, Any] | None = None
) -> KafkaRecord:
    return encode_event(
        event_id=EVENT_ID,
        event_type=EVENT_TYPE,
        source="riskhub",
        data=snapshot_data() if data is None else data,
        key=WORLD_ID,
        time=EVENT_TIME,
        correlation_id=correlation_id,
    )


def envelope(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": EVENT_ID,
        "source": "riskhub",
        "type": EVENT_TYPE,
        "time": "2024-05-06T07:08:09.123456Z",
        "datacontenttype": "application/json",
        "data": snapshot_data(),
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def structured(value: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    return json.dumps(value).encode(), [("content-type", CONTENT_TYPE.encode())]


def dlq_for(*, original_value: bytes | None, original: Event | None, **overrides: Any) -> KafkaRecord:
    kwargs: dict[str, Any] = {
        "original_value": original_value,
        "original": original,
        "error": UndecodableEvent("boom"),
        "error_type": None,
        "attempts": 3,
        "topic": "controlbus.risk",
        "partition": 2,
        "offset": 1017,
        "source": "riskhub-consumer",
        "key": WORLD_ID.encode(),
        "now": DLQ_TIME,
    }
    kwargs.update(overrides)
    return encode_dlq_event(**kwargs)


# ------------------------------------------------------------------------ encoding


def test_encoded_record_is_structured_cloudevent_keyed_by_world_id() -> None:
    record = encode_snapshot()

    assert record.key == WORLD_ID.encode("utf-8")
    assert record.headers == [("content-type", b"application/cloudevents+json")]
    assert json.loads(record.value) == {
        "specversion": "1.0",
        "id": EVENT_ID,
        "source": "riskhub",
        "type": EVENT_TYPE,
        "time": "2024-05-06T07:08:09.123456Z",
        "datacontenttype": "application/json",
        "correlationid": CORRELATION_ID,
        "data": snapshot_data(),
    }


def test_encoding_is_byte_for_byte_deterministic() -> None:
    assert encode_snapshot() == encode_snapshot()


def test_encoded_time_is_normalised_to_utc() -> None:
    plus_two = EVENT_TIME.astimezone(timezone(timedelta(hours=2)))
    record = encode_event(
        event_id=EVENT_ID,
        event_type=EVENT_TYPE,
        source="riskhub",
        data={},
        key=WORLD_ID,
        time=plus_two,
    )

    assert record == encode_snapshot(correlation_id=None, data={})
    assert json.loads(record.value)["time"] == "2024-05-06T07:08:09.123456Z"


def test_naive_event_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_event(
            event_id=EVENT_ID,
            event_type=EVENT_TYPE,
            source="riskhub",
            data={},
            key=WORLD_ID,
            time=datetime(2024, 5, 6, 7, 8, 9),
        )


def test_correlation_extension_is_omitted_without_correlation_id() -> None:
    record = encode_snapshot(correlation_id=None)

    assert "correlationid" not in json.loads(record.value)
    assert decode_record(record.value, record.headers, record.key).correlation_id is None


def test_encoded_record_parses_with_sdk_kafka_binding() -> None:
    record = encode_snapshot()
    message = kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)

    for parse in (kafka.from_kafka, kafka.from_structured):
        ce = parse(message, JSONFormat())
        assert ce.get_specversion() == "1.0"
        assert ce.get_id() == EVENT_ID
        assert ce.get_type() == EVENT_TYPE
        assert ce.get_source() == "riskhub"
        assert ce.get_time() == EVENT_TIME
        assert ce.get_datacontenttype() == "application/json"
        assert ce.get_extension("correlationid") == CORRELATION_ID
        assert ce.get_extension("partitionkey") == WORLD_ID
        assert ce.get_data() == snapshot_data()


# ------------------------------------------------------------------------ decoding


def test_round_trip_preserves_every_documented_attribute() -> None:
    record = encode_snapshot()

    event = decode_record(record.value, record.headers, record.key)

    assert event.id == EVENT_ID
    assert event.type == EVENT_TYPE
    assert event.source == "riskhub"
    assert event.time == EVENT_TIME
    assert event.time is not None and event.time.tzinfo is UTC
    assert event.correlation_id == CORRELATION_ID
    assert event.data == snapshot_data()
    assert event.attributes == {
        "specversion": "1.0",
        "id": EVENT_ID,
        "source": "riskhub",
        "type": EVENT_TYPE,
        "time": EVENT_TIME,
        "datacontenttype": "application/json",
        "correlationid": CORRELATION_ID,
        "partitionkey": WORLD_ID,
    }


def test_decoding_without_key_has_no_partitionkey() -> None:
    record = encode_snapshot()

    event = decode_record(record.value, record.headers)

    assert "partitionkey" not in event.attributes
    assert event.data == snapshot_data()


def test_other_event_types_on_the_topic_decode_for_filtering() -> None:
    value, headers = structured(envelope(type="portfolio_deleted", data={"portfolio_id": "pf"}))

    event = decode_record(value, headers)

    assert event.type == "portfolio_deleted"
    assert event.type != EVENT_TYPE


def test_other_event_types_may_carry_any_data() -> None:
    value, headers = structured(envelope(type="policy_updated", data="plain text"))
    event = decode_record(value, headers)
    assert event.type == "policy_updated"
    assert event.data == "plain text"


def test_legacy_correlation_id_is_renamed() -> None:
    value, headers = structured(envelope(correlation_id="legacy-1"))

    event = decode_record(value, headers)

    assert event.correlation_id == "legacy-1"
    assert event.attributes["correlationid"] == "legacy-1"
    assert "correlation_id" not in event.attributes


def test_correlationid_wins_when_legacy_name_is_also_present() -> None:
    value, headers = structured(envelope(correlationid="new", correlation_id="old"))

    event = decode_record(value, headers)

    assert event.correlation_id == "new"
    assert "correlation_id" not in event.attributes


def test_correlation_id_inside_data_is_left_alone() -> None:
    value, headers = structured(envelope())

    event = decode_record(value, headers)

    assert event.correlation_id is None
    assert event.data["metrics"]["correlation_id"] == "nested-untouched"


def test_structured_record_labelled_application_json_is_accepted() -> None:
    value, _ = structured(envelope(correlationid="c"))

    event = decode_record(value, [("content-type", b"application/json")])

    assert event.id == EVENT_ID
    assert event.correlation_id == "c"


def test_binary_mode_record_is_accepted() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", EVENT_ID.encode()),
        ("ce_source", b"riskhub"),
        ("ce_type", EVENT_TYPE.encode()),
        ("ce_time", b"2024-05-06T07:08:09.123456Z"),
        ("ce_correlation_id", b"legacy-bin"),
        ("content-type", b"application/json"),
    ]

    event = decode_record(json.dumps(snapshot_data()).encode(), headers, WORLD_ID.encode())

    assert event.id == EVENT_ID
    assert event.type == EVENT_TYPE
    assert event.time == EVENT_TIME
    assert event.correlation_id == "legacy-bin"
    assert event.data == snapshot_data()
    assert event.attributes["partitionkey"] == WORLD_ID


def test_missing_time_decodes_as_none_instead_of_now() -> None:
    value, headers = structured(envelope(time=None))

    event = decode_record(value, headers)

    assert event.time is None
    assert "time" not in event.attributes


def test_non_utf8_key_does_not_make_record_undecodable() -> None:
    record = encode_snapshot()

    event = decode_record(record.value, record.headers, b"\xff\xfe")

    assert event.id == EVENT_ID
    assert "partitionkey" not in event.attributes


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"\x00\xffnot json", id="garbage-bytes"),
        pytest.param(b"", id="empty-value"),
        pytest.param(b"{not json", id="broken-json"),
        pytest.param(b"[1, 2, 3]", id="json-array"),
        pytest.param(b'"just a string"', id="json-string"),
    ],
)
def test_garbage_value_is_undecodable(value: bytes) -> None:
    with pytest.raises(UndecodableEvent, match="invalid CloudEvent record"):
        decode_record(value, [("content-type", CONTENT_TYPE.encode())])


def test_null_value_is_undecodable() -> None:
    with pytest.raises(UndecodableEvent, match="null"):
        decode_record(None, [("content-type", CONTENT_TYPE.encode())])


@pytest.mark.parametrize(
    ("missing", "reason"),
    [
        ("id", "id"),  # the SDK alone would invent a uuid4
        ("specversion", "specversion"),  # the SDK alone would assume 1.0
        ("source", "source"),
        ("type", "type"),
    ],
)
def test_envelope_missing_required_attribute_is_undecodable(missing: str, reason: str) -> None:
    value, headers = structured(envelope(**{missing: None}))

    with pytest.raises(UndecodableEvent, match=reason):
        decode_record(value, headers)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({"specversion": "0.3"}, "specversion", id="wrong-specversion"),
        pytest.param({"time": "yesterday"}, "invalid CloudEvent record", id="unparseable-time"),
        pytest.param({"time": 5}, "invalid CloudEvent record", id="time-not-a-string"),
        pytest.param({"time": "2024-05-06T07:08:09"}, "timezone", id="naive-time"),
        pytest.param({"Bad_Ext": "x"}, "Bad_Ext", id="invalid-extension-name"),
        pytest.param({"data": "a string"}, "JSON object", id="data-not-an-object"),
        pytest.param({"data": None}, "JSON object", id="no-data"),
    ],
)
def test_invalid_envelope_is_undecodable(overrides: dict[str, Any], reason: str) -> None:
    value, headers = structured(envelope(**overrides))

    with pytest.raises(UndecodableEvent, match=reason):
        decode_record(value, headers)


# ------------------------------------------------------------------------ DLQ


def test_dlq_event_carries_original_event_error_and_position() -> None:
    record = encode_snapshot()
    original = decode_record(record.value, record.headers, record.key)

    dlq = dlq_for(
        original_value=record.value,
        original=original,
        error=RuntimeError("db down"),
        error_type=None,
        attempts=5,
    )

    assert dlq.key == WORLD_ID.encode()
    assert dlq.headers == [("content-type", b"application/cloudevents+json")]
    event = decode_record(dlq.value, dlq.headers, dlq.key)
    assert event.type == DLQ_EVENT_TYPE
    assert event.source == "riskhub-consumer"
    assert event.time == DLQ_TIME
    assert event.id == dlq_event_id("controlbus.risk", 2, 1017)
    assert event.correlation_id == CORRELATION_ID
    assert event.data == {
        "original_decodable": True,
        "original_event": {
            "specversion": "1.0",
            "id": EVENT_ID,
            "source": "riskhub",
            "type": EVENT_TYPE,
            "time": "2024-05-06T07:08:09.123456Z",
            "datacontenttype": "application/json",
            "correlationid": CORRELATION_ID,
            "partitionkey": WORLD_ID,
            "data": snapshot_data(),
        },
        "original_value": None,
        "original_value_encoding": None,
        "error_type": "RuntimeError",
        "error_message": "db down",
        "attempts": 5,
        "topic": "controlbus.risk",
        "partition": 2,
        "offset": 1017,
    }


def test_dlq_original_event_reparses_as_the_same_event() -> None:
    record = encode_snapshot()
    original = decode_record(record.value, record.headers, record.key)

    dlq = decode_record(*_value_headers(dlq_for(original_value=record.value, original=original)))
    reparsed = decode_record(*structured(dlq.data["original_event"]), record.key)

    assert reparsed == original


def test_dlq_event_id_is_deterministic_from_topic_partition_offset() -> None:
    first = dlq_for(original_value=b"x", original=None, now=DLQ_TIME, attempts=1)
    resent = dlq_for(original_value=b"x", original=None, now=DLQ_TIME + timedelta(minutes=5), attempts=2)
    other_offset = dlq_for(original_value=b"x", original=None, offset=1018)

    def event_id(record: KafkaRecord) -> str:
        return decode_record(record.value, record.headers).id

    assert event_id(first) == event_id(resent) == "dlq:controlbus.risk:2:1017"
    assert event_id(other_offset) != event_id(first)
    same_inputs = dlq_for(original_value=b"x", original=None, now=DLQ_TIME, attempts=1)
    assert same_inputs == first  # byte-for-byte


def test_explicit_error_type_and_string_error_are_recorded() -> None:
    dlq = dlq_for(original_value=b"x", original=None, error="handler gave up", error_type="Timeout")

    data = decode_record(dlq.value, dlq.headers).data

    assert data["error_type"] == "Timeout"
    assert data["error_message"] == "handler gave up"


def test_undecodable_utf8_original_is_preserved_as_text() -> None:
    raw = b'{"specversion": "1.0", "source": "x", "correlation_id": "legacy-9"}'
    with pytest.raises(UndecodableEvent) as caught:
        decode_record(raw, [("content-type", CONTENT_TYPE.encode())])

    dlq = dlq_for(original_value=raw, original=None, error=caught.value)
    event = decode_record(dlq.value, dlq.headers)

    assert event.data["original_decodable"] is False
    assert event.data["original_event"] is None
    assert event.data["original_value"] == raw.decode()
    assert event.data["original_value_encoding"] == "utf-8"
    assert event.data["error_type"] == "UndecodableEvent"
    assert "id" in event.data["error_message"]
    assert event.correlation_id == "legacy-9"  # salvaged from the raw JSON


def test_undecodable_binary_original_is_preserved_as_base64() -> None:
    raw = b"\x00\xff\xfe garbage"

    dlq = dlq_for(original_value=raw, original=None)
    event = decode_record(dlq.value, dlq.headers)

    assert event.data["original_decodable"] is False
    assert event.data["original_value_encoding"] == "base64"
    assert base64.b64decode(event.data["original_value"]) == raw
    assert event.correlation_id is None


def test_null_original_value_is_recorded_as_null() -> None:
    dlq = dlq_for(original_value=None, original=None)
    data = decode_record(dlq.value, dlq.headers).data

    assert data["original_decodable"] is False
    assert data["original_value"] is None
    assert data["original_value_encoding"] is None


def _value_headers(record: KafkaRecord) -> tuple[bytes, list[tuple[str, bytes]]]:
    return record.value, record.headers


def test_serialized_json_data_is_written_verbatim_and_decodes_like_a_dict() -> None:
    data = snapshot_data()
    common = {"event_id": EVENT_ID, "event_type": EVENT_TYPE, "source": "riskhub", "key": "w1"}
    time = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    from_dict = encode_event(data=data, time=time, **common)
    raw = json.dumps(data).encode()  # any valid JSON text of the object
    from_bytes = encode_event(data=SerializedJson(raw), time=time, **common)
    assert raw in from_bytes.value
    assert decode_record(from_bytes.value, from_bytes.headers, from_bytes.key).data == data
    assert decode_record(from_dict.value, from_dict.headers, from_dict.key).data == data
