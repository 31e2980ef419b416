"""The cross-site guard: what keeps a page on another site, or one reached by DNS
rebinding, from driving the API through a visitor's browser (the open mode has no token
to stop it).

    Host       a loopback name or address (localhost, 127.0.0.1, [::1]) or one listed in
               API_ALLOWED_HOSTS ("*": any); else 421, and 400 when there is none.
               /healthz and /readyz answer any Host (probes send the pod's address).
    Origin     when sent, the server's own (same host and port) or one listed in
               API_CORS_ORIGINS; else 403. A listed origin gets CORS headers, and its
               preflight (OPTIONS) is answered here.
    JSON       a changing request (anything but GET, HEAD, OPTIONS) without a bearer token
               must send Content-Type application/json (application/x-ndjson for signals),
               else 415: browsers send text/plain and form bodies across sites without
               asking first, never JSON nor an Authorization header. With a token the
               body is parsed whatever its type (the seed's own curl example sends none).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from api.errors import BadRequest, Forbidden, Handler, Misdirected, UnsupportedMediaType
from api.state import SETTINGS

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPES = frozenset({"application/json", "application/x-ndjson"})
ANY_HOST_PATHS = frozenset({"/healthz", "/readyz"})
CORS_METHODS = "GET, POST, DELETE"
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
CORS_MAX_AGE_S = 600


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    host = request.headers.get("Host", "").strip().lower()
    if request.path not in ANY_HOST_PATHS:
        _check_host(host, settings.api_allowed_hosts)
    origin = request.headers.get("Origin")
    listed = origin is not None and origin.lower().rstrip("/") in settings.api_cors_origins
    if origin is not None and not listed and urlsplit(origin.lower()).netloc != host:
        raise Forbidden(f"requests from origin {origin!r} are refused; list it in API_CORS_ORIGINS to allow it")
    if listed and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers={**_cors_headers(origin or ""),
                                                 "Access-Control-Allow-Methods": CORS_METHODS,
                                                 "Access-Control-Allow-Headers": CORS_HEADERS,
                                                 "Access-Control-Max-Age": str(CORS_MAX_AGE_S)})
    if (request.method not in SAFE_METHODS and "Authorization" not in request.headers
            and (request.body_exists or request.method == "POST") and request.content_type not in JSON_TYPES):
        raise UnsupportedMediaType(f"send the body as JSON (Content-Type: application/json); "
                                   f"{request.content_type or 'no content type'} is refused")
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer to a listed origin, an error too, says so."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower().rstrip("/") in request.app[SETTINGS].api_cors_origins:
        response.headers.update(_cors_headers(origin))


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Expose-Headers": "X-Request-Id, Retry-After"}


def _check_host(host: str, allowed: tuple[str, ...]) -> None:
    if not host:
        raise BadRequest("the request has no Host header")
    name = _host_name(host)
    if name in allowed or "*" in allowed or _is_loopback(name):
        return
    raise Misdirected(f"this server does not answer for host {name!r}; list it in API_ALLOWED_HOSTS")


def _host_name(host: str) -> str:
    """'[::1]:3000' -> '::1', 'api.example.com:3000' -> 'api.example.com'."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
