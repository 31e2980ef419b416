"""The HTTP API (aiohttp): the seed's endpoints for jobs and queues, plus streams,
dead letters, audit trail, health and the OpenAPI document; bearer tokens with roles.

`create_app(settings)` builds the application; `serve` and `running_api` run it.
"""

from api.app import create_app
from api.server import running_api, serve

__all__ = ["create_app", "running_api", "serve"]
