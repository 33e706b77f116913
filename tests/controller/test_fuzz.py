"""Every route of the REST API and of the runtime gateway, fed bad input the way people, scripts and hostile
agents produce it: never a 5xx, never a traceback, always a JSON `detail` one can act on.

The routes come from the apps' own OpenAPI descriptions, so a route added later is fuzzed too. Bodies are always
invalid (malformed JSON, the wrong shape, one field of the wrong type or a number no column holds), so nothing the
requests ask for is carried out; the controller is this module's own all the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.config import Settings
from controller.fleet import Fleet
from controller.gateway.app import create_gateway
from tests.conftest import Controller, make_controller, running

NASTY = ["0", "-1", "99999999999999999999999", "1e309", "sb_zzzzzzzzzzzz", "..", "%00", "x" * 300, "null", "1.5"]
JSON = {"Content-Type": "application/json"}
MALFORMED = [b"{not json", b"[]", b'"text"', b"123", b'{"a":' * 64 + b"1" + b"}" * 64, b"\xff\xfe"]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, docker_client: Any, python_image: str) -> Iterator[Controller]:
    redis_url = "redis://127.0.0.1:6379/9"
    ctl = make_controller(tmp_path_factory.mktemp("fuzz"), redis_url, FLEETGATE_POOL_SIZE="0")
    with running(ctl, docker_client):
        yield ctl


def operations(spec: dict[str, Any], prefix: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if path.startswith(prefix):
                yield method.upper(), path, op


def schema_of(spec: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in ref_or_schema:
        name = ref_or_schema["$ref"].rsplit("/", 1)[-1]
        ref_or_schema = spec["components"]["schemas"][name]
    return ref_or_schema


def wrong_value(spec: dict[str, Any], prop: dict[str, Any]) -> Any:
    """A value of the wrong type for the property (or a nonsense one where every type is accepted)."""
    prop = schema_of(spec, prop)
    types = {schema_of(spec, p).get("type") for p in prop.get("anyOf", [prop])}
    if "string" in types or "enum" in prop:
        return {"not": "a string"}
    if types & {"integer", "number"}:
        return "many"
    if "boolean" in types:
        return [True]
    if "array" in types:
        return 7
    if "object" in types:
        return ["not", "an", "object"]
    return None


def bodies(spec: dict[str, Any], op: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    yield from ((f"malformed {raw[:12]!r}", raw) for raw in MALFORMED)
    content = (op.get("requestBody") or {}).get("content", {}).get("application/json")
    if not content:
        return
    schema = schema_of(spec, content["schema"])
    for name, prop in (schema.get("properties") or {}).items():
        value = wrong_value(spec, prop)
        if value is not None:
            yield f"{name} of the wrong type", httpx.Request("POST", "/", json={name: value}).content
        if wrong_value(spec, prop) == "many":  # a number: one no column can hold, either way
            for huge in (10**30, -(10**30)):
                yield f"{name} = {huge:.0e}", httpx.Request("POST", "/", json={name: huge}).content


def path_with(path: str, value: str) -> str:
    parts = path.split("/")
    return "/".join(value if p.startswith("{") and p.endswith("}") else p for p in parts)


def check(client: httpx.Client, request: httpx.Request, what: str, failures: list[str]) -> None:
    """Send it; a stream that opens (the event stream accepts the input) is closed at once, unread."""
    response = client.send(request, stream=True)
    try:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            detail = "(a stream)"
        else:
            response.read()
            try:
                detail = response.json().get("detail")
            except (ValueError, AttributeError):
                detail = None
    finally:
        response.close()
    if response.status_code >= 500 or (response.status_code >= 400 and not detail):
        failures.append(f"{what}: {response.status_code} {response.text[:200] if detail is None else detail}")


def test_no_api_route_answers_bad_input_with_a_5xx(fuzzed: Controller) -> None:
    with fuzzed.http("admin") as client:
        spec = client.get("/openapi.json").json()
        assert len(list(operations(spec, "/api/"))) >= 40, "the API lost its routes"
        failures = fuzz(client, spec, "/api/", {})
    assert not failures, "\n".join(failures[:40])


def test_no_gateway_route_answers_a_sandbox_with_a_5xx(fuzzed: Controller, tmp_path: Path) -> None:
    """What an agent can send its own gateway, with its own valid token: malformed, mistyped, oversized."""
    with fuzzed.http("operator") as operator:
        created = operator.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest"})
        assert created.status_code == 201, created.text
        sandbox_id = created.json()["id"]
    creds = json.loads((fuzzed.home / "sandboxes" / sandbox_id / "sandbox.json").read_text())
    fleet = Fleet(Settings(home=tmp_path))
    spec = create_gateway(fleet, fleet.events).openapi()
    assert len(list(operations(spec, "/runtime/"))) >= 10, "the gateway lost its routes"
    transport = httpx.HTTPTransport(uds=str(fuzzed.home / "gateway" / "runtime.sock"))
    headers = {"Authorization": f"Bearer {creds['token']}"}
    with httpx.Client(transport=transport, base_url="http://gateway", headers=headers, timeout=30) as client:
        failures = fuzz(client, spec, "/runtime/", {"sandbox_id": sandbox_id})
        assert client.get(f"/runtime/v1/sandboxes/{sandbox_id}").status_code == 200  # and it still serves
    assert not failures, "\n".join(failures[:40])


def fuzz(client: httpx.Client, spec: dict[str, Any], prefix: str, fixed: dict[str, str]) -> list[str]:
    """Send every operation under `prefix` its bad inputs; path parameters named in `fixed` keep that value."""
    failures: list[str] = []
    for method, template, op in operations(spec, prefix):
        path = template.format_map(_Keep(fixed))
        targets = [path_with(path, value) for value in NASTY] if "{" in path else [path]
        for target in targets:
            if method in ("POST", "PUT", "PATCH"):
                for label, raw in bodies(spec, op):
                    request = client.build_request(method, target, content=raw, headers=JSON)
                    check(client, request, f"{method} {target} with {label}", failures)
            elif "{" in path:
                check(client, client.build_request(method, target), f"{method} {target}", failures)
        for param in (p for p in op.get("parameters", []) if p["in"] == "query"):
            for value in NASTY:
                # Path parameters name nothing that exists ("0"), so a query accepted changes nothing.
                request = client.build_request(method, path_with(path, "0"), params={param["name"]: value})
                check(client, request, f"{method} {path}?{param['name']}={value[:20]}", failures)
    return failures


class _Keep(dict[str, str]):
    """format_map that leaves the placeholders it has no value for."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
