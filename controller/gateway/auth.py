"""Who is calling the gateway: a sandbox, by its own token, on its own routes only."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from sqlmodel import Session, select

from controller.auth import SANDBOX_TOKEN_PREFIX, bearer, hash_token
from controller.db import SessionDep
from controller.errors import Forbidden, Unauthorized
from controller.models import SANDBOX_ID_PATTERN, Sandbox


def sandbox_for_token(*, session: Session, secret: str, sandbox_id: str) -> Sandbox:
    if not secret.startswith(SANDBOX_TOKEN_PREFIX):
        raise Unauthorized("the runtime gateway takes sandbox tokens only")
    sandbox = session.exec(select(Sandbox).where(Sandbox.token_hash == hash_token(secret))).first()
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
