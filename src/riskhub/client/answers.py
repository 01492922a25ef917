"""What the hub's HTTP answers mean to a producer: the SDK's own errors, the named error
(``riskhub.errors``) for each refusal with the hub's message and field, and which answers to retry."""

from __future__ import annotations

import email.utils
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from riskhub.contract.canonical import loads_exact
from riskhub.errors import (
    ContractError,
    Forbidden,
    MalformedRequest,
    PayloadTooLarge,
    RequestRejected,
    RiskHubError,
    SnapshotExpired,
    SnapshotNotFound,
    Unauthorized,
    Unavailable,
    VersionConflict,
)

# Retries are logged under the client's name, where producers look for them.
log = logging.getLogger("riskhub.client")


class HubUnavailable(Unavailable):
    """The hub did not answer usefully (connection error, timeout, 429 or 5xx); after the retries
    are spent, the last such failure."""

    code = "hub_unavailable"

    def __init__(self, message: str, *, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class UnexpectedAnswer(RiskHubError):
    """A 2xx whose body is not what the hub sends (wrong ``base_url``, a proxy's page)."""

    code = "unexpected_answer"


class HubRejected(RequestRejected):
    """A 4xx the SDK has no named class for (e.g. 405); resending it unchanged will not help."""

    code = "rejected"

    def __init__(self, message: str, *, status: int, field: str | None = None):
        super().__init__(message, field=field)
        self.status = status


_REJECTIONS = (
    MalformedRequest,
    Unauthorized,
    Forbidden,
    SnapshotNotFound,
    SnapshotExpired,
    VersionConflict,
    PayloadTooLarge,
    ContractError,
)
_REJECTION_BY_CODE: dict[str, type[RequestRejected]] = {cls.code: cls for cls in _REJECTIONS}
_REJECTION_BY_STATUS: dict[int, type[RequestRejected]] = {
    400: MalformedRequest,
    401: Unauthorized,
    403: Forbidden,
    404: SnapshotNotFound,
    409: VersionConflict,
    413: PayloadTooLarge,
    422: ContractError,
}


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def rejection_of(response: httpx.Response) -> RequestRejected:
    """The named error for a 4xx answer, with the hub's message and field."""
    code, message, field_name = _error_parts(response)
    cls = _REJECTION_BY_CODE.get(code or "") or _REJECTION_BY_STATUS.get(response.status_code)
    if cls is None:
        return HubRejected(message or status_line(response), status=response.status_code, field=field_name)
    return cls(message or status_line(response), field=field_name)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` if it is not one (a proxy's HTML page, say)."""
    try:
        document = loads_exact(response.content)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _error_parts(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, field) from the hub's ``{"error": {...}}`` shape; Nones when absent."""
    error = json_object(response).get("error")
    if not isinstance(error, dict):
        return None, None, None
    parts = (error.get("code"), error.get("message"), error.get("field"))
    code, message, field_name = (part if isinstance(part, str) else None for part in parts)
    return code, message, field_name


def status_line(response: httpx.Response) -> str:
    """``HTTP 503 Service Unavailable``."""
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def unavailable_text(response: httpx.Response) -> str:
    """The status line and the hub's message, if it sent one."""
    _, message, _ = _error_parts(response)
    return f"{status_line(response)}: {message}" if message else status_line(response)


def describe_transport_error(exc: httpx.TransportError) -> str:
    """The error's class name and text (httpx's own texts are often empty)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retrying_while_unavailable(
    *, max_attempts: int, budget_s: float, backoff_s: float, max_backoff_s: float
) -> AsyncRetrying:
    """Retry ``HubUnavailable`` (no answer, 429, 5xx) with jittered exponential backoff, at most
    ``max_attempts`` times and never starting a wait past ``budget_s``; other errors at once."""
    return AsyncRetrying(
        stop=stop_after_attempt(max_attempts) | stop_before_delay(budget_s),
        wait=_BackoffOrRetryAfter(backoff_s, max_backoff_s),
        retry=retry_if_exception_type(HubUnavailable),
        before_sleep=_log_retry,
        reraise=True,
    )


class _BackoffOrRetryAfter:
    """Full-jitter exponential backoff, stretched to the hub's ``Retry-After`` when it names one."""

    def __init__(self, backoff_s: float, max_backoff_s: float) -> None:
        self._jitter = wait_random_exponential(multiplier=backoff_s, max=max_backoff_s)

    def __call__(self, state: RetryCallState) -> float:
        wait_s = self._jitter(state)
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, HubUnavailable) and failure.retry_after_s is not None:
            wait_s = max(wait_s, failure.retry_after_s)
        return wait_s


def _log_retry(state: RetryCallState) -> None:
    failure = state.outcome.exception() if state.outcome is not None else None
    wait_s = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning("attempt %d failed: %s; retrying in %.2f s", state.attempt_number, failure, wait_s)
