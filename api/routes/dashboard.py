"""GET /: the live dashboard, a static page shipped in the package (api/static) whose
script reads the API with the token the operator enters. The page itself is public;
every data call it makes carries the token. api.app serves the other files under /static/.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_PREFIX = "/static/"
# Only the page's own files run; the token it keeps cannot be read by an injected script.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


async def dashboard_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={
        "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY})
