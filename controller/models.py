"""State, as SQLModel families: XBase (shared fields) / XCreate (input) / X (table) / XPublic (output)."""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pydantic
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy.types import TypeDecorator
from sqlmodel import JSON, Column, Field, SQLModel

T = TypeVar("T")

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
SANDBOX_ID_PATTERN = r"^sb_[0-9a-f]{12}$"
ROW_ID_MAX = 2**63 - 1  # the largest id a database row can have (SQLite and PostgreSQL bigint alike)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite has no zones) and always hands back an aware UTC datetime."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class StrEnumType(TypeDecorator[Any]):
    """A StrEnum stored as its plain value, so adding a member needs no migration."""

    impl = sa.String(16)
    cache_ok = True

    def __init__(self, enum_type: type[enum.StrEnum]) -> None:
        super().__init__()
        self.enum_type = enum_type

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else self.enum_type(value).value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else self.enum_type(value)


def _when(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class Role(enum.StrEnum):
    """Roles in order of power: each includes everything below it."""

    viewer = "viewer"
    approver = "approver"
    operator = "operator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def includes(self, other: Role) -> bool:
        return self.rank >= other.rank


class SandboxStatus(enum.StrEnum):
    creating = "creating"
    warming = "warming"
    pooled = "pooled"
    running = "running"
    paused = "paused"
    exited = "exited"
    stopped = "stopped"
    gone = "gone"
    failed = "failed"
    removed = "removed"

    @property
    def has_container(self) -> bool:
        """Whether the engine should still hold a container for a sandbox in this status."""
        return self not in {SandboxStatus.gone, SandboxStatus.failed, SandboxStatus.removed}


# --- users and tokens -------------------------------------------------------------------------------------


class User(SQLModel, table=True):
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=63)
    role: Role = Field(sa_type=StrEnumType(Role))
    created_at: datetime = _when(default_factory=utcnow)


class Token(SQLModel, table=True):
    """An API token; only its SHA-256 is stored, the secret is shown once."""

    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=63)
    prefix: str = Field(max_length=16)
    hash: str = Field(index=True, unique=True, max_length=64)
    created_at: datetime = _when(default_factory=utcnow)
    last_used_at: datetime | None = _when(default=None)
    revoked_at: datetime | None = _when(default=None)


class ConsoleSession(SQLModel, table=True):
    """A browser's login to the console: the cookie's secret (hashed) and its CSRF token."""

    __tablename__ = "console_session"

    hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    csrf: str = Field(max_length=64)
    created_at: datetime = _when(default_factory=utcnow)
    expires_at: datetime = _when(index=True)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = pydantic.Field(pattern=NAME_PATTERN, description="the user the token belongs to; created if new")
    role: Role
    label: str = pydantic.Field(default="api", pattern=NAME_PATTERN)


class TokenPublic(BaseModel):
    id: int
    user: str
    role: Role
    label: str
    prefix: str
    created_at: datetime


class TokenCreated(TokenPublic):
    token: str


# --- hosts and templates ----------------------------------------------------------------------------------


class Host(SQLModel, table=True):
    """A Docker engine sandboxes can run on: the local socket or an ssh:// address."""

    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=63)
    url: str = Field(max_length=255)
    created_at: datetime = _when(default_factory=utcnow)


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: float | None = pydantic.Field(default=None, ge=0.01, le=256, description="CPU cores, e.g. 0.5")
    memory_mb: int | None = pydantic.Field(default=None, ge=16, le=1 << 20)
    pids: int | None = pydantic.Field(default=None, ge=16, le=1 << 16)
    disk_mb: int | None = pydantic.Field(
        default=None, ge=16, le=1 << 24, description="the workspace's size limit in MiB (default 5 GiB)"
    )


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not ENV_NAME.match(key):
            raise ValueError(f"env name {key!r} is not a valid variable name (letters, digits, _)")
        if key.startswith("FLEETGATE_"):
            raise ValueError(f"env name {key!r} is reserved: FLEETGATE_* is set by fleetgate itself")
    return env


class TemplateBase(SQLModel):
    name: str = Field(index=True, unique=True, regex=NAME_PATTERN)
    image: str = Field(max_length=255)
    cpus: float | None = Field(default=None, ge=0.01, le=256)
    memory_mb: int | None = Field(default=None, ge=16, le=1 << 20)
    pids: int | None = Field(default=None, ge=16, le=1 << 16)
    disk_mb: int | None = Field(default=None, ge=16, le=1 << 24)
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    command: list[str] | None = Field(default=None, sa_column=Column(JSON))
    ttl_s: int | None = Field(default=None, gt=0)
    pool_size: int = Field(default=0, ge=0, le=64)
    host: str = Field(default="local", max_length=63)
    policy: str | dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Template(TemplateBase, table=True):
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _when(default_factory=utcnow)


class TemplateCreate(TemplateBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    _env = field_validator("env")(classmethod(lambda cls, v: _check_env(v)))


class TemplatePublic(TemplateBase):
    id: int
    created_at: datetime
    pool_ready: int = 0


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool_size: int | None = pydantic.Field(default=None, ge=0, le=64)
    image: str | None = pydantic.Field(default=None, min_length=1, max_length=255)
    ttl_s: int | None = pydantic.Field(default=None, gt=0)
    policy: str | dict[str, Any] | None = None


# --- sandboxes --------------------------------------------------------------------------------------------


class Sandbox(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=16)
    status: SandboxStatus = Field(default=SandboxStatus.creating, sa_type=StrEnumType(SandboxStatus), index=True)
    host: str = Field(default="local", max_length=63)
    image: str = Field(max_length=255)
    template_id: int | None = Field(default=None, foreign_key="template.id", index=True)
    owner_id: int | None = Field(default=None, foreign_key="user.id")
    container_id: str | None = Field(default=None, max_length=64)
    volume: str | None = Field(default=None, max_length=128)
    keep_volume: bool = False
    cpus: float
    memory_mb: int
    pids: int
    disk_mb: int | None = None  # the workspace's size limit; None for sandboxes made before limits existed
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    command: list[str] | None = Field(default=None, sa_column=Column(JSON))
    ttl_s: int | None = None
    policy: str | dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    budget: dict[str, int] | None = Field(default=None, sa_column=Column(JSON))  # BudgetSpec, set figures only
    token_hash: str | None = Field(default=None, index=True, max_length=64)
    consecutive_denials: int = 0
    error: str | None = None
    exit_code: int | None = None
    created_at: datetime = _when(default_factory=utcnow)
    started_at: datetime | None = _when(default=None)
    expires_at: datetime | None = _when(default=None, index=True)
    finished_at: datetime | None = _when(default=None)
    last_heartbeat_at: datetime | None = _when(default=None)


class BudgetSpec(BaseModel):
    """A sandbox's egress budget; a figure left out is the controller's default (FLEETGATE_*_PER_SANDBOX), 0 is
    no limit."""

    model_config = ConfigDict(extra="forbid")

    model_requests: int | None = pydantic.Field(default=None, ge=0)
    model_tokens: int | None = pydantic.Field(default=None, ge=0)
    connections: int | None = pydantic.Field(default=None, ge=0)
    bytes: int | None = pydantic.Field(default=None, ge=0)


class SandboxCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str | None = pydantic.Field(default=None, pattern=NAME_PATTERN)
    image: str | None = pydantic.Field(default=None, min_length=1, max_length=255)
    policy: str | dict[str, Any] | None = None
    resources: Resources = pydantic.Field(default_factory=Resources)
    command: list[str] | None = pydantic.Field(default=None, min_length=1, max_length=256)
    env: dict[str, str] = pydantic.Field(default_factory=dict, max_length=256)
    ttl_s: int | None = pydantic.Field(default=None, gt=0)
    keep_volume: bool = False
    host: str | None = pydantic.Field(default=None, pattern=NAME_PATTERN)
    budget: BudgetSpec | None = None

    _env = field_validator("env")(classmethod(lambda cls, v: _check_env(v)))


class WorkspaceUsage(BaseModel):
    """How full a sandbox's size-limited workspace is (absent where this host cannot limit it)."""

    used_mb: float
    limit_mb: int


class SandboxPublic(BaseModel):
    id: str
    status: SandboxStatus
    container_id: str | None
    host: str
    image: str
    template: str | None = None
    resources: Resources
    command: list[str] | None
    env: dict[str, str]
    volume: str | None
    keep_volume: bool
    workspace: WorkspaceUsage | None = None
    exit_code: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    expires_at: datetime | None
    finished_at: datetime | None
    last_heartbeat_at: datetime | None


class ExecRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: list[str] = pydantic.Field(min_length=1, max_length=1024)
    timeout_s: float | None = pydantic.Field(default=None, gt=0, le=3600)
    env: dict[str, str] = pydantic.Field(default_factory=dict, max_length=256)
    workdir: str | None = pydantic.Field(default=None, pattern=r"^/")

    _env = field_validator("env")(classmethod(lambda cls, v: _check_env(v)))


class ExecResult(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration_ms: float


# --- events -----------------------------------------------------------------------------------------------


class Event(SQLModel, table=True):
    """Something a sandbox did or had done to it: lifecycle, an output line, a heartbeat gap."""

    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(index=True, max_length=16)
    kind: str = Field(max_length=32, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    stream_id: str | None = Field(default=None, max_length=32, index=True)
    created_at: datetime = _when(default_factory=utcnow)


class Page(BaseModel, Generic[T]):
    """Every list endpoint answers {"items": [...]}, with a cursor for the next page when there is one."""

    items: list[T]
    next: str | None = None


# --- services and secrets ---------------------------------------------------------------------------------

SECRET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # noqa: S105 - a pattern for names, not a password
SECRET_MAX_CHARS = 64 * 1024


class ServiceKind(enum.StrEnum):
    """What a service speaks. `git` is a remote for the `git.push` broker only, never served to sandboxes."""

    anthropic = "anthropic"
    openai = "openai"
    http = "http"
    git = "git"


class Secret(SQLModel, table=True):
    """A named secret for the brokers, sealed with the controller's key (controller/secrets.py)."""

    name: str = Field(primary_key=True, max_length=63)
    sealed: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)
    created_by: str = Field(max_length=128)


class SecretSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = pydantic.Field(min_length=1, max_length=SECRET_MAX_CHARS)


class SecretPublic(BaseModel):
    name: str
    created_at: datetime
    updated_at: datetime
    created_by: str


class Service(SQLModel, table=True):
    """An upstream the controller reaches for sandboxes (or for a broker), with its sealed secret if any."""

    name: str = Field(primary_key=True, max_length=63)
    kind: ServiceKind = Field(sa_type=StrEnumType(ServiceKind))
    upstream: str = Field(max_length=2048)
    header: str | None = Field(default=None, max_length=128)
    sealed_secret: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    created_at: datetime = _when(default_factory=utcnow)
    created_by: str = Field(max_length=128)


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = pydantic.Field(pattern=NAME_PATTERN)
    kind: ServiceKind
    upstream: str = pydantic.Field(min_length=1, max_length=2048)
    secret: str | None = pydantic.Field(default=None, min_length=1, max_length=SECRET_MAX_CHARS)
    header: str | None = pydantic.Field(default=None, min_length=1, max_length=128)


class ServicePublic(BaseModel):
    name: str
    kind: ServiceKind
    upstream: str
    header: str | None
    has_secret: bool
    base_url: str | None = pydantic.Field(description="where a sandbox reaches it (model services only)")
    created_at: datetime
    created_by: str
