"""The CloudEvents SDK's structured JSON format with orjson doing the (de)serialising."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cloudevents.core.base import BaseCloudEvent, EventFactory
from cloudevents.core.formats.json import JSONFormat
from dateutil.parser import isoparse

from riskhub.contract.canonical import loads_exact


@dataclass(frozen=True, slots=True)
class SerializedJson:
    """Event data that is already a serialized JSON object (a stored snapshot): written into the
    envelope verbatim, so the relay never parses and re-serializes 14 KB per event."""

    raw: bytes


class OrjsonFormat(JSONFormat):
    """The SDK's structured JSON format (CloudEvents 1.0) with orjson doing the (de)serialising.

    Same wire format as ``JSONFormat`` for v1.0 events: attributes, ``time`` as RFC 3339 with
    ``Z``, JSON ``data`` inline, binary data as ``data_base64``. The stdlib ``json`` module was
    ~90% of the SDK's per-event cost (~200 us for a 14 KB snapshot); orjson makes it ~20 us.
    """

    def write(self, event: BaseCloudEvent) -> bytes:
        """Serialise attributes and data."""
        envelope: dict[str, Any] = dict(event.get_attributes())
        data = event.get_data()
        if isinstance(data, SerializedJson):
            envelope["data"] = orjson.Fragment(data.raw)
        elif isinstance(data, bytes | bytearray):
            envelope["data_base64"] = base64.b64encode(data).decode("ascii")
        elif data is not None:
            content_type = envelope.get("datacontenttype", self.DEFAULT_CONTENT_TYPE)
            is_json = self.JSON_CONTENT_TYPE_PATTERN.match(content_type) is not None
            envelope["data"] = data if is_json else str(data)
        try:
            return orjson.dumps(envelope, option=orjson.OPT_UTC_Z)
        except TypeError:  # integers beyond 64 bits, lone surrogates, deep nesting
            envelope["time"] = envelope["time"].isoformat().replace("+00:00", "Z")
            if isinstance(data, SerializedJson):
                envelope["data"] = loads_exact(data.raw)
            return json.dumps(envelope, separators=(",", ":")).encode("ascii")

    def read(self, event_factory: EventFactory | None, data: str | bytes) -> BaseCloudEvent:
        """Parse an envelope; ``time`` becomes a datetime, ``data``/``data_base64`` the data."""
        attributes = loads_exact(data)
        if not isinstance(attributes, dict):
            raise ValueError(f"envelope must be a JSON object, got {type(attributes).__name__}")
        if event_factory is None:
            raise ValueError("an event factory is required")
        if "time" in attributes:
            attributes["time"] = _parse_time(attributes["time"])
        payload = attributes.pop("data", None)
        if payload is None and "data_base64" in attributes:
            payload = base64.b64decode(attributes.pop("data_base64"))
        return event_factory(attributes, payload)


def _parse_time(value: str) -> datetime:
    """RFC 3339 time; the C parser takes what our producers send (~40x faster than dateutil)."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        parsed: datetime = isoparse(value)
        return parsed
