"""People deciding: approve or deny from the API, the console or a signed link; take an item; revoke a grant;
mark an action reviewed. Each is one write transaction with its audit entries; a decision's effects (wake the
agent, run its brokered action, resume or stop the sandbox, tell the webhooks) are applied once it is committed.

The path from a decision to the waiting agent, end to end:
  this module (`decide`) -> oversight.approvals.decide/settle (the rows, the audit, returns `Wake`)
  -> flows.effects.EffectRunner (after commit) -> events.wakeups.Publisher (Redis pub/sub)
  -> events.wakeups.Waiter in the gateway -> gateway.oversight's long-poll, which reads the decided row.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from controller.errors import Conflict, Forbidden, Invalid, NotFound
from controller.flows.unit import Transactions
from controller.models import Role, User, utcnow
from controller.oversight import audit
from controller.oversight.approvals import SCOPE_ROLE, Decided, decide, get_approval, may_decide
from controller.oversight.links import LinkClaims
from controller.oversight.models import (
    Action,
    Approval,
    ApprovalStatus,
    DecisionRequest,
    Grant,
    LinkUse,
    ReviewRequest,
)


class DecisionFlows:
    def __init__(self, *, tx: Transactions) -> None:
        self.tx = tx

    def decide(self, approval_id: int, *, user: User, request: DecisionRequest) -> Decided:
        """Record `user`'s vote; the approval settles when it denies or completes the quorum."""
        with self.tx.write() as t:
            decided = decide(t.session, approval_id=approval_id, user=user, request=request)
            t.effects += decided.effects
        return decided

    def decide_by_link(self, claims: LinkClaims) -> Decided:
        """Decide as the link's user, once: the link's use is recorded in the decision's own transaction."""
        with self.tx.write() as t:
            try:
                t.session.add(LinkUse(jti=claims.jti))
                t.session.flush()
            except IntegrityError as e:
                raise Conflict("this link was used already; each link works once") from e
            user = t.session.exec(select(User).where(User.name == claims.user)).first()
            if user is None:
                raise Forbidden(f"the link's user {claims.user!r} no longer exists")
            request = DecisionRequest(decision=claims.decision)
            decided = decide(t.session, approval_id=claims.approval_id, user=user, request=request, via="link")
            t.effects += decided.effects
        return decided

    def take(self, approval_id: int, *, user: User) -> Approval:
        """Assign a pending item (an escalation, say) to `user`, so others see someone is on it."""
        with self.tx.write() as t:
            approval = get_approval(t.session, approval_id)
            if approval.status != ApprovalStatus.pending:
                raise Conflict(f"approval {approval_id} is already {approval.status.value}")
            refusal = may_decide(user, approval)
            if refusal:
                raise Invalid(refusal)
            approval.assignee = user.name
            t.session.add(approval)
            audit.append(t.session, actor=user.name, event="approval.taken", subject=f"approval:{approval_id}")
        return approval

    def revoke_grant(self, grant_id: int, *, user: User) -> Grant:
        """Matching actions ask again. Needs the role that may create a grant of that scope."""
        with self.tx.write() as t:
            grant = t.session.get(Grant, grant_id)
            if grant is None or grant.revoked_at is not None:
                raise NotFound(f"no active grant {grant_id}")
            needed = SCOPE_ROLE[grant.scope]
            if not Role(user.role).includes(needed):
                raise Forbidden(f"revoking a {grant.scope.value}-wide grant needs the {needed.value} role")
            grant.revoked_at, grant.revoked_by = utcnow(), user.name
            t.session.add(grant)
            audit.append(t.session, actor=user.name, event="grant.revoked", subject=f"grant:{grant_id}")
        return grant

    def review(self, action_id: int, *, user: User, request: ReviewRequest) -> Action:
        """Mark an action reviewed or flagged after the fact."""
        with self.tx.write() as t:
            action = t.session.get(Action, action_id)
            if action is None:
                raise NotFound(f"no action {action_id}")
            action.review, action.review_note, action.reviewed_by = request.review, request.note, user.name
            t.session.add(action)
            audit.append(
                t.session,
                actor=user.name,
                event=f"action.{request.review}",
                subject=f"action:{action_id}",
                note=request.note,
            )
        return action
