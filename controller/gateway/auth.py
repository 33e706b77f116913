"""Who is calling the gateway: a sandbox, by its own token, on its own routes only."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from controller.auth import SANDBOX_TOKEN_PREFIX, bearer, hash_token, sandbox_token_owner
from controller.db import SessionDep
from controller.errors import Forbidden
from controller.models import SANDBOX_ID_PATTERN, Sandbox


def sandbox_for_token(*, session: Session, secret: str, sandbox_id: str) -> Sandbox:
    """The sandbox whose runtime token this is, if it names `sandbox_id` (the gate has its own, leaner read)."""
    found = None
    if secret.startswith(SANDBOX_TOKEN_PREFIX):
        found = session.exec(select(Sandbox).where(Sandbox.token_hash == hash_token(secret))).first()
    return sandbox_token_owner(secret, found, sandbox_id)


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

    def __init__(self, db: Engine, ttl_s: float = 5.0) -> None:
        self._db = db
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
        with Session(self._db) as session:
            return sandbox_for_token(session=session, secret=secret, sandbox_id=sandbox_id).id
