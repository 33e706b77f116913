"""The warm pool, on its rows: hardened sandboxes started ahead of time per template, claimed on create.

A pooled sandbox runs its supervisor with no credentials; the supervisor waits for them. Claiming is a
compare-and-set on the row (two creates never get the same sandbox); the flow then configures the claimed one
and, if that fails, destroys it rather than hand it out (`flows.pool`). Nothing here commits.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from controller.models import Sandbox, SandboxStatus, User


def candidates(session: Session, template_id: int, limit: int = 4) -> list[str]:
    """Ready pool entries of a template, oldest first."""
    return list(
        session.exec(
            select(Sandbox.id)
            .where(Sandbox.template_id == template_id, Sandbox.status == SandboxStatus.pooled)
            .order_by(col(Sandbox.created_at))
            .limit(limit)
        )
    )


def take(session: Session, sandbox_id: str, owner: User | None) -> bool:
    """Claim one ready entry for `owner`; False when another create took it first."""
    won = session.execute(
        sa.update(Sandbox)
        .where(col(Sandbox.id) == sandbox_id, col(Sandbox.status) == SandboxStatus.pooled)
        .values(status=SandboxStatus.creating, owner_id=owner.id if owner else None)
    )
    return bool(won.rowcount == 1)  # type: ignore[attr-defined]


def size(session: Session, template_id: int) -> int:
    """Sandboxes ready or being made for a template's pool."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Sandbox)
            .where(
                Sandbox.template_id == template_id,
                col(Sandbox.status).in_([SandboxStatus.pooled, SandboxStatus.warming]),
            )
        ).one()
    )


def ready(session: Session, template_id: int) -> int:
    """Sandboxes ready to be claimed."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Sandbox)
            .where(Sandbox.template_id == template_id, Sandbox.status == SandboxStatus.pooled)
        ).one()
    )


def beyond(session: Session, template_id: int, keep: int) -> list[Sandbox]:
    """Ready entries past the newest `keep`, to be drained (the pool shrank, or its image changed)."""
    entries = session.exec(
        select(Sandbox)
        .where(Sandbox.template_id == template_id, Sandbox.status == SandboxStatus.pooled)
        .order_by(col(Sandbox.created_at).desc())
    ).all()
    return list(entries[keep:])


def retire(session: Session, sandbox_id: str) -> bool:
    """Take a ready entry out of the pool before it is destroyed; False when a create claimed it meanwhile."""
    won = session.execute(
        sa.update(Sandbox)
        .where(col(Sandbox.id) == sandbox_id, col(Sandbox.status) == SandboxStatus.pooled)
        .values(status=SandboxStatus.removed)
    )
    return bool(won.rowcount == 1)  # type: ignore[attr-defined]
