"""Who is calling the gateway: a sandbox, by its own token, on its own routes only."""

from __future__ import annotations

import time
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from controller.auth import SANDBOX_TOKEN_PREFIX, bearer, hash_token
from controller.db import SessionDep
from controller.errors import Forbidden, Unauthorized
from controller.fleet import Fleet
from controller.models import SANDBOX_ID_PATTERN, Sandbox
from controller.oversight.gate import Subject, read_subject

S = TypeVar("S", Sandbox, Subject)


def sandbox_for_token(*, session: Session, secret: str, sandbox_id: str) -> Sandbox:
    _sandbox_token(secret)
    sandbox = session.exec(select(Sandbox).where(Sandbox.token_hash == hash_token(secret))).first()
    return _owner(sandbox, sandbox_id)


def subject_for_token(*, session: Session, secret: str, sandbox_id: str) -> Subject:
    """The same check for the gate, which reads only what it decides with (see `oversight.gate`)."""
    _sandbox_token(secret)
    return _owner(read_subject(session, secret), sandbox_id)


def _sandbox_token(secret: str) -> None:
    if not secret.startswith(SANDBOX_TOKEN_PREFIX):
        raise Unauthorized("the runtime gateway takes sandbox tokens only")


def _owner(sandbox: S | None, sandbox_id: str) -> S:
    if sandbox is None:
        raise Unauthorized("unknown or retired sandbox token")
    if sandbox.id != sandbox_id:
        raise Forbidden(f"this token belongs to sandbox {sandbox.id}, not {sandbox_id}")
    return sandbox


def current_sandbox(
    request: Request,
    session: SessionDep,
    sandbox_id: Annotated[str, Path(pattern=SANDBOX_ID_PATTERN)],
) -> Sandbox:
    sandbox = sandbox_for_token(session=session, secret=bearer(request), sandbox_id=sandbox_id)
    session.commit()  # end the auth read: the route's writes start a transaction of their own
    return sandbox


CurrentSandbox = Annotated[Sandbox, Depends(current_sandbox)]


class TokenCache:
    """Sandbox tokens already checked, for a few seconds: the output route is called hundreds of times a second.

    A removed sandbox's token may keep shipping output for at most `ttl_s` (its container is gone by then); every
    other route, and every decision, checks the database each time.
    """

    def __init__(self, fleet: Fleet, ttl_s: float = 5.0) -> None:
        self._fleet = fleet
        self._ttl_s = ttl_s
        self._known: dict[str, tuple[str, float]] = {}

    async def sandbox(self, secret: str, sandbox_id: str) -> str:
        digest = hash_token(secret)
        hit = self._known.get(digest)
        if hit is None or hit[1] < time.monotonic():
            sandbox = await run_in_threadpool(self._lookup, secret, sandbox_id)
            hit = (sandbox, time.monotonic() + self._ttl_s)
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[digest] = hit
        if hit[0] != sandbox_id:
            raise Forbidden(f"this token belongs to sandbox {hit[0]}, not {sandbox_id}")
        return hit[0]

    def _lookup(self, secret: str, sandbox_id: str) -> str:
        with Session(self._fleet.engine) as session:
            return sandbox_for_token(session=session, secret=secret, sandbox_id=sandbox_id).id
