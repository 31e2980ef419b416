"""The API's errors, and the one middleware that answers every failure with JSON.

    ApiError              its status, a stable code and a message
    ├── BadRequest    400 malformed JSON, an empty body, an unknown action
    ├── Unauthorized  401 no bearer token, or one that is not configured
    ├── Forbidden     403 the token's role does not allow this
    ├── NotFound      404 unknown job type, queue, job or path
    ├── Conflict      409 the job's state does not allow the action
    ├── UnsupportedMediaType  415 a changing request whose body is not JSON
    ├── Misdirected   421 a Host this server does not answer for
    ├── Invalid       422 with every failing field (location, path, message)
    ├── TooMany       429 the caller's own share of a limit is used up (its event streams)
    └── Unavailable   503 a limit is reached (open event streams); retry later

The middleware also maps the engine's errors (UnknownQueue and JobNotFound to 404,
JobStateConflict to 409, EntryTooLarge to 413, InvalidJob to 422), aiohttp's own (404, 405, 413), a Redis
that is unreachable or refuses writes to 503, and anything else to a 500 that carries
the request id and no traceback (the traceback goes to the log under that id).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web
from redis.exceptions import (BusyLoadingError, ClusterDownError, MasterDownError, OutOfMemoryError, ReadOnlyError,
                              TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api.schemas import ErrorBody, ErrorDetail
from api.state import REQUEST_ID
from streams.errors import EntryTooLarge, InvalidJob, JobNotFound, JobStateConflict, UnknownQueue
from streams.outage import is_transient
from streams.replication import NotReplicated

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
RETRY_AFTER_S = 1
_CALLER_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# redis-py strips the error code from these replies, so a test on the message text
# (as streams.outage does) misses them: they are told apart by class.
_REFUSED = (OutOfMemoryError, ReadOnlyError, BusyLoadingError, MasterDownError, TryAgainError, ClusterDownError)


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Misdirected(ApiError):
    status, code = 421, "misdirected_request"


class Invalid(ApiError):
    status, code = 422, "invalid"


class TooMany(ApiError):
    status, code = 429, "too_many_requests"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
               421: "misdirected_request", 422: "invalid", 429: "too_many_requests",
               503: "unavailable"}


def redis_unavailable(exc: BaseException) -> bool:
    """Redis cannot serve the request now: unreachable, timing out, loading, a replica,
    or out of memory. Such a request may succeed when retried later."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, *_REFUSED)) or is_transient(exc)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gives each request an id (the caller's X-Request-Id when it is sane) and turns
    every exception into a JSON error answer carrying it."""
    request_id = request.headers.get(REQUEST_ID_HEADER, "")
    if not _CALLER_REQUEST_ID.match(request_id):
        request_id = secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _answer(exc.status, exc.code, exc.message, request_id, exc.details)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="tgjobs"'
        elif isinstance(exc, (Unavailable, TooMany)):
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
    except (UnknownQueue, JobNotFound) as exc:
        response = _answer(404, "not_found", str(exc), request_id)
    except JobStateConflict as exc:
        response = _answer(409, "conflict", str(exc), request_id)
    except EntryTooLarge as exc:
        response = _answer(413, "payload_too_large", str(exc), request_id)
    except InvalidJob as exc:
        response = _answer(422, "invalid", str(exc), request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's 413 says the limit and the size in its text; the others only repeat the reason.
        message = exc.text if exc.status == 413 and exc.text else exc.reason
        response = _answer(exc.status, _HTTP_CODES.get(exc.status, "error"), message, request_id)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception as exc:
        if not redis_unavailable(exc):
            log.exception("request %s (%s %s) failed", request_id, request.method, request.path)
            response = _answer(500, "internal_error", "internal error; quote the request id when reporting it",
                               request_id)
        else:
            log.warning("request %s (%s %s): Redis unavailable: %s: %s", request_id, request.method, request.path,
                        type(exc).__name__, exc)
            response = _answer(503, "unavailable", _unavailable_message(exc), request_id)
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
    if not response.prepared:  # a stream (GET /api/events) sent its headers, the id among them
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def unavailable_reason(exc: BaseException) -> str:
    """One word for why Redis cannot serve: what /readyz tells a caller without a token."""
    if isinstance(exc, OutOfMemoryError):
        return "redis_out_of_memory"
    if isinstance(exc, ReadOnlyError):
        return "redis_read_only"
    if isinstance(exc, BusyLoadingError):
        return "redis_loading"
    if isinstance(exc, NotReplicated):
        return "redis_not_replicated"
    return "redis_unreachable"


def _unavailable_message(exc: BaseException) -> str:
    if isinstance(exc, OutOfMemoryError):
        return "Redis is out of memory and refuses writes; retry once it has room"
    if isinstance(exc, ReadOnlyError):
        return "Redis is a read-only replica (a failover under way?) and refuses writes; retry shortly"
    if isinstance(exc, NotReplicated):
        return str(exc)
    return f"Redis is unavailable ({type(exc).__name__}); retry shortly"


def _answer(status: int, code: str, message: str, request_id: str,
            details: list[ErrorDetail] | None = None) -> web.Response:
    body = ErrorBody(error=code, message=message or HTTPStatus(status).phrase, requestId=request_id, details=details)
    return web.Response(status=status, body=body.model_dump_json(exclude_none=True).encode(),
                        content_type="application/json")
