"""`email.send` {to, subject, body}: through FLEETGATE_SMTP_URL (smtp://user:pass@host:port) when set; otherwise
written as an .eml file to <home>/outbox/, so a self-hosted install can see what would have gone out."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from controller.errors import Invalid
from controller.models import utcnow
from controller.oversight.brokers.context import BrokerContext


def send_email(ctx: BrokerContext, args: dict[str, Any]) -> dict[str, Any]:
    """Send the message (or keep it in the outbox folder) and say how it went out."""
    for key in ("to", "subject", "body"):
        if not isinstance(args.get(key), str) or not args[key]:
            raise Invalid(f"email.send needs a non-empty string {key!r}")
    settings = ctx.settings
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = args["to"]
    message["Subject"] = args["subject"]
    message.set_content(args["body"])
    if settings.smtp_url:
        url = urlparse(settings.smtp_url)
        with smtplib.SMTP(url.hostname or "127.0.0.1", url.port or 25, timeout=30) as smtp:
            if url.username:
                smtp.login(url.username, url.password or "")
            smtp.send_message(message)
        return {"sent": True, "via": "smtp", "to": args["to"]}
    outbox = Path(settings.home) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{utcnow().strftime('%Y%m%dT%H%M%S%f')}.eml"
    path.write_bytes(bytes(message))
    return {"sent": True, "via": "outbox", "to": args["to"], "file": str(path)}
