"""Sends a multipart (plain text + HTML) e-mail through the configured SMTP server with
aiosmtplib. Every failure, whatever the reply code, raises ProviderUnavailable: the
report is already stored, and the engine retries the send with the queue's backoff.
Reports call `Mailer.send`.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from config import Settings
from processors.errors import ProviderUnavailable
from streams import tracing


class Mailer:
    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None or settings.smtp_from is None:
            raise ValueError("SMTP_HOST and SMTP_FROM are not set")
        self.settings = settings
        self.sender = settings.smtp_from
        self.domain = parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"

    async def send(self, *, to: list[str], subject: str, text: str, html: str, message_id: str) -> None:
        """`message_id` is stable per report, so a resend after a crash is recognisably
        the same message to mail clients."""
        s = self.settings
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = f"<{message_id}@{self.domain}>"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        try:
            with tracing.span("smtp send", {"server.address": s.smtp_host or "", "server.port": s.smtp_port,
                                            "tgjobs.recipients": len(to)}, kind="client"):
                await aiosmtplib.send(
                    message, hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
                    password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                    use_tls=s.smtp_implicit_tls, start_tls=s.smtp_starttls and not s.smtp_implicit_tls,
                    timeout=s.smtp_timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise ProviderUnavailable(f"SMTP refused the recipients: {refused}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise ProviderUnavailable(f"SMTP server answered {exc.code}: {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise ProviderUnavailable(f"SMTP server {s.smtp_host}:{s.smtp_port} unreachable: "
                                      f"{type(exc).__name__}: {exc}") from None
