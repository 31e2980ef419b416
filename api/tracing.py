"""The API's span per request (tracing on only): named after the route, continuing the
caller's W3C `traceparent` header, with the answer's status; outermost, so it sees the
status the error middleware chose."""

from __future__ import annotations

from aiohttp import web

from api.state import REQUEST_ID
from streams import tracing


@web.middleware
async def tracing_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    with tracing.server_span(request.method, route, request.headers) as span:
        response = await handler(request)
        span.set("http.response.status_code", response.status)
        span.set("tgjobs.request_id", request.get(REQUEST_ID, ""))
        return response
