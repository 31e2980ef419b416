"""The authentication middleware: checks the bearer token against the role the
matched route needs (app[ROLES]) and records the caller for handlers and the audit trail.

Runs inside api.errors' middleware, which turns its 401 and 403 into JSON answers.
"""

from __future__ import annotations

import logging

from aiohttp import web

from api.errors import Forbidden, Handler, Unauthorized
from api.state import PRINCIPAL, ROLES, TOKENS
from api.tokens import ANONYMOUS, Principal

log = logging.getLogger(__name__)
BEARER = "bearer "


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Unmatched paths and methods have aiohttp's own handler (a 404 or 405): no role.
    required = request.app[ROLES].get(request.match_info.route.handler)
    store = request.app[TOKENS]
    if required is None:
        return await handler(request)
    if store.open:
        request[PRINCIPAL] = ANONYMOUS
        return await handler(request)
    token = _bearer_token(request)
    if token is None:
        raise Unauthorized("send a token: Authorization: Bearer <token>")
    principal = store.authenticate(token)
    if principal is None:
        log.warning("rejected %s %s from %s: unknown token", request.method, request.path, request.remote)
        raise Unauthorized("the bearer token is not valid")
    if principal.role < required:
        raise Forbidden(f"{principal.name} has role {principal.role}; {request.method} {request.path} "
                        f"needs {required}")
    request[PRINCIPAL] = principal
    return await handler(request)


def bearer_principal(request: web.Request) -> Principal | None:
    """For an open route that tells more to a known caller: the principal of the request's
    valid token; None without one, with a wrong one, and in open mode (no token exists)."""
    store = request.app[TOKENS]
    token = _bearer_token(request)
    return None if store.open or token is None else store.authenticate(token)


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:len(BEARER)].lower() != BEARER or not header[len(BEARER):].strip():
        return None
    return header[len(BEARER):].strip()
