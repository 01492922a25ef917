"""The producer SDK's public surface and its reading of ``Retry-After`` (pure: no hub)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import riskhub.client
from riskhub.client import retry_after_seconds


def test_retry_after_in_seconds() -> None:
    assert retry_after_seconds("1") == 1.0
    assert retry_after_seconds(" 0 ") == 0.0


def test_retry_after_as_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait_s = retry_after_seconds(later)
    assert wait_s is not None and 28 <= wait_s <= 30
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(earlier) == 0.0


def test_absent_or_unreadable_retry_after_is_none() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-3") is None


def test_the_public_surface_is_exactly_all() -> None:
    defined_here = {
        name
        for name, value in vars(riskhub.client).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == "riskhub.client"
    }
    # the errors and Retry-After reading live in client_answers; producers import them from here
    reexported = {"HubRejected", "HubUnavailable", "UnexpectedAnswer", "retry_after_seconds"}
    assert {getattr(riskhub.client, name).__module__ for name in reexported} == {"riskhub.client_answers"}
    assert set(riskhub.client.__all__) == defined_here | reexported | {"DEFAULT_INLINE_COV_THRESHOLD"}
    assert all(hasattr(riskhub.client, name) for name in riskhub.client.__all__)
