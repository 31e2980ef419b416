"""Object-level scope: a token with `companies` (glob patterns of companyIds) acts on and
reads only those companies, and one with `emailDomains` has reports e-mailed only to
those domains. A request outside its token's scope is a 403, recorded in the audit trail
(action `refused`, with the reason) before it is answered; nothing else happens.

Checked where a company or a recipient is named: POST /api/jobs, POST /api/signals
(every item), POST /api/schedules, and the records of one company (company, contact,
research, report). Listings (queues, dead letters, schedules, the audit trail) are not
filtered: a scoped token that may read them sees every company's entries.
"""

from __future__ import annotations

from aiohttp import web

from api.errors import Forbidden
from api.routes.common import audit
from api.state import PRINCIPAL


async def require_scope(request: web.Request, *, company: str | None = None, email_to: str | None = None,
                        where: str = "") -> None:
    """Returns when the caller's token may act on `company` and e-mail `email_to`."""
    refused = request[PRINCIPAL].refusal(company=company, email_to=email_to)
    if refused is None:
        return
    target, reason = refused
    await audit(request, "refused", target, {"method": request.method, "path": request.path},
                {"status": 403, "reason": f"{where}{reason}"})
    raise Forbidden(f"{where}{reason}")


def scoped(request: web.Request) -> bool:
    """Whether the caller's token is limited to some companies."""
    return request[PRINCIPAL].companies is not None
