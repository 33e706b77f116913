"""Tokens: admins mint them for users with a role, list and revoke them."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import col, select

from controller.api.deps import Admin, FleetDep, RowId, SessionDep, Viewer
from controller.models import Role, Token, TokenCreate, TokenCreated, TokenPublic, User

router = APIRouter(prefix="/api/v1", tags=["tokens"])


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def mint_token(body: TokenCreate, user: Admin, fleet: FleetDep) -> TokenCreated:
    """Create a token for user `name` (made if new) with `role`; the secret is shown only here."""
    return fleet.admin.mint_token(actor=user.name, name=body.name, role=body.role, label=body.label)


@router.get("/tokens", response_model=dict[str, list[TokenPublic]])
def list_tokens(_: Admin, session: SessionDep) -> dict[str, list[TokenPublic]]:
    rows = session.exec(
        select(Token, User).join(User).where(col(Token.revoked_at).is_(None)).order_by(col(Token.id))
    ).all()
    return {
        "items": [
            TokenPublic(
                id=t.id or 0,
                user=u.name,
                role=Role(u.role),
                label=t.name,
                prefix=t.prefix,
                created_at=t.created_at,
            )
            for t, u in rows
        ]
    }


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: RowId, user: Admin, fleet: FleetDep) -> None:
    fleet.admin.revoke_token(token_id, actor=user.name)


@router.get("/me")
def whoami(user: Viewer) -> dict[str, str]:
    """Who the token belongs to: a cheap way to check a token works."""
    return {"name": user.name, "role": Role(user.role).value}
