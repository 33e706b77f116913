"""Every route against every role: allowed where the matrix says, refused (403) elsewhere, 401 without a token.

The matrix must name every route the app serves; a new route without a row here fails the test.
Requests are built so that an allowed call does no harm (unknown ids, bodies that fail validation).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Controller

ROLES = ["viewer", "approver", "operator", "admin"]
NOBODY = "sb_000000000000"

# (method, path template) -> (least role allowed, request to send: path, json body)
MATRIX: dict[tuple[str, str], tuple[str | None, str, Any]] = {
    ("GET", "/healthz"): (None, "/healthz", None),
    ("GET", "/api/v1/status"): ("viewer", "/api/v1/status", None),
    ("GET", "/api/v1/me"): ("viewer", "/api/v1/me", None),
    ("GET", "/api/v1/sandboxes"): ("viewer", "/api/v1/sandboxes", None),
    ("POST", "/api/v1/sandboxes"): ("operator", "/api/v1/sandboxes", {"image": 5}),
    ("GET", "/api/v1/sandboxes/{sandbox_id}"): ("viewer", f"/api/v1/sandboxes/{NOBODY}", None),
    ("DELETE", "/api/v1/sandboxes/{sandbox_id}"): ("operator", f"/api/v1/sandboxes/{NOBODY}", None),
    ("POST", "/api/v1/sandboxes/{sandbox_id}/exec"): (
        "operator",
        f"/api/v1/sandboxes/{NOBODY}/exec",
        {"command": ["true"]},
    ),
    ("POST", "/api/v1/sandboxes/{sandbox_id}/stop"): ("operator", f"/api/v1/sandboxes/{NOBODY}/stop", None),
    ("GET", "/api/v1/sandboxes/{sandbox_id}/logs"): ("viewer", f"/api/v1/sandboxes/{NOBODY}/logs", None),
    ("GET", "/api/v1/sandboxes/{sandbox_id}/usage"): ("viewer", f"/api/v1/sandboxes/{NOBODY}/usage", None),
    ("PUT", "/api/v1/sandboxes/{sandbox_id}/budget"): (
        "operator",
        f"/api/v1/sandboxes/{NOBODY}/budget",
        {"model_requests": 5},
    ),
    ("GET", "/api/v1/tokens"): ("admin", "/api/v1/tokens", None),
    ("POST", "/api/v1/tokens"): ("admin", "/api/v1/tokens", {"name": "x", "role": "emperor"}),
    ("DELETE", "/api/v1/tokens/{token_id}"): ("admin", "/api/v1/tokens/999999", None),
    ("GET", "/api/v1/templates"): ("viewer", "/api/v1/templates", None),
    ("POST", "/api/v1/templates"): ("admin", "/api/v1/templates", {"name": "BAD NAME"}),
    ("GET", "/api/v1/templates/{name}"): ("viewer", "/api/v1/templates/nope", None),
    ("PATCH", "/api/v1/templates/{name}"): ("admin", "/api/v1/templates/nope", {"pool_size": 1}),
    ("DELETE", "/api/v1/templates/{name}"): ("admin", "/api/v1/templates/nope", None),
    ("GET", "/api/v1/hosts"): ("viewer", "/api/v1/hosts", None),
    ("POST", "/api/v1/hosts"): ("admin", "/api/v1/hosts", {"name": "x", "url": "ftp://nope"}),
    ("GET", "/api/v1/images"): ("viewer", "/api/v1/images", None),
    ("POST", "/api/v1/images/build"): ("admin", "/api/v1/images/build", {"force": "not-a-bool"}),
    ("GET", "/api/v1/images/builds/{task_id}"): ("viewer", "/api/v1/images/builds/nope", None),
    ("POST", "/api/v1/sandboxes/{sandbox_id}/pause"): ("operator", f"/api/v1/sandboxes/{NOBODY}/pause", None),
    ("POST", "/api/v1/sandboxes/{sandbox_id}/resume"): ("operator", f"/api/v1/sandboxes/{NOBODY}/resume", None),
    ("GET", "/api/v1/sandboxes/{sandbox_id}/files"): ("operator", f"/api/v1/sandboxes/{NOBODY}/files", None),
    ("GET", "/api/v1/sandboxes/{sandbox_id}/files/content"): (
        "operator",
        f"/api/v1/sandboxes/{NOBODY}/files/content?path=x",
        None,
    ),
    ("GET", "/api/v1/actions"): ("viewer", "/api/v1/actions", None),
    ("GET", "/api/v1/actions/{action_id}"): ("viewer", "/api/v1/actions/999999", None),
    ("POST", "/api/v1/actions/{action_id}/review"): ("viewer", "/api/v1/actions/999999/review", {"review": "x"}),
    ("GET", "/api/v1/approvals"): ("viewer", "/api/v1/approvals", None),
    ("GET", "/api/v1/approvals/{approval_id}"): ("viewer", "/api/v1/approvals/999999", None),
    ("POST", "/api/v1/approvals/{approval_id}/decision"): (
        "approver",
        "/api/v1/approvals/999999/decision",
        {"decision": "maybe"},
    ),
    ("POST", "/api/v1/approvals/{approval_id}/links"): ("approver", "/api/v1/approvals/999999/links", None),
    ("GET", "/api/v1/approvals/{approval_id}/preview"): ("viewer", "/api/v1/approvals/999999/preview", None),
    ("POST", "/api/v1/approvals/{approval_id}/take"): ("approver", "/api/v1/approvals/999999/take", None),
    ("GET", "/api/v1/audit"): ("viewer", "/api/v1/audit", None),
    ("GET", "/api/v1/audit/verify"): ("viewer", "/api/v1/audit/verify", None),
    ("GET", "/api/v1/audit/export"): ("viewer", "/api/v1/audit/export", None),
    ("GET", "/api/v1/events"): ("viewer", "/api/v1/events?after=not-an-id", None),
    ("GET", "/api/v1/grants"): ("viewer", "/api/v1/grants", None),
    ("DELETE", "/api/v1/grants/{grant_id}"): ("approver", "/api/v1/grants/999999", None),
    ("GET", "/api/v1/policy"): ("viewer", "/api/v1/policy", None),
    ("PUT", "/api/v1/policy"): ("admin", "/api/v1/policy", {"policy": 5}),
    ("GET", "/api/v1/webhooks"): ("admin", "/api/v1/webhooks", None),
    ("POST", "/api/v1/webhooks"): ("admin", "/api/v1/webhooks", {"url": "ftp://nowhere"}),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): ("admin", "/api/v1/webhooks/999999", None),
    ("GET", "/metrics"): ("viewer", "/metrics", None),
    ("GET", "/api/v1/services"): ("viewer", "/api/v1/services", None),
    ("POST", "/api/v1/services"): ("admin", "/api/v1/services", {"name": "x", "kind": "smtp"}),
    ("DELETE", "/api/v1/services/{name}"): ("admin", "/api/v1/services/nope", None),
    ("GET", "/api/v1/secrets"): ("admin", "/api/v1/secrets", None),
    ("PUT", "/api/v1/secrets/{name}"): ("admin", "/api/v1/secrets/nope", {"value": 5}),
    ("DELETE", "/api/v1/secrets/{name}"): ("admin", "/api/v1/secrets/nope", None),
}


def served_routes(controller: Controller) -> set[tuple[str, str]]:
    spec = httpx.get(f"{controller.url}/openapi.json").json()
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_the_matrix_covers_every_route(controller: Controller) -> None:
    assert served_routes(controller) == set(MATRIX)


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_is_refused_without_a_token(controller: Controller, route: tuple[str, str]) -> None:
    least, path, body = MATRIX[route]
    response = httpx.request(route[0], f"{controller.url}{path}", json=body)
    if least is None:
        assert response.status_code == 200
    else:
        assert response.status_code == 401
        assert "token" in response.json()["detail"]


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("role", ROLES)
def test_route_allows_exactly_the_roles_of_the_matrix(
    controller: Controller, route: tuple[str, str], role: str
) -> None:
    least, path, body = MATRIX[route]
    with controller.http(role) as client:
        response = client.request(route[0], path, json=body)
    allowed = least is None or ROLES.index(role) >= ROLES.index(least)
    if allowed:
        assert response.status_code not in (401, 403), (role, route, response.text)
        assert response.status_code < 500, (role, route, response.text)
    else:
        assert response.status_code == 403, (role, route, response.text)
        assert least in response.json()["detail"]


def test_a_revoked_token_stops_working(controller: Controller) -> None:
    with controller.http("admin") as admin:
        created = admin.post("/api/v1/tokens", json={"name": "temp", "role": "viewer"}).json()
        assert created["token"].startswith("fg_")
        with controller.http(token=created["token"]) as temp:
            assert temp.get("/api/v1/me").json() == {"name": "temp", "role": "viewer"}
            assert admin.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
            refused = temp.get("/api/v1/me")
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
        listed = {t["id"] for t in admin.get("/api/v1/tokens").json()["items"]}
        assert created["id"] not in listed


def test_tokens_are_stored_hashed(controller: Controller) -> None:
    import sqlite3

    with controller.http("admin") as admin:
        secret = admin.post("/api/v1/tokens", json={"name": "hashed", "role": "viewer"}).json()["token"]
    with sqlite3.connect(controller.home / "fleetgate.db") as db:
        stored = [row[0] for row in db.execute("select hash from token")]
        dump = "\n".join(db.iterdump())
    assert secret not in dump
    assert all(len(h) == 64 for h in stored)


def test_cli_token_create_works_without_the_api(controller: Controller) -> None:
    secret = controller.cli("token", "create", "--name", "recovered", "--role", "admin").stdout.strip()
    with controller.http(token=secret) as client:
        assert client.get("/api/v1/me").json() == {"name": "recovered", "role": "admin"}
