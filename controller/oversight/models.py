"""Oversight state: gated actions, the approval queue and its votes, grants, the audit chain, webhooks."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import pydantic
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlmodel import JSON, Column, Field, SQLModel

from controller.models import StrEnumType, _when, utcnow

AUTOINCREMENT = {"sqlite_autoincrement": True}


class ApprovalKind(enum.StrEnum):
    action = "action"
    checkpoint = "checkpoint"
    escalation = "escalation"


class ApprovalStatus(enum.StrEnum):
    pending = "pending"
    approved = "approved"
    denied = "denied"
    expired = "expired"
    cancelled = "cancelled"


class ActionStatus(enum.StrEnum):
    pending = "pending"
    allowed = "allowed"
    denied = "denied"


class Action(SQLModel, table=True):
    """One gated call of an agent, with its decision and what decided it."""

    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(index=True, max_length=16)
    tool: str = Field(max_length=128, index=True)
    args: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    risk: str = Field(max_length=16)
    status: ActionStatus = Field(default=ActionStatus.pending, sa_type=StrEnumType(ActionStatus), index=True)
    final_args: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    message: str | None = None
    decided_by: str | None = Field(default=None, max_length=16)  # policy | grant | person | timeout
    decision: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    verdict: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    approval_id: int | None = Field(default=None, index=True)
    brokered: bool = False
    broker_status: str | None = Field(default=None, max_length=16)  # queued | done | failed
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    review: str | None = Field(default=None, max_length=16)  # reviewed | flagged
    review_note: str | None = None
    reviewed_by: str | None = Field(default=None, max_length=63)
    created_at: datetime = _when(default_factory=utcnow, index=True)
    decided_at: datetime | None = _when(default=None)
    delivered_at: datetime | None = _when(default=None)


class Approval(SQLModel, table=True):
    """An item of the central queue: an action waiting for a decision, a checkpoint, an escalation."""

    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    kind: ApprovalKind = Field(sa_type=StrEnumType(ApprovalKind), index=True)
    status: ApprovalStatus = Field(default=ApprovalStatus.pending, sa_type=StrEnumType(ApprovalStatus), index=True)
    sandbox_id: str = Field(index=True, max_length=16)
    action_id: int | None = Field(default=None, index=True)
    summary: str = Field(max_length=2000)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    risk: str = Field(default="low", max_length=16)
    approvers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    quorum: int = 1
    on_timeout: str = Field(default="deny", max_length=8)
    rememberable: bool = True
    requester_id: int | None = None  # who may not approve it: the sandbox's starter, where duties are separated
    deadline: datetime | None = _when(default=None, index=True)
    assignee: str | None = Field(default=None, max_length=63)
    message: str | None = None
    args: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    decided_by: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _when(default_factory=utcnow, index=True)
    decided_at: datetime | None = _when(default=None)


class Vote(SQLModel, table=True):
    """One person's say on an approval; a person counts once."""

    __table_args__ = (sa.UniqueConstraint("approval_id", "user_id"), AUTOINCREMENT)

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(index=True)
    user_id: int
    user: str = Field(max_length=63)
    decision: str = Field(max_length=8)
    message: str | None = None
    args: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    via: str = Field(default="api", max_length=16)
    created_at: datetime = _when(default_factory=utcnow)


class GrantScope(enum.StrEnum):
    sandbox = "sandbox"
    template = "template"
    fleet = "fleet"


class Grant(SQLModel, table=True):
    """A remembered approval: matching actions in its scope are allowed without asking again."""

    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    scope: GrantScope = Field(sa_type=StrEnumType(GrantScope), index=True)
    scope_ref: str | None = Field(default=None, max_length=63, index=True)
    tool: str = Field(max_length=128)
    match: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=63)
    approval_id: int | None = None
    created_at: datetime = _when(default_factory=utcnow)
    revoked_at: datetime | None = _when(default=None)
    revoked_by: str | None = Field(default=None, max_length=63)


class AuditEntry(SQLModel, table=True):
    """One link of the append-only, hash-chained audit log."""

    __tablename__ = "audit"
    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _when(default_factory=utcnow, index=True)
    actor: str = Field(max_length=80, index=True)
    event: str = Field(max_length=48, index=True)
    subject: str = Field(default="", max_length=80, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class FleetPolicy(SQLModel, table=True):
    """The admin's fleet-wide policy layer (one row); nothing below it can loosen it."""

    __tablename__ = "fleet_policy"

    id: int = Field(default=1, primary_key=True)
    document: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    source: str | None = None
    updated_by: str = Field(max_length=63)
    updated_at: datetime = _when(default_factory=utcnow)


class Webhook(SQLModel, table=True):
    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=500)
    secret: str = Field(max_length=128)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    link_user: str | None = Field(default=None, max_length=63)
    created_at: datetime = _when(default_factory=utcnow)
    active: bool = True


class Delivery(SQLModel, table=True):
    """One webhook call and how it went; retried by the worker with backoff."""

    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(index=True)
    event: str = Field(max_length=48)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = _when(default_factory=utcnow)
    delivered_at: datetime | None = _when(default=None)


class Notification(SQLModel, table=True):
    """An approval event for the webhooks, written in the same transaction as the event (an outbox): the worker
    takes it (deletes it) as it plans the deliveries, and the sweep queues one whose task never reached the worker
    (Redis was away). So the table holds only work still to do."""

    __table_args__ = AUTOINCREMENT

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(index=True)
    event: str = Field(max_length=48)
    created_at: datetime = _when(default_factory=utcnow)


class LinkUse(SQLModel, table=True):
    """Signed decision links are single use: their id lands here when used."""

    __tablename__ = "link_use"

    jti: str = Field(primary_key=True, max_length=40)
    used_at: datetime = _when(default_factory=utcnow)


# --- API shapes -------------------------------------------------------------------------------------------


class SandboxUsage(SQLModel, table=True):
    """What a sandbox has spent through the egress door, against its budget (oversight/usage.py)."""

    __tablename__ = "sandbox_usage"

    sandbox_id: str = Field(primary_key=True, max_length=16)
    model_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    connections: int = 0
    bytes_in: int = Field(default=0, sa_type=sa.BigInteger)  # into the sandbox
    bytes_out: int = Field(default=0, sa_type=sa.BigInteger)  # out of it
    updated_at: datetime = _when(default_factory=utcnow)


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = pydantic.Field(pattern="^(approve|deny)$")
    message: str | None = pydantic.Field(default=None, max_length=4000)
    args: dict[str, Any] | None = None
    remember: GrantScope | None = None


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    review: str = pydantic.Field(pattern="^(reviewed|flagged)$")
    note: str | None = pydantic.Field(default=None, max_length=4000)
