"""What a broker is handed: the decided arguments, and a context with the controller's own means to act on them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import Settings
from controller.oversight.services import ServiceTarget


@dataclass(frozen=True)
class BrokerContext:
    """The controller's side of one brokered action. Secrets and services are looked up when a broker asks, so
    a broker that needs none touches none; `workspace` is the sandbox's workspace folder on this machine (None
    when the sandbox has none here, e.g. on a remote host)."""

    settings: Settings
    sandbox_id: str
    secret: Callable[[str], str]  # a stored secret by name (NotFound when there is none)
    service: Callable[[str], ServiceTarget]  # an admin-registered service by name (NotFound when there is none)
    workspace: Path | None = None


Broker = Callable[[BrokerContext, dict[str, Any]], dict[str, Any]]
