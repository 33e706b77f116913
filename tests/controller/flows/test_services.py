"""Services and secrets as the admin flows keep them: sealed at rest, checked on the way in, audited without the
secret, and handed back whole only to the controller's own lookups."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlmodel import Session, select

from controller.errors import Conflict, Invalid, NotFound
from controller.models import Event, Secret, Service, ServiceCreate, ServiceKind
from controller.oversight import services
from controller.oversight.models import AuditEntry
from controller.oversight.services import ServiceTarget, reveal_secret, service_target
from controller.secrets import SecretKeyChanged
from tests.controller.flows.conftest import Fast

KEY = "sk-ant-api03-not-for-your-eyes-4242"
ACTOR = "alice"


def add(fast: Fast, name: str = "claude", kind: str = "anthropic", **body: Any) -> Any:
    body.setdefault("upstream", "https://api.anthropic.com")
    return fast.fleet.admin.add_service(ServiceCreate(name=name, kind=ServiceKind(kind), **body), actor=ACTOR)


def target(fast: Fast, name: str) -> ServiceTarget:
    with fast.fleet.tx.read() as session:
        return service_target(session, fast.fleet.admin.secrets, name)


def reveal(fast: Fast, name: str) -> str:
    with fast.fleet.tx.read() as session:
        return reveal_secret(session, fast.fleet.admin.secrets, name)


def everything_stored(fast: Fast) -> str:
    """The audit log and the event history, whole, as JSON."""
    with Session(fast.fleet.db) as session:
        rows = [r.model_dump(mode="json") for r in session.exec(select(AuditEntry))]
        rows += [r.model_dump(mode="json") for r in session.exec(select(Event))]
    return json.dumps(rows)


def test_a_model_service_keeps_its_secret_sealed_and_the_lookup_opens_it(fast: Fast) -> None:
    public = add(fast, secret=KEY)
    assert public.has_secret
    assert public.header == "x-api-key"
    assert public.base_url == "http://127.0.0.1:7070/claude"
    assert KEY not in public.model_dump_json()
    stored = fast.row(Service, "claude")
    assert stored.sealed_secret
    assert KEY.encode() not in stored.sealed_secret
    found = target(fast, "claude")
    assert (found.kind, found.upstream, found.header, found.secret) == (
        ServiceKind.anthropic,
        "https://api.anthropic.com",
        "x-api-key",
        KEY,
    )
    assert found.served
    assert found.auth_value() == KEY


def test_each_kind_has_its_default_header(fast: Fast) -> None:
    assert add(fast, "gpt", "openai", upstream="https://api.openai.com/v1", secret="sk-1").header == "Authorization"
    assert add(fast, "open-api", "http", upstream="http://127.0.0.1:9000").header is None
    assert add(fast, "own-header", "openai", upstream="https://llm.internal", header="api-key").header == "api-key"


@pytest.mark.parametrize(
    ("header", "secret", "value"),
    [
        ("Authorization", "sk-1", "Bearer sk-1"),
        ("authorization", "sk-1", "Bearer sk-1"),
        ("Authorization", "Basic dXNlcjpwdw==", "Basic dXNlcjpwdw=="),
        ("x-api-key", "sk-1", "sk-1"),
        ("Authorization", None, None),
    ],
)
def test_the_auth_value_is_the_secret_with_bearer_only_for_a_bare_authorization_secret(
    header: str, secret: str | None, value: str | None
) -> None:
    found = ServiceTarget(name="s", kind=ServiceKind.http, upstream="https://x", header=header, secret=secret)
    assert found.auth_value() == value


def test_a_git_remote_is_for_the_broker_and_not_served_to_sandboxes(fast: Fast) -> None:
    for name, upstream in [
        ("ssh-remote", "ssh://git@github.com/acme/app.git"),
        ("git-remote", "git://git.example.com/app.git"),
        ("file-remote", "file:///srv/git/app.git"),
        ("https-remote", "https://github.com/acme/app.git"),
    ]:
        public = add(fast, name, "git", upstream=upstream, secret=KEY)
        assert public.base_url is None
        assert public.header is None
    assert not target(fast, "ssh-remote").served
    assert target(fast, "ssh-remote").secret == KEY


@pytest.mark.parametrize(
    ("kind", "body", "words"),
    [
        ("anthropic", {"upstream": "ftp://api.anthropic.com"}, ["anthropic service must start with http://, https://"]),
        ("openai", {"upstream": "api.openai.com"}, ["must start with http://"]),
        ("http", {"upstream": "git://example.com/x"}, ["http service must start with"]),
        ("git", {"upstream": "git@github.com:acme/app.git"}, ["git://, ssh://", "ssh://git@host/path"]),
        ("git", {"upstream": "ftp://example.com/app.git"}, ["git service must start with git://"]),
        ("http", {"upstream": "https://"}, ["no host"]),
        ("http", {"upstream": "https://example.com:99999"}, ["not a valid URL", "Port"]),
        ("http", {"upstream": "https://example.com/a b"}, ["spaces"]),
        ("http", {"upstream": "https://example.com/?q=1"}, ["base URL", "?query"]),
        ("git", {"upstream": "file://"}, ["needs a path"]),
        ("http", {"upstream": "https://example.com", "secret": "s"}, ["needs the header", "--header"]),
        ("http", {"upstream": "https://example.com", "header": "X Api Key"}, ["not a valid HTTP header name"]),
        ("http", {"upstream": "https://example.com", "header": "X-Key:"}, ["not a valid HTTP header name"]),
        ("http", {"upstream": "https://example.com", "header": "Host"}, ["frames or routes"]),
        ("http", {"upstream": "https://example.com", "header": "Proxy-Authorization"}, ["frames or routes"]),
    ],
)
def test_bad_services_are_refused_with_what_to_do(
    fast: Fast, kind: str, body: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(Invalid) as raised:
        add(fast, "bad", kind, **body)
    for word in words:
        assert word in raised.value.message
    assert fast.row(Service, "bad") is None
    assert fast.audit("service:bad") == []


def test_a_password_in_the_upstream_is_refused_without_repeating_it(fast: Fast) -> None:
    with pytest.raises(Invalid, match=r"carries a password.*secret-env") as raised:
        add(fast, "leaky", "git", upstream=f"https://bot:{KEY}@github.com/acme/app.git")
    assert KEY not in raised.value.message


def test_a_name_taken_is_a_conflict_and_the_first_service_stays(fast: Fast) -> None:
    add(fast, secret=KEY)
    with pytest.raises(Conflict, match=r"exists already.*fleetgate service rm claude"):
        add(fast, upstream="https://elsewhere.example.com", secret="other")
    assert target(fast, "claude").secret == KEY


def test_removing_a_service_forgets_it_and_a_missing_one_is_a_clear_not_found(fast: Fast) -> None:
    add(fast, secret=KEY)
    fast.fleet.admin.remove_service("claude", actor=ACTOR)
    assert fast.fleet.admin.list_services() == []
    with pytest.raises(NotFound, match=r"no service 'claude'.*fleetgate service ls"):
        fast.fleet.admin.remove_service("claude", actor=ACTOR)
    with pytest.raises(NotFound, match="no service 'claude'"):
        target(fast, "claude")


def test_secrets_are_set_replaced_revealed_and_removed(fast: Fast) -> None:
    first, created = fast.fleet.admin.set_secret("SMTP_PASSWORD", KEY, actor=ACTOR)
    assert created
    assert first.created_by == ACTOR
    assert KEY.encode() not in fast.row(Secret, "SMTP_PASSWORD").sealed
    assert reveal(fast, "SMTP_PASSWORD") == KEY
    second, created = fast.fleet.admin.set_secret("SMTP_PASSWORD", "rotated", actor="bob")
    assert not created
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert reveal(fast, "SMTP_PASSWORD") == "rotated"
    assert [s.name for s in fast.fleet.admin.list_secrets()] == ["SMTP_PASSWORD"]
    fast.fleet.admin.remove_secret("SMTP_PASSWORD", actor=ACTOR)
    with pytest.raises(NotFound, match=r"no secret 'SMTP_PASSWORD'.*fleetgate secret ls"):
        reveal(fast, "SMTP_PASSWORD")
    with pytest.raises(NotFound, match="no secret 'SMTP_PASSWORD'"):
        fast.fleet.admin.remove_secret("SMTP_PASSWORD", actor=ACTOR)


@pytest.mark.parametrize("name", ["", "-leading-dash", "has space", "a/b", "x" * 64, "ünï"])
def test_bad_secret_names_are_refused(fast: Fast, name: str) -> None:
    with pytest.raises(Invalid, match=r"secret name .* is not valid"):
        fast.fleet.admin.set_secret(name, KEY, actor=ACTOR)


def test_every_change_is_audited_and_no_secret_is_stored_in_the_clear(fast: Fast) -> None:
    add(fast, secret=KEY)
    fast.fleet.admin.set_secret("deploy-token", KEY, actor=ACTOR)
    fast.fleet.admin.set_secret("deploy-token", KEY, actor=ACTOR)
    fast.fleet.admin.remove_secret("deploy-token", actor=ACTOR)
    fast.fleet.admin.remove_service("claude", actor=ACTOR)
    events = [(e.event, e.subject, e.actor) for e in fast.audit()]
    assert events == [
        ("service.added", "service:claude", ACTOR),
        ("secret.set", "secret:deploy-token", ACTOR),
        ("secret.set", "secret:deploy-token", ACTOR),
        ("secret.removed", "secret:deploy-token", ACTOR),
        ("service.removed", "service:claude", ACTOR),
    ]
    assert fast.audit("service:claude")[0].data["has_secret"] is True
    stored = everything_stored(fast)
    assert KEY not in stored
    assert str(len(KEY)) not in json.dumps([e.data for e in fast.audit()])  # not even its length


def test_a_changed_key_file_makes_the_lookups_say_so(fast: Fast) -> None:
    add(fast, secret=KEY)
    fast.fleet.admin.set_secret("deploy-token", KEY, actor=ACTOR)
    fast.settings.secrets_key.write_bytes(Fernet.generate_key())
    fast.fleet.admin.secrets = type(fast.fleet.admin.secrets)(fast.settings.secrets_key)  # a restarted process
    with pytest.raises(SecretKeyChanged, match="key file changed"):
        target(fast, "claude")
    with pytest.raises(SecretKeyChanged, match="key file changed"):
        reveal(fast, "deploy-token")


def test_a_failed_audit_append_leaves_no_service_behind(fast: Fast, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store is down")

    monkeypatch.setattr(services.audit, "append", fail)
    with pytest.raises(RuntimeError):
        add(fast, secret=KEY)
    with pytest.raises(RuntimeError):
        fast.fleet.admin.set_secret("deploy-token", KEY, actor=ACTOR)
    assert fast.row(Service, "claude") is None
    assert fast.row(Secret, "deploy-token") is None
