"""Settings: the only module that reads the environment.

Values come from `FLEETGATE_*` variables, then `/etc/fleetgate/fleetgate.env` (or the file named by
`FLEETGATE_ENV_FILE`), then the defaults below.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ENV_FILE = "/etc/fleetgate/fleetgate.env"
# FLEETGATE_SANDBOX_RUNTIME: gVisor where it works (auto), gVisor or refuse to make sandboxes (runsc), or never.
RuntimeSetting = Literal["auto", "runsc", "runc"]


def _default_home() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/fleetgate")
    return Path.home() / ".local" / "share" / "fleetgate"


class Settings(BaseSettings):
    """Everything a deployment can tune, read once per process."""

    model_config = SettingsConfigDict(env_prefix="FLEETGATE_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    bind: str = "127.0.0.1:8700"
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    docker_url: str = "unix:///var/run/docker.sock"
    instance: str = ""
    external_url: str = ""
    smtp_url: str = ""
    mail_from: str = "fleetgate@localhost"

    default_image: str = "fleetgate/python:latest"
    sandbox_runtime: RuntimeSetting = "auto"
    sandbox_uid: int = 10001
    default_cpus: float = 1.0
    default_memory_mb: int = 512
    default_pids: int = 256
    default_disk_mb: Annotated[int, Field(ge=16)] = 5120
    max_ttl_s: int = 7 * 24 * 3600
    exec_timeout_s: float = 60.0
    max_exec_output_bytes: int = 1 << 20
    max_body_bytes: int = 1 << 20

    pool_size: Annotated[int, Field(ge=0, le=64)] = 2
    reap_interval_s: float = 10.0
    reconcile_interval_s: float = 60.0
    heartbeat_s: float = 5.0
    escalate_after_denials: Annotated[int, Field(ge=0)] = 3
    approval_sweep_s: float = 1.0
    sample_interval_s: float = 5.0

    # Egress (the forward proxy and the services; see oversight/destinations.py and gateway/egress.py).
    # FLEETGATE_EGRESS_ALLOW: destinations an admin opens despite the always-refused ranges, comma-separated
    # `ADDRESS[/PREFIX]:PORT` or `ADDRESS[/PREFIX]` (every port), e.g. `127.0.0.1:9000,10.0.0.0/8:443`.
    egress_allow: str = ""
    # Per-sandbox budgets; a create may set lower or higher ones (`budget`), 0 means no limit.
    model_requests_per_sandbox: Annotated[int, Field(ge=0)] = 1000
    model_tokens_per_sandbox: Annotated[int, Field(ge=0)] = 5_000_000
    egress_connections_per_sandbox: Annotated[int, Field(ge=0)] = 2000
    egress_bytes_per_sandbox: Annotated[int, Field(ge=0)] = 2 << 30
    max_service_body_bytes: Annotated[int, Field(ge=1024)] = 32 << 20

    @field_validator("bind")
    @classmethod
    def _bind_is_host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"FLEETGATE_BIND must look like 127.0.0.1:8700, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])

    @property
    def url(self) -> str:
        return f"http://{self.bind}"

    @property
    def public_url(self) -> str:
        """Where people reach the console (links in notifications point here)."""
        return (self.external_url or self.url).rstrip("/")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'fleetgate.db'}"

    @property
    def gateway_dir(self) -> Path:
        """Bind-mounted read-only at /run/fleetgate in every sandbox; holds only the runtime socket."""
        return self.home / "gateway"

    @property
    def gateway_socket(self) -> Path:
        return self.gateway_dir / "runtime.sock"

    @property
    def sandboxes_dir(self) -> Path:
        """One folder per sandbox with its credentials, mounted at /run/fleetgate/sandbox."""
        return self.home / "sandboxes"

    @property
    def workspaces_dir(self) -> Path:
        """Each sandbox's workspace: an image file and the folder it is mounted on (sandboxes/workspaces.py)."""
        return self.home / "workspaces"

    @property
    def secrets_key(self) -> Path:
        """The key that seals secrets at rest (controller/secrets.py); made on first use, mode 0600."""
        return self.home / "keys" / "secrets.key"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def ensure_dirs(self) -> None:
        """Create the home's folders; the gateway folder is world-traversable so sandboxes reach the socket."""
        for path in (self.home, self.sandboxes_dir, self.run_dir, self.log_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o711)
        self.gateway_dir.mkdir(exist_ok=True)
        self.gateway_dir.chmod(0o755)
        (self.gateway_dir / "sandbox").mkdir(exist_ok=True)
        self.sandboxes_dir.chmod(0o711)


def instance_id(settings: Settings) -> str:
    """This controller's name on the engines: labels every container, volume and network it makes."""
    if settings.instance:
        return settings.instance
    path = settings.home / "instance-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        settings.home.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(4)
        path.write_text(value + "\n")
        return value


def env_file() -> str:
    return os.environ.get("FLEETGATE_ENV_FILE", DEFAULT_ENV_FILE)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; environment variables win over the env file."""
    path = env_file()
    return Settings(_env_file=path if os.path.exists(path) else None)


class ClientSettings(BaseSettings):
    """What the CLI needs to reach a controller: `FLEETGATE_URL` and `FLEETGATE_TOKEN`."""

    model_config = SettingsConfigDict(env_prefix="FLEETGATE_", extra="ignore")

    url: str = ""
    token: str = ""


def get_client_settings() -> ClientSettings:
    path = env_file()
    return ClientSettings(_env_file=path if os.path.exists(path) else None)
