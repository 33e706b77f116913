"""First-run setup of a home: schema, the default template, the first admin."""

from __future__ import annotations

from sqlmodel import select

from controller.auth import create_admin
from controller.config import Settings
from controller.db import engine_for, migrate, session_scope
from controller.models import Role, Template, User

DEFAULT_TEMPLATE = "python"


def initialise(settings: Settings, *, admin: str = "admin") -> str | None:
    """Idempotent: returns the new admin's token the first time, None once an admin exists."""
    settings.ensure_dirs()
    migrate(settings)
    with session_scope(engine_for(settings.db_url)) as session:
        if session.exec(select(Template).where(Template.name == DEFAULT_TEMPLATE)).first() is None:
            session.add(Template(name=DEFAULT_TEMPLATE, image=settings.default_image, pool_size=settings.pool_size))
        if session.exec(select(User).where(User.role == Role.admin)).first() is not None:
            return None
        return create_admin(session=session, name=admin).token
