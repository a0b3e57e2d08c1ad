"""Every failure a miner request can meet, mapped to (HTTP status, cause code) in one function.

Cause codes label the ``miner_requests`` metric and the access log; messages are safe to show a
caller (no stack traces, no internal paths): unexpected exceptions become a bare 500
``internal`` and are logged here with their traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bittensor.http_auth import AuthError

from neurons.miner.policy import Denied
from subnet.auth import DuplicateAuthHeader, auth_failure
from subnet.engine.types import EngineInputError
from subnet.errors import EngineError, StateError
from subnet.protocol import RequestError

log = logging.getLogger("subnet.miner.errors")


@dataclass(frozen=True)
class HttpFailure:
    status: int
    cause: str
    message: str
    param: str | None = None
    retry_after: float | None = None


class HttpError(Exception):
    """Raised by the routes for failures they detect themselves (413, 404, ...)."""

    def __init__(self, status: int, cause: str, message: str) -> None:
        super().__init__(message)
        self.failure = HttpFailure(status, cause, message)


def to_failure(e: BaseException) -> HttpFailure:
    """The one mapping from exceptions to what the caller sees."""
    if isinstance(e, HttpError):
        return e.failure
    if isinstance(e, RequestError):
        return HttpFailure(400, e.code, e.message, e.param)
    if isinstance(e, DuplicateAuthHeader):
        return HttpFailure(400, "auth_duplicate_header", str(e))
    if isinstance(e, AuthError):
        a = auth_failure(e)
        return HttpFailure(a.status, a.cause, a.message)
    if isinstance(e, Denied):
        return HttpFailure(e.status, e.cause, e.message, retry_after=e.retry_after)
    if isinstance(e, EngineInputError):
        return HttpFailure(400, "engine_input", str(e))
    if isinstance(e, TimeoutError):
        return HttpFailure(504, "timeout", "request timed out")
    if isinstance(e, EngineError | StateError):
        log.error("engine or state failure: %s", e)
        return HttpFailure(
            503, "unavailable", "the model is unavailable, retry later", retry_after=5.0
        )
    log.error("unexpected failure", exc_info=e)
    return HttpFailure(500, "internal", "internal error")
