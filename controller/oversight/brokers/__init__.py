"""Brokered actions: effects on the outside world that the controller carries out after the gate allowed them.

The agent asks with `sdk.act(tool, args)`; the policy decides, a person may approve (and edit the arguments),
and then the worker runs the tool's broker with the decided arguments and a `BrokerContext`: the controller's
settings, the stored secrets and registered services (looked up when asked), and the sandbox's workspace folder
on this machine. Credentials never enter the sandbox; what a broker returns is the agent's result.

    email.send    {to, subject, body}                           email_send.py
    http.request  {method, url, headers?, body?, timeout_s?}    http_request.py  ({{secret:NAME}} in headers)
    git.push      {remote, branch, force?, path?}               git_push.py      (a service of kind git)
"""

from __future__ import annotations

from controller.errors import Invalid
from controller.oversight.brokers.context import Broker, BrokerContext
from controller.oversight.brokers.email_send import send_email
from controller.oversight.brokers.git_push import push
from controller.oversight.brokers.http_request import http_request

BROKERS: dict[str, Broker] = {"email.send": send_email, "http.request": http_request, "git.push": push}
# Brokers that read the sandbox's workspace; the others are not made to wait for the engine to say where it is.
NEEDS_WORKSPACE = frozenset({"git.push"})

__all__ = ["BROKERS", "NEEDS_WORKSPACE", "Broker", "BrokerContext", "broker_for"]


def broker_for(tool: str) -> Broker:
    """The broker of `tool`; Invalid, naming the brokered tools, when there is none."""
    broker = BROKERS.get(tool)
    if broker is None:
        raise Invalid(f"no broker for {tool!r}; brokered tools are: {', '.join(sorted(BROKERS))}")
    return broker
