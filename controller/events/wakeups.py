"""Waking agents that wait for a decision: Redis pub/sub for speed, the database for truth.

This is the one module on the path from a decision to the waiting agent that touches the wire: the flow that
settled an item publishes `approval:ID` / `action:ID` here after committing (`publish`), and the gateway's one
subscription per process (`Waiter`) wakes the long-polls waiting on that key, which then read the database. If
Redis is away the waits re-read the database every half second, so a decision is never lost, only slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import redis
import redis.asyncio as aioredis

from controller.names import Keys

log = logging.getLogger(__name__)
T = TypeVar("T")
POLL_WITHOUT_REDIS_S = 0.5
POLL_WITH_REDIS_S = 5.0


class Publisher:
    """Tells waiting agents that items changed; an outage only delays them (they poll). The gateway in this
    process is told directly as well (`also_wake`), so a decision made through the API wakes its agent at once
    even while Redis is away; the Redis message reaches the other processes' waits."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._channel = keys.decided
        self._local: list[Callable[[str], None]] = []

    def also_wake(self, wake: Callable[[str], None]) -> None:
        self._local.append(wake)

    def publish(self, items: Iterable[str]) -> None:
        for item in items:
            for wake in self._local:
                wake(item)
            try:
                self._client.publish(self._channel, item)
            except redis.RedisError as e:
                log.warning("could not publish %s (agents will find it by polling): %s", item, e)


class Waiter:
    """One Redis subscription per process, fanned out to the long-polls waiting on item keys."""

    def __init__(self, redis_url: str, keys: Keys) -> None:
        self._url = redis_url
        self._channel = keys.decided
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._listen(), name="fleetgate-decisions")

    def wake_soon(self, key: str) -> None:
        """Wake the waits on `key` from any thread (the API's, after a decision in this process)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down: nobody waits any more
                loop.call_soon_threadsafe(self._wake, key)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, key: str, timeout: float) -> None:
        """Return when the item may have changed, or after `timeout` (shorter while Redis is away)."""
        event = asyncio.Event()
        self._waiters[key].add(event)
        limit = min(timeout, POLL_WITH_REDIS_S if self.connected else POLL_WITHOUT_REDIS_S)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), limit)
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                self._waiters.pop(key, None)

    async def until(self, key: str, wait_s: float, read: Callable[[], Awaitable[T]], settled: Callable[[T], bool]) -> T:
        """The long-poll: `read()` until `settled` says so or `wait_s` has passed, waking when `key` is published."""
        deadline = time.monotonic() + wait_s
        while True:
            value = await read()
            remaining = deadline - time.monotonic()
            if settled(value) or remaining <= 0:
                return value
            await self.wait(key, remaining)

    def _wake(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            try:
                client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2)
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self.connected = True
                    delay = 0.2
                    self._wake_all()  # anything settled while we were away is found by the re-read
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            self._wake(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError, ValueError) as e:
                if self.connected:
                    log.warning("decision channel lost, polling the database until Redis is back: %s", e)
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _wake_all(self) -> None:
        for key in list(self._waiters):
            self._wake(key)
