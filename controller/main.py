"""The management API app: routers, lifespan, and the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from controller.errors import FleetgateError
from controller.fleet import Fleet
from controller.middleware import BodyLimit, CatchAll, SecurityHeaders
from controller.names import Task

log = logging.getLogger("fleetgate")

_HTTP_MESSAGES = {
    404: "no such route; the API lives under /api/v1 (see /openapi.json)",
    405: "this route does not take that method (see /openapi.json)",
}


def describe_validation(errors: list[Any]) -> str:
    """One sentence a person can act on, from pydantic's error list."""
    parts = []
    for error in errors[:5]:
        if error.get("type") == "json_invalid":
            ctx = error.get("ctx", {}).get("error", "")
            parts.append(f"the request body is not valid JSON ({ctx})" if ctx else "the request body is not valid JSON")
            continue
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "the request body"
        msg = str(error.get("msg", "is invalid"))
        if error.get("type") == "missing":
            msg = "is required"
        elif error.get("type") == "extra_forbidden":
            msg = "is not a field fleetgate knows"
        elif error.get("type") == "string_pattern_mismatch" and loc[-1:] == ["sandbox_id"]:
            msg = f"{error.get('input')!r} is not a sandbox id (they look like sb_0123456789ab)"
        parts.append(f"{where}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install_error_handlers(app: FastAPI, *, body_limit: int) -> None:
    """Every error answered as JSON with a `detail`: bodies over `body_limit`, bad input, domain errors, the rest."""
    app.add_middleware(BodyLimit, limit=body_limit)
    app.add_middleware(CatchAll)  # outermost of these: it also sees what BodyLimit lets through

    @app.exception_handler(FleetgateError)
    async def domain_error(_: Request, exc: FleetgateError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        clean = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return JSONResponse({"detail": describe_validation(errors), "errors": clean}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code in _HTTP_MESSAGES and detail in ("Not Found", "Method Not Allowed"):
            detail = _HTTP_MESSAGES[exc.status_code]
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OperationalError)
    async def database_busy(request: Request, exc: OperationalError) -> JSONResponse:
        if "locked" not in str(exc):
            raise exc  # to CatchAll
        log.warning("database busy on %s %s: %s", request.method, request.url.path, exc.orig)
        return JSONResponse(
            {"detail": "the database is busy right now; try again in a moment"},
            status_code=503,
            headers={"Retry-After": "1"},
        )


def create_app(fleet: Fleet, *, reconcile_on_start: bool = True) -> FastAPI:
    """The management API (and, later, the console) of one controller."""
    from controller.api import (
        actions,
        approvals,
        audit,
        events,
        grants,
        hosts,
        images,
        links,
        metrics,
        policy,
        sandboxes,
        secrets,
        services,
        system,
        templates,
        tokens,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fleet.settings.ensure_dirs()
        if reconcile_on_start:
            _reconcile_quietly(fleet)
            _top_up_pools(fleet)
        yield
        fleet.close()

    app = FastAPI(
        title="fleetgate",
        version="0.1.0",
        summary="Run a fleet of AI agents in hardened sandboxes under human oversight.",
        lifespan=lifespan,
    )
    app.state.fleet = fleet
    app.state.engine = fleet.db
    install_error_handlers(app, body_limit=fleet.settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the 500s and 413s included
    from controller.console import routes as console

    routers = (system, sandboxes, approvals, actions, grants, audit, events, policy, links, tokens, templates, hosts)
    for module in (*routers, services, secrets, images, metrics, console):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=console.STATIC), name="static")
    return app


def _top_up_pools(fleet: Fleet) -> None:
    """Fill the warm pools now rather than at beat's first tick (this also opens the broker connection)."""
    try:
        fleet.tasks.send(Task.POOL_TOP_UP, [])
    except FleetgateError as e:
        log.warning("could not queue the pool top-up: %s", e.message)


def _reconcile_quietly(fleet: Fleet) -> None:
    try:
        log.info("reconciled on start: %s", fleet.upkeep.reconcile())
    except FleetgateError as e:
        log.warning("could not reconcile on start: %s", e.message)
    except Exception:  # a reconcile bug must not keep the controller down; the worker retries periodically
        log.exception("reconcile on start failed")
