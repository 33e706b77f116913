"""Where policies live and how stored ones are compiled: the fleet row, and templates' and sandboxes' own.

A stored policy is kept as given: a preset name, a parsed document (a JSON request body), or YAML/JSON text
(so what decided an action can cite the line of the rule). Compiled policies are cached per distinct document,
because the gate runs on the agent's hot path.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from sqlmodel import Session

from controller.models import utcnow
from controller.oversight import audit
from controller.oversight.models import FleetPolicy
from controller.oversight.policy import Policy, load_policy, policy_from_value

StoredPolicy = str | dict[str, Any]


def is_text(value: str) -> bool:
    return "\n" in value.strip() or ":" in value or value.lstrip().startswith("{")


def compile_policy(value: StoredPolicy, *, source: str = "policy") -> Policy:
    """A preset name, a document, or YAML/JSON text, as a Policy; raises PolicyError (a 422) when invalid."""
    return _compiled(json.dumps(value, sort_keys=True), source)


@lru_cache(maxsize=512)
def _compiled(key: str, source: str) -> Policy:
    value = json.loads(key)
    if isinstance(value, str) and is_text(value):
        return load_policy(value, source=source)
    return policy_from_value(value)


def set_fleet_policy(session: Session, *, value: StoredPolicy | None, actor: str) -> FleetPolicy:
    """Replace the fleet layer (None removes it) after validating it, and say so in the audit log."""
    if value is not None:
        compile_policy(value, source="fleet policy")
    row = session.get(FleetPolicy, 1) or FleetPolicy(updated_by=actor)
    row.source = value if isinstance(value, str) else None
    row.document = value if isinstance(value, dict) else None
    row.updated_by = actor
    row.updated_at = utcnow()
    session.add(row)
    audit.append(session, actor=actor, event="policy.fleet_updated", subject="policy:fleet", policy=value)
    return row
