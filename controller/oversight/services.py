"""Services and secrets an admin keeps for the fleet: rules on the rows, the audit entries, and the two lookups
the gateway and the brokers use to reach an upstream with its secret.

A secret is sealed before it is stored (controller/secrets.py) and leaves this module only through
`ServiceTarget.secret` and `reveal_secret`: never in a public view, an error message or the audit log (not even
its length or a hash of it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from sqlmodel import Session, col, select

from controller.errors import Conflict, Invalid, NotFound
from controller.models import (
    NAME_PATTERN,
    SECRET_NAME_PATTERN,
    Secret,
    SecretPublic,
    Service,
    ServiceCreate,
    ServiceKind,
    ServicePublic,
    utcnow,
)
from controller.oversight import audit
from controller.secrets import SecretBox

# Where a sandbox's command reaches the services (the runtime serves this on the sandbox's loopback).
SANDBOX_SERVICES_URL = "http://127.0.0.1:7070"
DEFAULT_HEADERS = {ServiceKind.anthropic: "x-api-key", ServiceKind.openai: "Authorization"}
HTTP_SCHEMES = ("http", "https")
GIT_SCHEMES = ("git", "ssh", "https", "http", "file")
# RFC 9110 token characters; the header names a request's framing or routing depends on are not ours to set.
HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"}
)
SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


@dataclass(frozen=True)
class ServiceTarget:
    """A service as the controller reaches it, secret included. Only the controller holds one: the gateway
    serves the kinds other than `git` to sandboxes (`served`), the `git.push` broker uses `git` ones."""

    name: str
    kind: ServiceKind
    upstream: str
    header: str | None
    secret: str | None

    @property
    def served(self) -> bool:
        """Whether sandboxes may reach it on the service port (a git remote is for the broker only)."""
        return self.kind is not ServiceKind.git

    def auth_value(self) -> str | None:
        """The header value to send: the secret verbatim, but "Bearer <secret>" for a bare Authorization secret."""
        if self.secret is None:
            return None
        if (self.header or "").lower() == "authorization" and " " not in self.secret:
            return f"Bearer {self.secret}"
        return self.secret


# --- services ---------------------------------------------------------------------------------------------


def check_name(name: str) -> None:
    if not re.match(NAME_PATTERN, name):
        raise Invalid(
            f"service name {name[:80]!r} is not valid: 1 to 63 lower-case letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit (it becomes part of the URL sandboxes use)"
        )


def check_upstream(kind: ServiceKind, upstream: str) -> None:
    """An upstream the gateway or broker can use. Errors never repeat the URL: it could carry a credential."""
    schemes = GIT_SCHEMES if kind is ServiceKind.git else HTTP_SCHEMES
    wanted = ", ".join(f"{s}://" for s in schemes)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in upstream):
        raise Invalid("the upstream must not contain spaces or control characters")
    try:
        parts = urlsplit(upstream)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as e:
        raise Invalid(f"the upstream is not a valid URL ({e}); give one starting with {wanted}") from e
    if parts.scheme.lower() not in schemes:
        hint = (
            " (write git@host:path as ssh://git@host/path)"
            if kind is ServiceKind.git and SCP_LIKE.match(upstream)
            else ""
        )
        raise Invalid(f"the upstream of a {kind.value} service must start with {wanted}{hint}")
    _check_url_parts(parts)


def _check_url_parts(parts: SplitResult) -> None:
    if parts.password is not None:
        raise Invalid(
            "the upstream carries a password; give the credential as the service's secret instead "
            "(--secret-env VAR), so it is sealed and never listed"
        )
    if parts.scheme.lower() == "file":
        if not parts.path:
            raise Invalid("a file:// upstream needs a path, e.g. file:///srv/git/project.git")
    elif not parts.hostname:
        raise Invalid(f"the upstream has no host after {parts.scheme}://, e.g. https://api.example.com")
    if parts.query or parts.fragment:
        raise Invalid("the upstream is a base URL: leave out the ?query and #fragment")


def service_header(kind: ServiceKind, header: str | None, *, has_secret: bool) -> str | None:
    """The header that carries the secret: as given, else the kind's default."""
    if header is None:
        if kind is ServiceKind.http and has_secret:
            raise Invalid(
                "an http service with a secret needs the header that carries it (--header, e.g. Authorization)"
            )
        return DEFAULT_HEADERS.get(kind)
    if not HEADER_TOKEN.match(header):
        raise Invalid(
            f"header {header[:80]!r} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~, "
            f"no spaces or colons), e.g. Authorization or x-api-key"
        )
    if header.lower() in RESERVED_HEADERS or header.lower().startswith("proxy-"):
        raise Invalid(
            f"header {header!r} frames or routes the request; pick the header the upstream reads the key from"
        )
    return header


def add_service(session: Session, *, box: SecretBox, body: ServiceCreate, actor: str) -> Service:
    """Register a service after checking its upstream and header; an inline secret is sealed."""
    check_name(body.name)
    check_upstream(body.kind, body.upstream)
    header = service_header(body.kind, body.header, has_secret=body.secret is not None)
    if session.get(Service, body.name) is not None:
        raise Conflict(
            f"a service named {body.name!r} exists already; remove it first (`fleetgate service rm {body.name}`)"
        )
    row = Service(
        name=body.name,
        kind=body.kind,
        upstream=body.upstream,
        header=header,
        sealed_secret=None if body.secret is None else box.seal(body.secret),
        created_by=actor,
    )
    session.add(row)
    audit.append(
        session,
        actor=actor,
        event="service.added",
        subject=f"service:{row.name}",
        kind=row.kind.value,
        upstream=row.upstream,
        header=header,
        has_secret=row.sealed_secret is not None,
    )
    return row


def list_services(session: Session) -> list[Service]:
    return list(session.exec(select(Service).order_by(col(Service.name))))


def public_service(row: Service) -> ServicePublic:
    """What anyone may see of a service: everything but the secret, and where sandboxes reach it."""
    served = row.kind is not ServiceKind.git
    return ServicePublic(
        name=row.name,
        kind=row.kind,
        upstream=row.upstream,
        header=row.header,
        has_secret=row.sealed_secret is not None,
        base_url=f"{SANDBOX_SERVICES_URL}/{row.name}" if served else None,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def remove_service(session: Session, *, name: str, actor: str) -> None:
    row = session.get(Service, name)
    if row is None:
        raise _no_service(name)
    session.delete(row)
    audit.append(session, actor=actor, event="service.removed", subject=f"service:{name}")


def service_target(session: Session, box: SecretBox, name: str) -> ServiceTarget:
    """The service `name` with its secret opened, for the controller's own use on the way out."""
    row = session.get(Service, name)
    if row is None:
        raise _no_service(name)
    secret = None if row.sealed_secret is None else box.open(row.sealed_secret)
    return ServiceTarget(name=row.name, kind=row.kind, upstream=row.upstream, header=row.header, secret=secret)


def _no_service(name: str) -> NotFound:
    return NotFound(f"no service {name[:80]!r}; `fleetgate service ls` lists them, `fleetgate service add` adds one")


# --- secrets ----------------------------------------------------------------------------------------------


def check_secret_name(name: str) -> None:
    if not re.match(SECRET_NAME_PATTERN, name):
        raise Invalid(
            f"secret name {name[:80]!r} is not valid: 1 to 63 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit"
        )


def set_secret(session: Session, *, box: SecretBox, name: str, value: str, actor: str) -> tuple[Secret, bool]:
    """Store (or replace) the secret `name`, sealed; (its row, whether it is new)."""
    check_secret_name(name)
    if not value:
        raise Invalid(f"the value of secret {name!r} is empty; give the secret itself")
    row = session.get(Secret, name)
    created = row is None
    if row is None:
        row = Secret(name=name, sealed=box.seal(value), created_by=actor)
    else:
        row.sealed, row.updated_at = box.seal(value), utcnow()
    session.add(row)
    audit.append(session, actor=actor, event="secret.set", subject=f"secret:{name}", created=created)
    return row, created


def list_secrets(session: Session) -> list[Secret]:
    return list(session.exec(select(Secret).order_by(col(Secret.name))))


def public_secret(row: Secret) -> SecretPublic:
    return SecretPublic(name=row.name, created_at=row.created_at, updated_at=row.updated_at, created_by=row.created_by)


def remove_secret(session: Session, *, name: str, actor: str) -> None:
    row = session.get(Secret, name)
    if row is None:
        raise _no_secret(name)
    session.delete(row)
    audit.append(session, actor=actor, event="secret.removed", subject=f"secret:{name}")


def reveal_secret(session: Session, box: SecretBox, name: str) -> str:
    """The plaintext of secret `name`, for a broker about to use it."""
    row = session.get(Secret, name)
    if row is None:
        raise _no_secret(name)
    return box.open(row.sealed)


def _no_secret(name: str) -> NotFound:
    return NotFound(f"no secret {name[:80]!r}; `fleetgate secret ls` lists them, `fleetgate secret set` stores one")
