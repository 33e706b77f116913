"""Services and secrets over REST: admins change them, answers and errors never carry a secret, bad input is a
4xx a person can act on (fast tier: a real app on uvicorn over an in-memory engine)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.models import Role
from controller.oversight.services import reveal_secret, service_target
from tests.controller.served import Served, served_fleet

KEY = "sk-ant-api03-never-echo-me-0xC0FFEE"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_fleet(tmp_path_factory.mktemp("services") / "home") as served:
        yield served


@pytest.fixture
def admin(api: Served) -> Iterator[httpx.Client]:
    with api.http(Role.admin) as client:
        yield client


def everything_answered_and_stored(admin: httpx.Client, home: Path) -> str:
    answers = [admin.get(path).text for path in ("/api/v1/services", "/api/v1/secrets", "/api/v1/audit?limit=1000")]
    with sqlite3.connect(home / "fleetgate.db") as db:
        dump = "\n".join(db.iterdump())
    return "\n".join([*answers, dump])


def test_a_service_is_added_listed_and_removed(api: Served, admin: httpx.Client) -> None:
    body = {"name": "claude", "kind": "anthropic", "upstream": "https://api.anthropic.com", "secret": KEY}
    created = admin.post("/api/v1/services", json=body)
    assert created.status_code == 201, created.text
    assert KEY not in created.text
    view = created.json()
    assert {k: view[k] for k in ("name", "kind", "upstream", "header", "has_secret", "base_url", "created_by")} == {
        "name": "claude",
        "kind": "anthropic",
        "upstream": "https://api.anthropic.com",
        "header": "x-api-key",
        "has_secret": True,
        "base_url": "http://127.0.0.1:7070/claude",
        "created_by": "admin-user",
    }
    assert "secret" not in view
    assert "sealed_secret" not in view
    listed = admin.get("/api/v1/services").json()["items"]
    assert [s["name"] for s in listed] == ["claude"]
    with api.fleet.tx.read() as session:
        assert service_target(session, api.fleet.admin.secrets, "claude").auth_value() == KEY
    assert KEY not in everything_answered_and_stored(admin, api.home)
    assert admin.delete("/api/v1/services/claude").status_code == 204
    missing = admin.delete("/api/v1/services/claude")
    assert missing.status_code == 404
    assert "no service 'claude'" in missing.json()["detail"]


def test_a_secret_is_set_replaced_listed_and_removed(api: Served, admin: httpx.Client) -> None:
    first = admin.put("/api/v1/secrets/GITHUB_TOKEN", json={"value": KEY})
    assert first.status_code == 201, first.text
    assert set(first.json()) == {"name", "created_at", "updated_at", "created_by"}
    again = admin.put("/api/v1/secrets/GITHUB_TOKEN", json={"value": KEY + "-rotated"})
    assert again.status_code == 200
    assert [s["name"] for s in admin.get("/api/v1/secrets").json()["items"]] == ["GITHUB_TOKEN"]
    with api.fleet.tx.read() as session:
        assert reveal_secret(session, api.fleet.admin.secrets, "GITHUB_TOKEN") == KEY + "-rotated"
    assert KEY not in everything_answered_and_stored(admin, api.home)
    assert admin.delete("/api/v1/secrets/GITHUB_TOKEN").status_code == 204
    missing = admin.delete("/api/v1/secrets/GITHUB_TOKEN")
    assert missing.status_code == 404
    assert "no secret 'GITHUB_TOKEN'" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        (
            "POST",
            "/api/v1/services",
            {"name": "x", "kind": "smtp", "upstream": "https://x", "secret": KEY},
            422,
            ["kind"],
        ),
        ("POST", "/api/v1/services", {"name": "Bad Name", "kind": "http", "upstream": "https://x"}, 422, ["name"]),
        ("POST", "/api/v1/services", {"name": "x", "kind": "http", "upstream": "https://x", "secret": [KEY]}, 422, []),
        ("POST", "/api/v1/services", {"name": "x", "kind": "http", "upstream": "https://x", "key": KEY}, 422, ["key"]),
        (
            "POST",
            "/api/v1/services",
            {"name": "x", "kind": "http", "upstream": "https://x", "secret": KEY},
            422,
            ["--header"],
        ),
        (
            "POST",
            "/api/v1/services",
            {"name": "x", "kind": "http", "upstream": f"https://u:{KEY}@x"},
            422,
            ["password"],
        ),
        (
            "POST",
            "/api/v1/services",
            {"name": "x", "kind": "http", "upstream": "https://x", "secret": ""},
            422,
            ["secret"],
        ),
        ("PUT", "/api/v1/secrets/a%20b", {"value": KEY}, 422, ["secret name 'a b' is not valid"]),
        ("PUT", "/api/v1/secrets/ok", {"value": [KEY]}, 422, ["value"]),
        ("PUT", "/api/v1/secrets/ok", {"value": KEY, "note": KEY}, 422, ["note", "not a field"]),
        ("PUT", "/api/v1/secrets/ok", {"secret": KEY}, 422, ["value: is required"]),
        ("PUT", "/api/v1/secrets/ok", {"value": ""}, 422, ["value"]),
        ("PUT", "/api/v1/secrets/ok", {"value": KEY * 4096}, 422, ["value"]),
        ("PUT", "/api/v1/secrets/ok", KEY, 422, []),
    ],
)
def test_bad_input_is_a_clear_4xx_that_never_echoes_the_secret(
    admin: httpx.Client, method: str, path: str, body: Any, status: int, words: list[str]
) -> None:
    response = admin.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert KEY not in response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail


def test_a_body_that_is_not_json_is_refused_without_echoing_it(admin: httpx.Client) -> None:
    broken = '{"value": "' + KEY + '", oops}'
    response = admin.put("/api/v1/secrets/ok", content=broken, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]
    assert KEY not in response.text


@pytest.mark.parametrize("role", [Role.viewer, Role.approver, Role.operator])
def test_only_admins_change_them_and_list_secrets_but_anyone_lists_services(api: Served, role: Role) -> None:
    body = {"name": "nope", "kind": "http", "upstream": "https://x"}
    with api.http(role) as client:
        assert client.get("/api/v1/services").status_code == 200
        for method, path, json in [
            ("POST", "/api/v1/services", body),
            ("DELETE", "/api/v1/services/nope", None),
            ("GET", "/api/v1/secrets", None),
            ("PUT", "/api/v1/secrets/nope", {"value": KEY}),
            ("DELETE", "/api/v1/secrets/nope", None),
        ]:
            refused = client.request(method, path, json=json)
            assert refused.status_code == 403, (method, path, refused.text)
            assert "admin" in refused.json()["detail"]
    assert httpx.get(f"{api.url}/api/v1/services").status_code == 401
