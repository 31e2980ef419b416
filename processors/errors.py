"""How the processors' outside services fail, and what the engine does about it.

    ProviderError               an outside service (LLM, people data, SMTP) failed this attempt
    ├── ProviderUnavailable     unreachable, timed out, or answered 429/5xx: retried with backoff
    ├── ProviderAnswerInvalid   answered, but not in the agreed shape (the LLM: after one repair)
    └── ProviderRejected        refused the request itself (401, 403, other 4xx); also an
                                UnrecoverableError, so the job is dead-lettered at once

Data sources (homepage, news feeds, DNS) raise none of these: what they cannot give is
marked unavailable in the record, with the reason.
"""

from __future__ import annotations

from streams import UnrecoverableError


class ProviderError(Exception):
    """Root of the outside services' failures; any of them fails the attempt."""


class ProviderUnavailable(ProviderError):
    """The service could not be reached or asked us to come back later (429, 5xx)."""


class ProviderAnswerInvalid(ProviderError):
    """The answer did not parse or did not match its schema."""


class ProviderRejected(ProviderError, UnrecoverableError):
    """The service refused the request (bad key, forbidden, malformed): retrying cannot help."""
