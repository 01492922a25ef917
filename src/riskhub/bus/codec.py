"""CloudEvents codec of the ControlBus (Kafka, structured JSON mode).

Every event on the bus is a CloudEvents 1.0 envelope in *structured* mode: the
Kafka record value is the JSON envelope, the record carries the header
``content-type: application/cloudevents+json`` and the Kafka key is the
``world_id`` (utf-8).  Several event types share a topic; consumers filter on
``Event.type``.

Envelopes are built and parsed with the CloudEvents SDK v2 API only
(``cloudevents.core.v1.event.CloudEvent``, ``cloudevents.core.formats.json.JSONFormat``
and ``cloudevents.core.bindings.kafka``).  SDK behaviours this module relies on or
works around:

* ``CloudEvent(...)`` silently *invents* ``specversion`` ("1.0"), ``id`` (uuid4)
  and ``time`` (now) when they are missing, including when decoding.  The
  decoder therefore hooks the SDK's ``event_factory`` (it receives the parsed
  attributes before the ``CloudEvent`` is built) to reject records without
  ``specversion``/``id`` and to remember whether ``time`` was really sent.
  The encoder always passes ``id`` and ``time`` itself.
* Extension attribute names must match ``^[a-z0-9]+$``: the correlation id is
  the extension ``correlationid``.  Older producers wrote ``correlation_id``;
  the same factory hook renames that top-level attribute (``correlationid``
  wins when both are present).  ``data`` has already been split off by then,
  so keys inside ``data`` are never touched.
* ``JSONFormat.write`` serialises with the stdlib ``json.dumps`` (no
  ``sort_keys``): attributes first, in the order we insert them, then
  ``data`` in the caller's key order; a UTC ``time`` is written as
  ``...Z``.  The same inputs (same ``data`` key order) give the same bytes.
* ``kafka.from_structured`` adds the Kafka key back as the ``partitionkey``
  extension, so ``Event.attributes`` contains ``partitionkey`` when a key was
  given.  The encoder does not write ``partitionkey`` into the envelope; it
  sets the Kafka key through ``key_mapper``.
* ``kafka.from_kafka`` picks binary mode when any header starts with ``ce_``
  (case-insensitive), otherwise structured mode; it does not look at
  ``content-type``.  So binary-mode records and structured records labelled
  ``application/json`` (as the old v1 SDK did) are both accepted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from cloudevents.core.bindings import kafka
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent

from riskhub.bus.json_format import OrjsonFormat, SerializedJson
from riskhub.errors import UndecodableEvent
from riskhub.events import SNAPSHOT_UPDATED, SNAPSHOT_UPDATED_DLQ

__all__ = [
    "CONTENT_TYPE",
    "Event",
    "KafkaRecord",
    "SerializedJson",
    "decode_record",
    "dlq_event_id",
    "encode_dlq_event",
    "encode_event",
]

CONTENT_TYPE: Final = "application/cloudevents+json"
DATA_CONTENT_TYPE: Final = "application/json"
SPECVERSION: Final = "1.0"

CORRELATION_ID_ATTR: Final = "correlationid"
LEGACY_CORRELATION_ID_ATTR: Final = "correlation_id"


_FORMAT: Final = OrjsonFormat()
# Attributes the SDK would silently fabricate if absent; a record must carry them.
_MUST_BE_SENT: Final = ("specversion", "id")
# Errors the SDK (or json/dateutil below it) raises on malformed input.
_DECODE_ERRORS: Final = (
    ValueError,  # includes JSONDecodeError, UnicodeDecodeError, dateutil parse errors
    TypeError,
    AttributeError,  # e.g. the JSON value is a list, not an object
    KeyError,
    OverflowError,
    BaseCloudEventException,  # CloudEventValidationError is not a ValueError
)


@dataclass(frozen=True)
class KafkaRecord:
    """What a producer sends: key, value and headers of one Kafka record."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Event:
    """A decoded event."""

    id: str
    type: str
    source: str
    time: datetime | None
    correlation_id: str | None
    data: Any  # a JSON object for risk_snapshot_updated(_dlq); as sent for other types
    attributes: dict[str, Any]
    """All attributes as decoded (``time`` is a datetime; includes ``partitionkey``
    when the record had a key)."""


# --------------------------------------------------------------------------- encoding


def encode_event(
    *,
    event_id: str,
    event_type: str,
    source: str,
    data: dict[str, Any] | SerializedJson,
    key: str,
    time: datetime,
    correlation_id: str | None = None,
) -> KafkaRecord:
    """Build a structured-mode CloudEvent record; the Kafka key is ``key`` (utf-8).

    ``time`` must be timezone-aware; it is converted to UTC.  The output is
    byte-for-byte deterministic for the same inputs (including ``data`` key order).
    """
    return _encode(
        event_id=event_id,
        event_type=event_type,
        source=source,
        data=data,
        key=key.encode("utf-8"),
        time=time,
        correlation_id=correlation_id,
    )


def _encode(
    *,
    event_id: str,
    event_type: str,
    source: str,
    data: dict[str, Any] | SerializedJson,
    key: bytes | None,
    time: datetime,
    correlation_id: str | None,
) -> KafkaRecord:
    if time.tzinfo is None or time.utcoffset() is None:
        raise ValueError("event time must be timezone-aware")
    # Insertion order here is the attribute order on the wire.
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": time.astimezone(UTC),
        "datacontenttype": DATA_CONTENT_TYPE,
    }
    if correlation_id is not None:
        attributes[CORRELATION_ID_ATTR] = correlation_id
    # The SDK stores data untouched; our OrjsonFormat knows how to write SerializedJson.
    event = CloudEvent(attributes, cast("dict[str, Any]", data))
    message = kafka.to_structured(event, _FORMAT, key_mapper=lambda _event: key)
    return KafkaRecord(
        key=key,
        value=message.value,
        headers=list(message.headers.items()),
    )


# --------------------------------------------------------------------------- decoding


class _DecodeFactory:
    """SDK ``EventFactory`` hook: sees the parsed attributes before ``CloudEvent``."""

    __slots__ = ("time_sent",)

    def __init__(self) -> None:
        self.time_sent = False

    def __call__(self, attributes: dict[str, Any], data: dict[str, Any] | str | bytes | None) -> CloudEvent:
        if LEGACY_CORRELATION_ID_ATTR in attributes:
            legacy = attributes.pop(LEGACY_CORRELATION_ID_ATTR)
            attributes.setdefault(CORRELATION_ID_ATTR, legacy)
        missing = [name for name in _MUST_BE_SENT if name not in attributes]
        if missing:
            raise UndecodableEvent(f"missing required attribute(s): {', '.join(missing)}")
        self.time_sent = "time" in attributes
        return CloudEvent(attributes, data)


def decode_record(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    key: bytes | None = None,
) -> Event:
    """Decode a Kafka record (structured or binary mode) into an :class:`Event`.

    Raises :class:`UndecodableEvent` if the record is not a CloudEvents 1.0 event
    whose ``data`` is a JSON object.
    """
    if value is None:
        raise UndecodableEvent("record value is null (tombstone)")
    message = kafka.KafkaMessage(
        headers=dict(headers),
        key=key if key is None or _is_utf8(key) else None,
        value=value,
    )
    factory = _DecodeFactory()
    try:
        ce = kafka.from_kafka(message, _FORMAT, factory)
    except UndecodableEvent:
        raise
    except _DECODE_ERRORS as exc:
        raise UndecodableEvent(f"invalid CloudEvent record: {type(exc).__name__}: {exc}") from exc

    data = ce.get_data()
    # Our own types carry a JSON object; other types on the shared topic are passed through as
    # they are, so that a consumer can filter them out by type instead of dead-lettering them.
    if ce.get_type() in (SNAPSHOT_UPDATED, SNAPSHOT_UPDATED_DLQ) and not isinstance(data, dict):
        raise UndecodableEvent(f"event data must be a JSON object, got {type(data).__name__}")
    attributes = dict(ce.get_attributes())
    time: datetime | None = None
    if factory.time_sent:
        time = attributes["time"] = attributes["time"].astimezone(UTC)
    else:
        del attributes["time"]  # invented by the SDK
    correlation_id = attributes.get(CORRELATION_ID_ATTR)
    return Event(
        id=ce.get_id(),
        type=ce.get_type(),
        source=ce.get_source(),
        time=time,
        correlation_id=None if correlation_id is None else str(correlation_id),
        data=data,
        attributes=attributes,
    )


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------- DLQ


def dlq_event_id(topic: str, partition: int, offset: int) -> str:
    """Deterministic id of the DLQ event for the record at topic/partition/offset.

    Kafka topic names cannot contain ``:``, so the id is unambiguous.
    """
    return f"dlq:{topic}:{partition}:{offset}"


def encode_dlq_event(
    *,
    original_value: bytes | None,
    original: Event | None,
    error: BaseException | str,
    error_type: str | None,
    attempts: int,
    topic: str,
    partition: int,
    offset: int,
    source: str,
    key: bytes | None,
    now: datetime,
) -> KafkaRecord:
    """Build the ``risk_snapshot_updated_dlq`` record for a record that failed.

    ``data`` always has the same keys:

    * ``original_decodable``: whether ``original`` was given;
    * ``original_event``: the decoded original envelope (attributes + ``data``,
      ``time`` as RFC 3339) or null;
    * ``original_value`` / ``original_value_encoding``: when not decodable, the raw
      value as text (``"utf-8"``) or base64 (``"base64"``); both null otherwise
      (or when the value itself was null);
    * ``error_type``, ``error_message``, ``attempts``, ``topic``, ``partition``,
      ``offset``.

    The DLQ event keeps the original correlation id; its id is
    :func:`dlq_event_id` of the original position, so a re-send is recognisable.
    """
    if error_type is None:
        error_type = "Error" if isinstance(error, str) else type(error).__name__
    data: dict[str, Any] = {
        "original_decodable": original is not None,
        "original_event": None if original is None else _envelope(original),
        "original_value": None,
        "original_value_encoding": None,
        "error_type": error_type,
        "error_message": str(error),
        "attempts": attempts,
        "topic": topic,
        "partition": partition,
        "offset": offset,
    }
    if original is None and original_value is not None:
        text, encoding = _raw_as_text(original_value)
        data["original_value"] = text
        data["original_value_encoding"] = encoding
    correlation_id = (
        original.correlation_id if original is not None else _salvage_correlation_id(original_value)
    )
    return _encode(
        event_id=dlq_event_id(topic, partition, offset),
        event_type=SNAPSHOT_UPDATED_DLQ,
        source=source,
        data=data,
        key=key,
        time=now,
        correlation_id=correlation_id,
    )


def _envelope(event: Event) -> dict[str, Any]:
    envelope = {
        name: _rfc3339(value) if isinstance(value, datetime) else value
        for name, value in event.attributes.items()
    }
    envelope["data"] = event.data
    return envelope


def _rfc3339(value: datetime) -> str:
    """Same rendering as the SDK's JSON format (UTC as ``Z``)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _raw_as_text(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _salvage_correlation_id(raw: bytes | None) -> str | None:
    """Best effort: the correlation id of an undecodable but JSON-object value."""
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict):
        return None
    for name in (CORRELATION_ID_ATTR, LEGACY_CORRELATION_ID_ATTR):
        found = parsed.get(name)
        if isinstance(found, str) and found:
            return found
    return None
