"""Decision links: mint them (API), open them (a confirmation page), use them once (the page's button)."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from controller.api.deps import Approver, FleetDep, RowId, SessionDep
from controller.errors import Conflict, FleetgateError, Forbidden
from controller.oversight.approvals import get_approval, may_decide
from controller.oversight.links import link_key, sign, verify
from controller.oversight.models import ApprovalStatus

router = APIRouter(tags=["links"])


def link_urls(base_url: str, key: bytes, approval_id: int, user: str, ttl_s: int) -> dict[str, str]:
    return {
        d: f"{base_url}/l/{sign(key, approval_id=approval_id, decision=d, user=user, ttl_s=ttl_s)}"
        for d in ("approve", "deny")
    }


@router.post("/api/v1/approvals/{approval_id}/links")
def mint_links(
    approval_id: RowId, user: Approver, fleet: FleetDep, session: SessionDep, request: Request
) -> dict[str, Any]:
    """Single-use approve/deny links that decide as you, valid until the approval's deadline (at most an hour)."""
    approval = get_approval(session, approval_id)
    if approval.status != ApprovalStatus.pending:
        raise Conflict(f"approval {approval_id} is already {approval.status.value}")
    refusal = may_decide(user, approval)
    if refusal:
        raise Forbidden(refusal)
    base = str(request.base_url).rstrip("/")
    return link_urls(base, link_key(fleet.settings.home), approval_id, user.name, ttl_s=3600)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
        f"<link rel=stylesheet href=/static/link.css></head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


@router.get("/l/{token}", response_class=HTMLResponse, include_in_schema=False)
def open_link(token: str, fleet: FleetDep, session: SessionDep) -> HTMLResponse:
    """Show what the link decides; nothing is decided until the button is pressed."""
    try:
        claims = verify(link_key(fleet.settings.home), token)
        approval = get_approval(session, claims.approval_id)
    except FleetgateError as e:
        return _page("This link cannot be used", f"<p>{html.escape(e.message)}</p>", e.status_code)
    verb = "Approve" if claims.decision == "approve" else "Deny"
    detail = html.escape(f"{approval.kind.value} in sandbox {approval.sandbox_id}\n{approval.summary}")
    return _page(
        f"{verb} approval {approval.id}?",
        f"<pre>{detail}</pre><p>Status: <b>{approval.status.value}</b>. "
        f"You decide as <b>{html.escape(claims.user)}</b>.</p>"
        f"<form method=post><button type=submit>{verb}</button></form>",
    )


@router.post("/l/{token}", response_class=HTMLResponse, include_in_schema=False)
def use_link(token: str, fleet: FleetDep) -> HTMLResponse:
    """Decide with the link, once."""
    try:
        claims = verify(link_key(fleet.settings.home), token)
        decided = fleet.decisions.decide_by_link(claims)
    except FleetgateError as e:
        return _page("Not decided", f"<p>{html.escape(e.message)}</p>", e.status_code)
    state = decided.approval.status.value if decided.final else "waiting for more approvals"
    return _page("Decided", f"<p>Approval {claims.approval_id}: your {claims.decision} was recorded ({state}).</p>")
