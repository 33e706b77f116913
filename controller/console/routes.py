"""The web console: one page and its static files, served by the controller; log in with a token.

A login trades an API token for a session cookie (HttpOnly, SameSite=Strict) plus a CSRF token the page sends
back in `X-CSRF-Token` on every change. No build step: the page is plain HTML, CSS and JavaScript.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from controller.api.deps import FleetDep, Viewer
from controller.auth import CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL
from controller.models import Role

STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


class Login(BaseModel):
    token: str = Field(min_length=8, max_length=200)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.post("/console/login")
def login(body: Login, request: Request, fleet: FleetDep) -> JSONResponse:
    """Check the token and open a console session."""
    user, secret, csrf = fleet.admin.log_in(body.token.strip())
    response = JSONResponse({"name": user.name, "role": Role(user.role).value, "csrf": csrf})
    secure = request.url.scheme == "https"
    max_age = int(SESSION_TTL.total_seconds())
    response.set_cookie(SESSION_COOKIE, secret, max_age=max_age, httponly=True, samesite="strict", secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure)
    return response


@router.post("/console/logout")
def logout(request: Request, fleet: FleetDep) -> JSONResponse:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        fleet.admin.log_out(secret)
    response = JSONResponse({"ok": True})
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.get("/console/me")
def me(user: Viewer, request: Request) -> dict[str, Any]:
    return {"name": user.name, "role": Role(user.role).value, "csrf": request.cookies.get(CSRF_COOKIE)}
