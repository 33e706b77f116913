"""Turning validation errors into one sentence (unit tests of the pure formatter), and what a client of a real
server sees when a route fails unexpectedly."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from controller.main import describe_validation, install_error_handlers
from tests.conftest import free_port


def test_messages_name_the_field_and_the_problem() -> None:
    errors = [
        {"type": "missing", "loc": ("body", "command"), "msg": "Field required"},
        {"type": "extra_forbidden", "loc": ("body", "resources", "gpus"), "msg": "Extra inputs are not permitted"},
        {"type": "greater_than_equal", "loc": ("body", "resources", "pids"), "msg": "Input should be >= 16"},
    ]
    assert describe_validation(errors) == (
        "command: is required; resources.gpus: is not a field fleetgate knows; resources.pids: Input should be >= 16"
    )


def test_invalid_json_is_named_as_such() -> None:
    message = describe_validation([{"type": "json_invalid", "loc": ("body", 12), "ctx": {"error": "Expecting value"}}])
    assert message == "the request body is not valid JSON (Expecting value)"


def test_bad_sandbox_id_shows_what_one_looks_like() -> None:
    error = {"type": "string_pattern_mismatch", "loc": ("path", "sandbox_id"), "input": "nope", "msg": "x"}
    assert "they look like sb_0123456789ab" in describe_validation([error])


def test_long_lists_are_cut_short() -> None:
    errors = [{"type": "missing", "loc": ("body", f"f{i}"), "msg": ""} for i in range(8)]
    assert describe_validation(errors).endswith("(and 3 more)")


@pytest.fixture
def failing_server() -> Iterator[str]:
    """A real uvicorn serving an app with fleetgate's error handling and one route that fails unexpectedly."""
    app = FastAPI()
    install_error_handlers(app, body_limit=1024)

    @app.get("/boom")
    def boom() -> None:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    @app.get("/fine")
    def fine() -> dict[str, bool]:
        return {"fine": True}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def exchange(sock: socket.socket, path: str) -> bytes:
    """One keep-alive HTTP/1.1 request on an open socket; the whole response (it has a Content-Length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_an_unexpected_error_is_a_json_500_on_a_connection_that_stays_open(failing_server: str) -> None:
    response = httpx.get(f"{failing_server}/boom")
    assert response.status_code == 500
    assert response.json()["detail"].startswith("internal error (reference ")
    assert "SQLite" not in response.text  # the details stay in the log
    # Starlette's own handler re-raised to the server, which then closed the connection under the client's feet.
    host, port = failing_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        assert exchange(sock, "/boom").startswith(b"HTTP/1.1 500")
        assert exchange(sock, "/fine").endswith(b'{"fine":true}')
