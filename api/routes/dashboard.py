"""GET /: the live dashboard, a static page shipped in the package (api/static) whose
script reads the API with the token the operator enters. The page itself is public;
every data call it makes carries the token. Its other files are served under /static/:
the files of api/static only, anything else the API's JSON 404.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from api.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_ROUTE = "/static/{name}"
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file() and path.name != "index.html"}
# Only the page's own files run; the token it keeps cannot be read by an injected script.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


async def dashboard_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={
        "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY})


async def static_file(request: web.Request) -> web.FileResponse:
    path = STATIC_FILES.get(request.match_info["name"])
    if path is None:
        raise NotFound(f"no such file: {request.path}")
    return web.FileResponse(path)
