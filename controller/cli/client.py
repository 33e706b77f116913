"""The CLI's HTTP client: FLEETGATE_URL and FLEETGATE_TOKEN, errors printed for a person, never a traceback."""

from __future__ import annotations

from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

from controller.config import get_client_settings, get_settings

err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


class Client:
    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        conf = get_client_settings()
        self.url = (url or conf.url or get_settings().url).rstrip("/")
        self.token = token or conf.token
        if not self.token:
            fail("no token: set FLEETGATE_TOKEN (an admin makes one with `fleetgate token create`)")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx.Timeout(60.0, read=None),
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            fail(f"fleetgate is not answering at {self.url}; start it with `fleetgate up --detach`")
        except httpx.HTTPError as e:
            fail(f"request to {self.url} failed: {e}")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            fail(f"{detail} (HTTP {response.status_code})")
        return response.json() if response.content else None

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        """A streaming request (for Server-Sent Events); no read timeout."""
        return self._http.stream(method, path, timeout=httpx.Timeout(10.0, read=None), **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def get_or_none(self, path: str) -> Any:
        """GET, with None for a 404 instead of an error."""
        try:
            response = self._http.get(path)
        except httpx.HTTPError:
            return self.request("GET", path)
        return None if response.status_code == 404 else self.request("GET", path)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)
