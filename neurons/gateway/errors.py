"""Every failure a gateway request can meet, mapped to (HTTP status, code) in one function.

Bodies use OpenAI's error shape (``{"error": {"message", "type", "param", "code"}}``) so the
official clients raise their usual exceptions (401 ``AuthenticationError``, 429
``RateLimitError``, 400 ``BadRequestError`` with ``param``). Messages are safe to show a user:
unexpected exceptions become a bare 500 ``internal`` and are logged here with their traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from subnet.errors import StateError

log = logging.getLogger("subnet.gateway.errors")


@dataclass(frozen=True)
class HttpFailure:
    status: int
    code: str  # also the metrics label
    message: str
    param: str | None = None
    retry_after: float | None = None


class GatewayError(Exception):
    """A failure the gateway detected itself, with what the user should see."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = HttpFailure(status, code, message, param, retry_after)


def invalid(message: str, param: str | None, code: str = "invalid_request") -> GatewayError:
    """400 naming the offending field."""
    return GatewayError(400, code, message, param=param)


def to_failure(e: BaseException) -> HttpFailure:
    """The one mapping from exceptions to what the user sees."""
    if isinstance(e, GatewayError):
        return e.failure
    if isinstance(e, TimeoutError):
        return HttpFailure(504, "timeout", "request timed out")
    if isinstance(e, StateError):
        log.error("gateway state failure: %s", e)
        return HttpFailure(503, "unavailable", "the gateway is unavailable, retry later", None, 5.0)
    log.error("unexpected failure", exc_info=e)
    return HttpFailure(500, "internal", "internal error")
