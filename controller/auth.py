"""Users, roles and tokens: minting, hashing, and the dependencies that guard every route."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Protocol, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from controller.db import SessionDep
from controller.errors import Conflict, Forbidden, Unauthorized
from controller.models import ConsoleSession, Role, Token, TokenCreated, User, utcnow

SESSION_COOKIE = "fleetgate_session"
CSRF_COOKIE = "fleetgate_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_TTL = timedelta(hours=12)
USER_TOKEN_PREFIX = "fg_"  # noqa: S105 (a prefix, not a secret)
SANDBOX_TOKEN_PREFIX = "fgs_"  # noqa: S105
_TOUCH_EVERY = timedelta(minutes=1)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def ensure_user(*, session: Session, name: str, role: Role) -> User:
    """The user called `name`, created with `role` if new; an existing user keeps their role unless raised."""
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        user = User(name=name, role=role)
    elif user.role != role:
        user.role = role
    session.add(user)
    session.flush()
    return user


Owned = TypeVar("Owned", bound="HasId")


class HasId(Protocol):
    @property
    def id(self) -> str: ...


def sandbox_token_owner(secret: str, found: Owned | None, sandbox_id: str) -> Owned:
    """The sandbox a runtime token was found for, if it is a sandbox token and names `sandbox_id`."""
    if not secret.startswith(SANDBOX_TOKEN_PREFIX):
        raise Unauthorized("the runtime gateway takes sandbox tokens only")
    if found is None:
        raise Unauthorized("unknown or retired sandbox token")
    if found.id != sandbox_id:
        raise Forbidden(f"this token belongs to sandbox {found.id}, not {sandbox_id}")
    return found


def create_token(*, session: Session, name: str, role: Role, label: str = "api") -> TokenCreated:
    """Mint a token for user `name` (created if needed) and return it; only its hash is stored."""
    user = ensure_user(session=session, name=name, role=role)
    secret = new_secret(USER_TOKEN_PREFIX)
    assert user.id is not None
    token = Token(user_id=user.id, name=label, prefix=secret[:10], hash=hash_token(secret))
    session.add(token)
    session.flush()
    assert token.id is not None
    return TokenCreated(
        id=token.id,
        user=user.name,
        role=user.role,
        label=label,
        prefix=token.prefix,
        created_at=token.created_at,
        token=secret,
    )


def create_admin(*, session: Session, name: str = "admin") -> TokenCreated:
    """Create the first admin and its token; refuses if any admin exists (recover with `token create`)."""
    if session.exec(select(User).where(User.role == Role.admin)).first() is not None:
        raise Conflict("an admin exists already; mint a new token with `fleetgate token create`")
    return create_token(session=session, name=name, role=Role.admin, label="install")


def user_for_token(*, session: Session, secret: str) -> User:
    """The user a bearer token belongs to, or Unauthorized with the reason."""
    if secret.startswith(SANDBOX_TOKEN_PREFIX):
        raise Unauthorized("this is a sandbox token; it only works on the sandbox's runtime socket")
    row = session.exec(select(Token).where(Token.hash == hash_token(secret))).first()
    if row is None:
        raise Unauthorized("unknown token; ask an admin for one (`fleetgate token create`)")
    if row.revoked_at is not None:
        raise Unauthorized("this token was revoked; ask an admin for a new one")
    now = utcnow()
    user = session.get(User, row.user_id)
    if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
        _touch(session, row, now)
    if user is None:
        raise Unauthorized("the token's user no longer exists")
    return user


def _touch(session: Session, token: Token, now: datetime) -> None:
    """Note when a token was last used (best effort, at most once a minute, in its own short write)."""
    session.commit()
    try:
        session.execute(sa.update(Token).where(col(Token.id) == token.id).values(last_used_at=now))
        session.commit()
    except OperationalError:  # the database is busy: the note can wait for the next use
        session.rollback()


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("missing token: send `Authorization: Bearer <token>` (FLEETGATE_TOKEN for the CLI)")
    return secret.strip()


def current_user(request: Request, session: SessionDep) -> User:
    """The caller: by bearer token (API clients), or by console session cookie (browsers, with CSRF checks)."""
    if "authorization" in request.headers or SESSION_COOKIE not in request.cookies:
        user = user_for_token(session=session, secret=bearer(request))
    else:
        user = user_for_session(session=session, request=request)
    session.commit()  # end the auth read: the endpoint's own work starts its own transaction
    return user


def user_for_session(*, session: Session, request: Request) -> User:
    row = session.get(ConsoleSession, hash_token(request.cookies[SESSION_COOKIE]))
    if row is None or row.expires_at < utcnow():
        raise Unauthorized("your console session has ended; log in again with your token")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, row.csrf):
            raise Forbidden("missing or wrong X-CSRF-Token header (the console sends it; scripts use a bearer token)")
    user = session.get(User, row.user_id)
    if user is None:
        raise Unauthorized("the session's user no longer exists")
    return user


def open_console_session(*, session: Session, user: User) -> tuple[str, str]:
    """A new console session for `user` (in the caller's transaction): returns (cookie secret, CSRF token); only
    the secret's hash is stored."""
    assert user.id is not None
    secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    session.add(ConsoleSession(hash=hash_token(secret), user_id=user.id, csrf=csrf, expires_at=utcnow() + SESSION_TTL))
    return secret, csrf


CurrentUser = Annotated[User, Depends(current_user)]


def require(role: Role) -> Callable[[User], User]:
    """A dependency that lets through users whose role includes `role`."""

    def check(user: CurrentUser) -> User:
        if not Role(user.role).includes(role):
            raise Forbidden(f"this needs the {role.value} role; your token's user {user.name!r} is {user.role}")
        return user

    check.__name__ = f"require_{role.value}"
    return check
