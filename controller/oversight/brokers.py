"""Brokered actions: effects on the outside world that run on the controller side, after the gate allowed them.

The agent asks with `sdk.act(tool, args)`; the credentials a broker uses (an SMTP password, an API key) live in
the controller's settings and never enter the sandbox. A broker gets the decided (possibly edited) arguments and
returns a JSON result for the agent.

- `email.send` {to, subject, body}: through FLEETGATE_SMTP_URL (smtp://user:pass@host:port) when set; otherwise
  written as an .eml file to <home>/outbox/ so a self-hosted install can see what would have gone out.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from controller.config import Settings
from controller.errors import Invalid
from controller.models import utcnow

Broker = Callable[[Settings, dict[str, Any]], dict[str, Any]]


def send_email(settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    for key in ("to", "subject", "body"):
        if not isinstance(args.get(key), str) or not args[key]:
            raise Invalid(f"email.send needs a non-empty string {key!r}")
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


BROKERS: dict[str, Broker] = {"email.send": send_email}


def broker_for(tool: str) -> Broker:
    broker = BROKERS.get(tool)
    if broker is None:
        raise Invalid(f"no broker for {tool!r}; brokered tools are: {', '.join(sorted(BROKERS))}")
    return broker
