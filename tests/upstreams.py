"""The outside world of the egress tests and benchmarks: servers on loopback that the tests start.

`ModelServer` speaks enough of the Anthropic Messages API (streaming and not) and the OpenAI Responses API to be a
model: it records every request it gets (headers included, so a test can see the real key arrived) and streams
its answer in events spaced `gap_s` apart, so a test can tell an incremental stream from one held to the end.
It also serves `/bytes/N` (N bytes) and `/echo` (the body back) for plain HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BLOCK = b"x" * (1 << 20)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ModelServer:
    gap_s: float = 0.2
    words: tuple[str, ...] = ("Hello", " from", " the", " scripted", " model")
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ModelServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._record(b"")
                if self.path.startswith("/bytes/"):
                    self._bytes(int(self.path.rsplit("/", 1)[1]))
                else:
                    self._json(200, {"ok": True, "path": self.path})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self._record(body)
                if self.path.startswith("/v1/messages"):
                    self._messages(json.loads(body or b"{}"))
                elif self.path.startswith("/v1/responses"):
                    self._json(200, {"id": "resp_1", "output": [], "usage": {"input_tokens": 7, "output_tokens": 3}})
                else:
                    self.send_response(200)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def _record(self, body: bytes) -> None:
                owner.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))

            def _json(self, status: int, value: Any) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _bytes(self, n: int) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/octet-stream")
                self.send_header("content-length", str(n))
                self.end_headers()
                while n > 0:
                    piece = BLOCK[: min(n, len(BLOCK))]
                    self.wfile.write(piece)
                    n -= len(piece)

            def _messages(self, request: dict[str, Any]) -> None:
                usage = {"input_tokens": 11, "output_tokens": len(owner.words)}
                if not request.get("stream"):
                    text = "".join(owner.words)
                    message = {"type": "message", "role": "assistant", "model": request.get("model"), "usage": usage}
                    self._json(200, {**message, "content": [{"type": "text", "text": text}]})
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                start = {
                    "type": "message_start",
                    "message": {"model": request.get("model"), "usage": {**usage, "output_tokens": 1}},
                }
                self._event("message_start", start)
                for word in owner.words:
                    time.sleep(owner.gap_s)
                    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}
                    self._event("content_block_delta", delta)
                self._event(
                    "message_delta", {"type": "message_delta", "usage": {"output_tokens": usage["output_tokens"]}}
                )
                self._event("message_stop", {"type": "message_stop"})
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _event(self, name: str, data: dict[str, Any]) -> None:
                payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
