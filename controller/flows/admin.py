"""Admin changes: tokens, webhooks, the fleet policy, Docker hosts, templates, services and secrets. Each is one
write transaction with its audit entry; checks that ask an engine (a host answers, an image can host the runtime)
run before it.
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from controller.auth import create_token, hash_token, open_console_session, user_for_token
from controller.config import Settings
from controller.effects import refill_pool
from controller.errors import Conflict, Invalid, NotFound, Unavailable
from controller.flows.unit import Transactions
from controller.flows.upkeep import Upkeep
from controller.models import (
    ConsoleSession,
    Host,
    Role,
    Sandbox,
    SecretPublic,
    ServiceCreate,
    ServicePublic,
    Template,
    TemplateCreate,
    TemplateUpdate,
    Token,
    TokenCreated,
    User,
    utcnow,
)
from controller.oversight import audit, services
from controller.oversight.models import FleetPolicy, Webhook
from controller.oversight.policy_store import StoredPolicy, compile_policy, set_fleet_policy
from controller.sandboxes import lifecycle
from controller.sandboxes.hosts import LOCAL, Hosts, validate_host_url
from controller.sandboxes.provision import Provisioner
from controller.secrets import SecretBox

WEBHOOK_EVENTS = ("approval.requested", "approval.decided")


class AdminFlows:
    def __init__(
        self, *, tx: Transactions, hosts: Hosts, provisioner: Provisioner, upkeep: Upkeep, settings: Settings
    ) -> None:
        self.tx = tx
        self.hosts = hosts
        self.provisioner = provisioner
        self.upkeep = upkeep
        self.settings = settings
        self.secrets = SecretBox(settings.secrets_key)

    # --- console sessions and tokens ---------------------------------------------------------------------------

    def log_in(self, token: str) -> tuple[User, str, str]:
        """Trade an API token for a console session: (its user, the cookie secret, the CSRF token)."""
        with self.tx.write() as t:
            user = user_for_token(session=t.session, secret=token)
            secret, csrf = open_console_session(session=t.session, user=user)
        return user, secret, csrf

    def log_out(self, cookie_secret: str) -> None:
        with self.tx.write() as t:
            t.session.execute(sa.delete(ConsoleSession).where(col(ConsoleSession.hash) == hash_token(cookie_secret)))

    def mint_token(self, *, actor: str, name: str, role: Role, label: str) -> TokenCreated:
        """A token for user `name` (made if new); its secret is in the answer and nowhere else."""
        with self.tx.write() as t:
            created = create_token(session=t.session, name=name, role=role, label=label)
            audit.append(
                t.session,
                actor=actor,
                event="token.created",
                subject=f"token:{created.id}",
                user=name,
                role=role.value,
                label=label,
                prefix=created.prefix,
            )
        return created

    def revoke_token(self, token_id: int, *, actor: str) -> None:
        with self.tx.write() as t:
            token = t.session.get(Token, token_id)
            if token is None or token.revoked_at is not None:
                raise NotFound(f"no active token with id {token_id}")
            token.revoked_at = utcnow()
            t.session.add(token)
            audit.append(t.session, actor=actor, event="token.revoked", subject=f"token:{token_id}")

    # --- webhooks and the fleet policy ------------------------------------------------------------------------

    def add_webhook(
        self, *, actor: str, url: str, events: list[str], secret: str | None, link_user: str | None
    ) -> Webhook:
        """Subscribe a URL to queue events; payloads are signed with the secret (made here unless given)."""
        unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
        if unknown:
            raise Invalid(f"unknown events {unknown}; known: {list(WEBHOOK_EVENTS)}")
        hook = Webhook(url=url, secret=secret or secrets.token_urlsafe(32), events=events, link_user=link_user)
        with self.tx.write() as t:
            t.session.add(hook)
            t.session.flush()
            audit.append(t.session, actor=actor, event="webhook.added", subject=f"webhook:{hook.id}", url=url)
        return hook

    def remove_webhook(self, webhook_id: int, *, actor: str) -> None:
        with self.tx.write() as t:
            hook = t.session.get(Webhook, webhook_id)
            if hook is None or not hook.active:
                raise NotFound(f"no webhook {webhook_id}")
            hook.active = False
            t.session.add(hook)
            audit.append(t.session, actor=actor, event="webhook.removed", subject=f"webhook:{webhook_id}")

    def set_fleet_policy(self, value: StoredPolicy | None, *, actor: str) -> FleetPolicy:
        """Replace the fleet layer (None removes it) after validating it (a bad policy is a 422 naming the line)."""
        with self.tx.write() as t:
            return set_fleet_policy(t.session, value=value, actor=actor)

    # --- hosts ------------------------------------------------------------------------------------------------

    def add_host(self, *, actor: str, name: str, url: str) -> Host:
        """Register an engine; it must answer now, so a typo is caught here rather than at the first create."""
        with self.tx.read() as session:
            taken = name == LOCAL or session.exec(select(Host).where(Host.name == name)).first() is not None
        if taken:
            raise Conflict(f"a host named {name!r} exists already")
        engine = self.hosts.add(name, validate_host_url(url))
        try:
            engine.ping()
        except Unavailable as e:
            self.hosts.remove(name)
            raise Invalid(e.message) from e
        row = Host(name=name, url=url)
        with self.tx.write() as t:
            t.session.add(row)
            audit.append(t.session, actor=actor, event="host.added", subject=f"host:{name}", url=url)
        return row

    # --- templates ------------------------------------------------------------------------------------------

    def create_template(self, body: TemplateCreate, *, actor: str) -> Template:
        """Add a template; its image must exist on its host, and its pool starts filling in the background."""
        with self.tx.read() as session:
            if session.exec(select(Template).where(Template.name == body.name)).first() is not None:
                raise Conflict(f"a template named {body.name!r} exists already")
        engine = self.hosts.get(body.host)
        lifecycle.check_limits(
            engine, self.settings, cpus=body.cpus, memory_mb=body.memory_mb, ttl_s=body.ttl_s, disk_mb=body.disk_mb
        )
        self.provisioner.require_image(engine, body.image)
        if body.policy is not None:
            compile_policy(body.policy, source=f"template {body.name} policy")
        template = Template.model_validate(body)
        with self.tx.write() as t:
            t.session.add(template)
            t.session.flush()
            audit.append(
                t.session,
                actor=actor,
                event="template.created",
                subject=f"template:{template.name}",
                template=body.model_dump(mode="json"),
            )
            if template.pool_size:
                t.effects.append(refill_pool(template.id or 0))
        return template

    def update_template(self, name: str, body: TemplateUpdate, *, actor: str) -> Template:
        """Change a template's pool size, image, TTL or policy; the pool is refilled (or drained) to match."""
        with self.tx.read() as session:
            template = lifecycle.find_template(session, name)
        changes: dict[str, Any] = body.model_dump(exclude_unset=True)
        engine = self.hosts.get(template.host)
        lifecycle.check_limits(engine, self.settings, cpus=None, memory_mb=None, ttl_s=changes.get("ttl_s"))
        if "image" in changes:
            self.provisioner.require_image(engine, changes["image"])
        if changes.get("policy") is not None:
            compile_policy(changes["policy"], source=f"template {name} policy")
        with self.tx.write() as t:
            t.session.add(template)
            for key, value in changes.items():
                setattr(template, key, value)
            audit.append(t.session, actor=actor, event="template.updated", subject=f"template:{name}", changes=changes)
        if "image" in changes:
            self.upkeep.drain(template.id or 0)  # before the refill, which would make them anew from the new image
        self.tx.after(refill_pool(template.id or 0))
        return template

    def delete_template(self, name: str, *, actor: str) -> None:
        """Delete a template and its warm pool; its running sandboxes keep running."""
        with self.tx.read() as session:
            template = lifecycle.find_template(session, name)
        self.upkeep.drain(template.id or 0)
        with self.tx.write() as t:
            t.session.execute(
                sa.update(Sandbox).where(col(Sandbox.template_id) == template.id).values(template_id=None)
            )
            t.session.execute(sa.delete(Template).where(col(Template.id) == template.id))
            audit.append(t.session, actor=actor, event="template.deleted", subject=f"template:{name}")

    # --- services and secrets ---------------------------------------------------------------------------------

    def add_service(self, body: ServiceCreate, *, actor: str) -> ServicePublic:
        """Register an upstream for sandboxes (or the git broker); its secret, if given, is stored sealed."""
        with self.tx.write() as t:
            row = services.add_service(t.session, box=self.secrets, body=body, actor=actor)
        return services.public_service(row)

    def list_services(self) -> list[ServicePublic]:
        with self.tx.read() as session:
            return [services.public_service(row) for row in services.list_services(session)]

    def remove_service(self, name: str, *, actor: str) -> None:
        with self.tx.write() as t:
            services.remove_service(t.session, name=name, actor=actor)

    def set_secret(self, name: str, value: str, *, actor: str) -> tuple[SecretPublic, bool]:
        """Store or replace a named secret, sealed; (its public view, whether it is new)."""
        with self.tx.write() as t:
            row, created = services.set_secret(t.session, box=self.secrets, name=name, value=value, actor=actor)
        return services.public_secret(row), created

    def list_secrets(self) -> list[SecretPublic]:
        with self.tx.read() as session:
            return [services.public_secret(row) for row in services.list_secrets(session)]

    def remove_secret(self, name: str, *, actor: str) -> None:
        with self.tx.write() as t:
            services.remove_secret(t.session, name=name, actor=actor)
