"""The egress door: every byte a sandbox sends to the world, and every model call, passes here.

Inside the sandbox the runtime listens on 127.0.0.1:3128 (a forward proxy) and 127.0.0.1:7070 (the services) and
carries each accepted connection, as it is, over the runtime socket, after one line that says which door and
whose token (`FLEETGATE-EGRESS/1 proxy|service SANDBOX_ID`, then `Authorization: Bearer ...`). Everything else
happens here, where the sandbox cannot touch it:

- services (`/<name>/<path>`): the admin's upstream, with the secret added on the way out and the placeholder the
  sandbox sent dropped; a model call is the action `model.request` (service, model), any other `http.request`.
  The answer streams back as it comes (server-sent events are not held), its reported token usage is counted.
- the proxy: `CONNECT host:port` is the action `net.connect` (host, port), then a byte tunnel; a plain `GET
  http://...` is `http.request` (method, url), request by request on a kept-alive connection. The destination is
  resolved here and refused in the internal ranges (`oversight/destinations.py`) before any policy is asked, and
  the connection goes to the address that was checked.

Each decision is the gate's (so `ask` holds the connection while a person decides, and a remembered grant lets the
next one through), after the sandbox's budget (`oversight/usage.py`). When the call ends, its bytes (and tokens)
are kept on its action and shown live.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import h11
import orjson
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from controller.errors import FleetgateError, Forbidden
from controller.events.wakeups import Waiter
from controller.fleet import Fleet
from controller.gateway.auth import TokenCache
from controller.gateway.http1 import (
    ClientGone,
    forwardable,
    next_event,
    raw_error,
    respond,
    server,
    splice,
)
from controller.gateway.upstream import Target, UpstreamError, Upstreams
from controller.models import SANDBOX_ID_PATTERN
from controller.oversight.destinations import Allowlist, resolve_destination
from controller.oversight.models import Action, ActionStatus
from controller.oversight.policy import Risk
from controller.oversight.services import ServiceTarget, service_target
from controller.oversight.usage import CONNECTION, MODEL, TokenCounter
from controller.secrets import SecretBox

log = logging.getLogger("fleetgate.egress")

PREAMBLE_LIMIT = 4096
MAX_OPEN_PER_SANDBOX = 64
SERVICE_CACHE_S = 2.0
WAIT_S = 25.0
RECORD_EVERY_S = 0.05
RECORD_BATCH = 500
AUTH_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key"})
_SANDBOX_ID = re.compile(SANDBOX_ID_PATTERN)


class Refused(Exception):
    """A call the door answers itself: status, the message for the agent, and the dialect to say it in."""

    def __init__(self, status: int, message: str, kind: str = "http") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


class Caller:
    """The sandbox a door connection belongs to, checked by its token."""

    def __init__(self, sandbox_id: str, token: str) -> None:
        self.sandbox_id, self.token = sandbox_id, token


class EgressDoor:
    def __init__(self, fleet: Fleet, waiter: Waiter, tokens: TokenCache) -> None:
        self.fleet = fleet
        self.waiter = waiter
        self.tokens = tokens
        self.allow = Allowlist.parse(fleet.settings.egress_allow)
        self.box = SecretBox(fleet.settings.secrets_key)
        self.upstreams = Upstreams()
        self.open: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._services: dict[str, tuple[float, ServiceTarget]] = {}
        self._finished: list[tuple[str, int, dict[str, Any]]] = []
        self._recorder: asyncio.Task[None] | None = None

    # --- a connection from the runtime ------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        caller: Caller | None = None
        try:
            door, caller = await self._preamble(reader)
            if self.open[caller.sandbox_id] >= MAX_OPEN_PER_SANDBOX:
                raise Refused(503, f"this sandbox has {MAX_OPEN_PER_SANDBOX} egress connections open already")
            self.open[caller.sandbox_id] += 1
            await (self._proxy if door == "proxy" else self._service)(caller, reader, writer)
        except Refused as e:
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(raw_error(e.status, "Refused", e.message))
                await writer.drain()
        except (ClientGone, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must cost one connection, never the door
            log.exception("egress connection failed")
        finally:
            if caller is not None and caller.sandbox_id in self.open:
                self.open[caller.sandbox_id] -= 1
                if self.open[caller.sandbox_id] <= 0:
                    del self.open[caller.sandbox_id]
            writer.close()
            self._tasks.discard(task)

    async def _preamble(self, reader: asyncio.StreamReader) -> tuple[str, Caller]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
        except (TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            raise Refused(400, "the egress preamble was not complete") from None
        if len(head) > PREAMBLE_LIMIT:
            raise Refused(400, "the egress preamble is too long")
        first, *lines = head.decode("latin-1").strip().split("\r\n")
        parts = first.split(" ")
        token = next((line[len("authorization: bearer ") :] for line in lines if _is_auth(line)), "")
        if len(parts) != 3 or parts[1] not in ("proxy", "service") or not _SANDBOX_ID.match(parts[2]) or not token:
            raise Refused(400, "expected FLEETGATE-EGRESS/1 proxy|service SANDBOX_ID and a bearer token")
        try:
            sandbox_id = await self.tokens.sandbox(token.strip(), parts[2])
        except FleetgateError as e:
            raise Refused(e.status_code, e.message) from None
        return parts[1], Caller(sandbox_id, token.strip())

    # --- services -----------------------------------------------------------------------------------------------

    async def _service(self, caller: Caller, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = server()
        while True:
            event = await self._request(conn, reader, writer)
            if event is None:
                return
            kind = "http"
            try:
                name, _, rest = event.target.decode("latin-1").lstrip("/").partition("/")
                service = await self._lookup(name)
                kind = service.kind.value
                body = await self._body(conn, reader, writer, kind, event)
                await self._call_service(caller, conn, writer, event, service, "/" + rest, body)
            except Refused as e:
                await respond(conn, writer, e.status, e.message, kind=e.kind if e.kind != "http" else kind)
                return
            if not _next_cycle(conn):
                return

    async def _lookup(self, name: str) -> ServiceTarget:
        if not name:
            raise Refused(404, "call a service as http://127.0.0.1:7070/<service name>/<path>")
        hit = self._services.get(name)
        if hit is None or hit[0] < time.monotonic():
            try:
                target = await run_in_threadpool(self._read_service, name)
            except FleetgateError as e:  # no such service (404), or the secrets key changed (409)
                raise Refused(e.status_code, e.message) from None
            hit = (time.monotonic() + SERVICE_CACHE_S, target)
            self._services[name] = hit
        if hit[1].kind.value == "git":
            raise Refused(404, f"{name} is a git remote, reached only by the git.push action, not over HTTP")
        return hit[1]

    def _read_service(self, name: str) -> ServiceTarget:
        with Session(self.fleet.db) as session:
            return service_target(session, self.box, name)

    async def _call_service(
        self,
        caller: Caller,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        event: h11.Request,
        service: ServiceTarget,
        rest: str,
        body: bytes,
    ) -> None:
        kind = service.kind.value
        method = event.method.decode("latin-1")
        url = service.upstream.rstrip("/") + rest
        if kind in ("anthropic", "openai"):
            tool, budget = "model.request", MODEL
            args: dict[str, Any] = {"service": service.name, "model": _model_of(body), "method": method, "path": rest}
        else:
            tool, budget = "http.request", CONNECTION
            args = {"service": service.name, "method": method, "url": url}
        action_id = await self._decide(caller, tool, args, Risk.low if budget == MODEL else Risk.medium, budget, kind)
        drop = AUTH_HEADERS | ({service.header.lower().encode()} if service.header else frozenset())
        headers = forwardable(event.headers, drop)
        auth = service.auth_value()
        if service.header and auth:
            headers.append((service.header.encode("latin-1"), auth.encode("latin-1")))
        counter = TokenCounter() if budget == MODEL else None
        sent = len(body) + sum(len(n) + len(v) for n, v in event.headers)
        try:
            target = Target.of(url)
        except UpstreamError as e:
            raise Refused(502, str(e), kind) from None
        await self._forward(caller, action_id, conn, writer, method, target, headers, body, counter, sent, kind)

    # --- the forward proxy --------------------------------------------------------------------------------------

    async def _proxy(self, caller: Caller, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = server()
        while True:
            event = await self._request(conn, reader, writer)
            if event is None:
                return
            try:
                if event.method == b"CONNECT":
                    await self._tunnel(caller, conn, reader, writer, event.target.decode("latin-1"))
                    return
                body = await self._body(conn, reader, writer, "http", event)
                await self._plain(caller, conn, writer, event, body)
            except Refused as e:
                await respond(conn, writer, e.status, e.message)
                return
            if not _next_cycle(conn):
                return

    async def _tunnel(
        self, caller: Caller, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to: str
    ) -> None:
        host, port = _host_port(to)
        args = {"host": host, "port": port}
        addresses = await self._destination(caller, "net.connect", args, host, port)
        action_id = await self._decide(caller, "net.connect", args, Risk.medium, CONNECTION, "http")
        upstream = await _open(addresses, port)
        if upstream is None:
            raise Refused(502, f"{host}:{port} did not accept the connection")
        up_reader, up_writer = upstream
        writer.write(conn.send(h11.Response(status_code=200, headers=[], reason=b"Connection established")) or b"")
        leftover = conn.trailing_data[0]
        counted = [0, len(leftover)]  # [into the sandbox, out of it]
        if leftover:
            up_writer.write(leftover)
        try:
            await asyncio.gather(splice(up_reader, writer, counted, 0), splice(reader, up_writer, counted, 1))
        finally:
            up_writer.close()
            self._done(caller, action_id, {"bytes_in": counted[0], "bytes_out": counted[1], "host": host})

    async def _plain(self, caller: Caller, conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Request,
                     body: bytes) -> None:  # fmt: skip
        url = event.target.decode("latin-1")
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise Refused(400, "a proxy request needs an absolute http:// URL (https goes through CONNECT)")
        try:
            port = parts.port or 80
        except ValueError:
            raise Refused(400, f"{url[:200]!r} has no valid port") from None
        method = event.method.decode("latin-1")
        args = {"method": method, "url": url, "host": parts.hostname, "port": port}
        addresses = await self._destination(caller, "http.request", args, parts.hostname, port)
        action_id = await self._decide(caller, "http.request", args, Risk.medium, CONNECTION, "http")
        target = Target.of(url, connect_to=addresses[0])
        headers = forwardable(event.headers)
        sent = len(body) + sum(len(n) + len(v) for n, v in event.headers)
        await self._forward(caller, action_id, conn, writer, method, target, headers, body, None, sent, "http")

    async def _destination(self, caller: Caller, tool: str, args: dict[str, Any], host: str, port: int) -> list[str]:
        """The checked addresses of host:port, or a refusal kept as a denied action."""
        try:
            if _is_address(host):  # nothing to look up: checked here, without a thread hop
                return resolve_destination(host, port, self.allow)
            return await run_in_threadpool(resolve_destination, host, port, self.allow)
        except FleetgateError as e:
            await run_in_threadpool(self.fleet.runtime.egress_refused, caller.sandbox_id, tool, args, e.message)
            raise Refused(403 if isinstance(e, Forbidden) else 400, e.message) from None

    # --- shared steps -------------------------------------------------------------------------------------------

    async def _request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> h11.Request | None:
        try:
            event = await next_event(conn, reader)
        except h11.RemoteProtocolError as e:
            await respond(conn, writer, e.error_status_hint, f"malformed HTTP request: {e}")
            return None
        if isinstance(event, h11.Request):
            return event
        return None  # the client closed (ConnectionClosed) or sent something out of turn

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    kind: str, event: h11.Request) -> bytes:  # fmt: skip
        limit = self.fleet.settings.max_service_body_bytes
        if _declared_length(event) > limit:  # refused before a byte of it is read
            raise Refused(413, f"the request body is over {limit} bytes (FLEETGATE_MAX_SERVICE_BODY_BYTES)", kind)
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks, size = [], 0
        while True:
            try:
                part = await next_event(conn, reader)
            except h11.RemoteProtocolError as e:
                raise Refused(400, f"malformed HTTP request body: {e}", kind) from None
            if isinstance(part, h11.Data):
                size += len(part.data)
                if size > limit:
                    raise Refused(
                        413, f"the request body is over {limit} bytes (FLEETGATE_MAX_SERVICE_BODY_BYTES)", kind
                    )
                chunks.append(part.data)
            elif isinstance(part, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise ClientGone("the client closed before the end of its request")

    async def _decide(self, caller: Caller, tool: str, args: dict[str, Any], risk: Risk, budget: str,
                      kind: str) -> int:  # fmt: skip
        """The gate's answer (after the budget), holding the connection while a person decides."""
        try:
            reply: dict[str, Any] = await run_in_threadpool(
                self.fleet.runtime.propose,
                secret=caller.token,
                sandbox_id=caller.sandbox_id,
                tool=tool,
                args=args,
                risk=risk,
                charge_as=budget,
            )
        except FleetgateError as e:
            raise Refused(e.status_code, e.message, kind) from None
        action_id = int(reply["action_id"])
        while reply["status"] == "pending":
            action = await self.waiter.until(
                f"action:{action_id}", WAIT_S, lambda: run_in_threadpool(self._action, action_id), _settled
            )
            reply = {"status": action.status.value, "message": action.message, "decided_by": action.decided_by}
            if action.status == ActionStatus.allowed and action.final_args not in (None, action.args):
                # A connection or call goes as the agent made it or not at all: the door cannot rewrite the bytes.
                raise Refused(403, f"fleetgate: {tool} approved with edited arguments, which a connection cannot "
                              "take; approve it as it is or deny it with a message", kind)  # fmt: skip
        if reply["status"] != "allowed":
            by = reply.get("decided_by")
            status = 429 if by == "budget" else 403
            raise Refused(status, f"fleetgate: {tool} denied ({by}): {reply.get('message') or 'denied'}", kind)
        return action_id

    def _action(self, action_id: int) -> Action:
        with Session(self.fleet.db) as session:
            action = session.get(Action, action_id)
            assert action is not None
            return action

    async def _forward(
        self,
        caller: Caller,
        action_id: int,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        method: str,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        counter: TokenCounter | None,
        sent: int,
        kind: str,
    ) -> None:
        """Send the request upstream and stream the answer back as it comes; its bytes (and tokens) are kept."""
        received, status = 0, 0
        try:
            answer, upstream = await self.upstreams.exchange(method, target, headers, body)
        except UpstreamError as e:
            self._done(caller, action_id, {"bytes_in": 0, "bytes_out": sent, "error": str(e)[:300]})
            raise Refused(502, f"the upstream of this call did not answer: {e}", kind) from None
        try:
            status = answer.status
            out = forwardable(answer.headers)
            length = next((v for n, v in answer.headers if n.lower() == b"content-length"), None)
            chunked = any(n.lower() == b"transfer-encoding" for n, _ in answer.headers)
            if length is not None and not chunked:
                out.append((b"content-length", length))
            writer.write(conn.send(h11.Response(status_code=status, headers=out)) or b"")
            async for chunk in answer.body:
                received += len(chunk)
                if counter is not None:
                    counter.feed(chunk)
                writer.write(conn.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            self.upstreams.release(target, upstream)
        except (UpstreamError, h11.LocalProtocolError) as e:
            upstream.writer.close()
            conn.send_failed()
            raise ClientGone(str(e)) from e
        except BaseException:
            upstream.writer.close()
            raise
        finally:
            result: dict[str, Any] = {"bytes_in": received, "bytes_out": sent, "status": status}
            if counter is not None:
                result["tokens"] = counter.finish()
            self._done(caller, action_id, result)

    def _done(self, caller: Caller, action_id: int, result: dict[str, Any]) -> None:
        """Kept off the agent's path (its answer has gone already), in batches: one transaction every
        RECORD_EVERY_S for all the calls that ended meanwhile, not one per call."""
        self._finished.append((caller.sandbox_id, action_id, result))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.get_running_loop().create_task(self._record(RECORD_EVERY_S))

    async def _record(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        while self._finished:
            batch, self._finished = self._finished[:RECORD_BATCH], self._finished[RECORD_BATCH:]
            try:
                await run_in_threadpool(self.fleet.runtime.egress_done, batch)
            except Exception:
                log.exception("could not record the traffic of %d calls", len(batch))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # each records what it carried
        await self._record(0.0)
        await self.upstreams.close()


def _is_auth(line: str) -> bool:
    return line.lower().startswith("authorization: bearer ")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _settled(action: Action) -> bool:
    return action.status != ActionStatus.pending


def _next_cycle(conn: h11.Connection) -> bool:
    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
        conn.start_next_cycle()
        return True
    return False


def _declared_length(event: h11.Request) -> int:
    """The Content-Length a request declares, or 0 (h11 has checked that it is one number)."""
    return next((int(value) for name, value in event.headers if name == b"content-length"), 0)


def _model_of(body: bytes) -> str | None:
    try:
        model = orjson.loads(body).get("model") if body else None
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return model[:200] if isinstance(model, str) else None


def _host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise Refused(400, f"CONNECT needs host:port, got {target[:200]!r}")
    return host.strip("[]"), int(port)


async def _open(addresses: list[str], port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    for address in addresses:
        with contextlib.suppress(OSError, TimeoutError):
            return await asyncio.wait_for(asyncio.open_connection(address, port, limit=1 << 20), 10.0)
    return None
