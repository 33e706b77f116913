"""Live events: Redis Streams (fleet-wide and per sandbox, trimmed by length) plus the database for history.

One Lua call adds a batch to both streams, so an event has the same id in the fleet stream and in its sandbox's
stream, and that id is its SSE id. The rows go to the database afterwards with their stream ids, so a client
whose last id has been trimmed from the stream resumes from the database without a gap.

Domain code calls `store.emit(session, ...)`; the events ride on the session, and the flow that owns the
transaction hands them to this process's sink once it has committed (nothing goes out for a rollback). The sink is
made once at start-up and passed to whoever needs it: `EventBus` in the controller and the worker, `StoredEvents`
(history only, no Redis) in the CLI and the fast tests.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

import orjson
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from controller.models import Event, utcnow
from controller.names import Keys

log = logging.getLogger(__name__)
FLEET_MAXLEN = 100_000
SANDBOX_MAXLEN = 10_000

# KEYS[1] = fleet stream, KEYS[2] = the events counter, then one sandbox stream per event; ARGV = maxlens, then
# (kind, JSON payload) per event. The kind rides in its own field so a reader can filter without parsing the payload.
_XADD_BOTH = """
local ids = {}
for i = 3, #KEYS do
  local k, e = ARGV[2 * i - 3], ARGV[2 * i - 2]
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', k, 'e', e)
  redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], id, 'k', k, 'e', e)
  ids[#ids + 1] = id
end
redis.call('INCRBY', KEYS[2], #ids)
return ids
"""


EventItem = tuple[str, str, dict[str, Any]]  # (sandbox id, kind, data)


class EventSink(Protocol):
    """Where committed events go."""

    def submit(self, items: Iterable[EventItem]) -> None: ...


class StoredEvents:
    """History only: events are kept in the database at once, nothing is published live (no Redis)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def submit(self, items: Iterable[EventItem]) -> None:
        rows = [{"sandbox_id": s, "kind": k, "data": d, "created_at": utcnow()} for s, k, d in items]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(Event), rows)


class EventBus:
    """Publishes events from a background thread in batches, so no request waits on Redis or a second write.

    `submit` queues (blocking when `capacity` events are waiting: back-pressure, never unbounded memory).
    An event after a quiet spell is published at once; a busy stream is published in batches at most every
    `interval_s`, so a steady stream costs one Redis call and one INSERT per interval rather than per event, and
    the thread takes the interpreter from the request handlers that many fewer times.

    The rows are kept by a second thread. SQLite serves one writer at a time and its busy handler is not fair:
    with fifty agents writing heartbeats and actions, one INSERT could wait seconds for its turn, and while the
    publisher waited with it, the live stream stood still. Now only history waits.
    """

    def __init__(
        self, client: redis.Redis, engine: Engine, keys: Keys, *, capacity: int = 100_000, interval_s: float = 0.02
    ) -> None:
        self.client = client
        self.engine = engine
        self.keys = keys
        self._script = client.register_script(_XADD_BOTH)
        self._queue: queue.Queue[EventItem] = queue.Queue(maxsize=capacity)
        self._rows: queue.Queue[list[dict[str, Any]]] = queue.Queue(maxsize=max(1, capacity // 100))
        self._interval_s = interval_s
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    def submit(self, items: Iterable[EventItem]) -> None:
        """Queue events for publishing (returns at once unless the queue is full)."""
        self._ensure_thread()
        for item in items:
            self._queue.put(item)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is published and kept; False on timeout."""
        deadline = time.monotonic() + timeout
        while (self._queue.unfinished_tasks or self._rows.unfinished_tasks) and time.monotonic() < deadline:
            time.sleep(0.005)
        return not (self._queue.unfinished_tasks or self._rows.unfinished_tasks)

    def _ensure_thread(self) -> None:
        if len(self._threads) == 2 and all(t.is_alive() for t in self._threads):
            return
        with self._start_lock:
            if len(self._threads) != 2 or not all(t.is_alive() for t in self._threads):
                self._threads = [
                    threading.Thread(target=self._run, name="fleetgate-events", daemon=True),
                    threading.Thread(target=self._keep_rows, name="fleetgate-event-history", daemon=True),
                ]
                for thread in self._threads:
                    thread.start()
                atexit.register(self.flush, 5.0)

    def _run(self) -> None:
        last = 0.0
        while True:
            batch = [self._queue.get()]
            time.sleep(max(0.0, last + self._interval_s - time.monotonic()))  # asleep, not woken by each event
            while len(batch) < 2000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            last = time.monotonic()
            try:
                self.publish(batch)
            except Exception:  # nothing must kill the publisher; the batch is logged and dropped
                log.exception("%d events could not be published", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _keep_rows(self) -> None:
        while True:
            batches = [self._rows.get()]
            while True:
                try:
                    batches.append(self._rows.get_nowait())
                except queue.Empty:
                    break
            rows = [row for batch in batches for row in batch]
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.insert(Event), rows)
            except Exception:  # a database hiccup must not kill the keeper; the rows are logged and dropped
                log.exception("%d events could not be kept", len(rows))
            finally:
                for _ in batches:
                    self._rows.task_done()

    def publish(self, items: Iterable[EventItem]) -> int:
        """Publish (sandbox_id, kind, data) events live, then hand their rows to be kept (one INSERT a batch)."""
        batch = list(items)
        if not batch:
            return 0
        now, stamp = time.time(), utcnow()
        payloads = [
            orjson.dumps({"sandbox_id": s, "kind": k, "data": d, "ts": now}, default=str).decode() for s, k, d in batch
        ]
        ids = self._xadd(batch, payloads)
        rows = [
            {"sandbox_id": s, "kind": k, "data": d, "stream_id": ids[i] if ids else None, "created_at": stamp}
            for i, (s, k, d) in enumerate(batch)
        ]
        self._ensure_thread()
        self._rows.put(rows)
        return len(rows)

    def _xadd(self, batch: list[EventItem], payloads: list[str]) -> list[str]:
        keys = [self.keys.fleet_stream, self.keys.events_total, *(self.keys.sandbox_stream(s) for s, _, _ in batch)]
        args = [arg for (_, kind, _), payload in zip(batch, payloads, strict=True) for arg in (kind, payload)]
        try:
            raw = self._script(keys=keys, args=[FLEET_MAXLEN, SANDBOX_MAXLEN, *args])
        except redis.RedisError as e:  # live view degrades; history in the database stays complete
            log.warning("%d events not published live (Redis): %s", len(batch), e)
            return []
        return [i.decode() if isinstance(i, bytes) else str(i) for i in raw]
