"""HTTP plumbing shared by the processors: their client sessions (traced when tracing is
on), bounded body reads, and one mapping from a provider's HTTP status to what the
engine should do (retry, or give up now).
Used by web.py and news.py (data sources) and llm.py and people.py (providers).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from processors.errors import ProviderAnswerInvalid, ProviderRejected, ProviderUnavailable
from streams import tracing

CHUNK = 64 * 1024
USER_AGENT = "tgjobs/0.1 (company research)"


def client_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session for a processor's outbound calls: with tracing on, each request
    is a client span of the job's trace and carries its traceparent."""
    return aiohttp.ClientSession(trace_configs=tracing.http_trace_configs(), **kwargs)


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    body = bytearray()
    while len(body) < limit:
        chunk = await response.content.read(min(CHUNK, limit - len(body)))
        if not chunk:
            return bytes(body), False
        body += chunk
    return bytes(body), not response.content.at_eof()


async def provider_json(session: aiohttp.ClientSession, method: str, url: str, *, name: str,
                        limit: int, timeout: float, **kwargs: Any) -> tuple[int, Any]:
    """Calls a provider and returns (status, parsed JSON). Raises ProviderUnavailable on
    network errors, timeouts, 429 and 5xx; ProviderRejected on a redirect (the provider's
    URL is the operator's; where it redirects is not, so it is not followed) and on the
    other 4xx except 404, which callers read as "no match" (returned with a None body).
    Messages name the provider, never the URL (its query may carry a key)."""
    try:
        async with session.request(method, url, timeout=aiohttp.ClientTimeout(total=timeout),
                                   allow_redirects=False, **kwargs) as response:
            status = response.status
            if status == 404:
                return status, None
            if 300 <= status < 400:
                raise ProviderRejected(f"{name} answered a redirect (HTTP {status}), which is not followed; "
                                       "configure the URL it points to")
            if status == 429 or status >= 500:
                retry_after = response.headers.get("Retry-After")
                hint = f" (Retry-After: {retry_after})" if retry_after else ""
                raise ProviderUnavailable(f"{name} answered HTTP {status}{hint}")
            if status >= 400:
                raise ProviderRejected(f"{name} refused the request: HTTP {status}")
            body, truncated = await read_bounded(response, limit)
    except TimeoutError:
        raise ProviderUnavailable(f"{name} gave no answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"{name} could not be reached ({type(exc).__name__})") from None
    if truncated:
        raise ProviderAnswerInvalid(f"{name} answered more than {limit} bytes")
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProviderAnswerInvalid(f"{name} answered with something that is not JSON: {exc}") from None
