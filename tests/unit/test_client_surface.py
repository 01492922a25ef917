"""The producer SDK's public surface and its reading of ``Retry-After`` (pure: no hub)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

import riskhub.client
from riskhub.client import AsyncRiskHubClient, HubUnavailable, RetryPolicy, retry_after_seconds


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
    assert {getattr(riskhub.client, name).__module__ for name in reexported} == {"riskhub.client.answers"}
    assert set(riskhub.client.__all__) == defined_here | reexported | {"DEFAULT_INLINE_COV_THRESHOLD"}
    assert all(hasattr(riskhub.client, name) for name in riskhub.client.__all__)


@pytest.mark.parametrize("token", ["tok\r\nX-Evil: 1", "tök-en", "with space", "tab\there", ""])
def test_a_token_that_cannot_be_a_header_is_refused_up_front_without_echoing_it(token: str) -> None:
    with pytest.raises(ValueError, match=r"^token: must be printable ASCII without spaces$") as caught:
        AsyncRiskHubClient("http://127.0.0.1:8000", token)
    assert token not in str(caught.value) or not token


@pytest.mark.parametrize("base_url", ["notaurl", "ftp://hub:21", "http://"])
def test_a_base_url_that_is_not_http_is_refused_up_front(base_url: str) -> None:
    with pytest.raises(ValueError, match=r"^base_url: must be an http:// or https:// URL"):
        AsyncRiskHubClient(base_url, "tok")


async def test_the_token_never_appears_in_an_error_even_if_the_transport_echoes_it() -> None:
    def echo_the_header(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(f"Illegal header value {request.headers['authorization']!r}")

    transport = httpx.MockTransport(echo_the_header)
    retry = RetryPolicy(max_attempts=1)
    async with AsyncRiskHubClient("http://hub", "s3cret-token", retry=retry, transport=transport) as client:
        with pytest.raises(HubUnavailable) as caught:
            await client.latest("w1")
    assert "LocalProtocolError" in str(caught.value)
    shown: list[str] = []  # what a traceback of the error would print
    error: BaseException | None = caught.value
    while error is not None:
        shown.append(str(error))
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    assert len(shown) == 2 and not any("s3cret-token" in text for text in shown)
