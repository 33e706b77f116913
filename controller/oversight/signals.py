"""Waking agents that wait for a decision: Redis pub/sub for speed, the database for truth.

Whoever settles an approval publishes its id after committing. The gateway keeps one subscription per process
and wakes the long-polls waiting on that id; they then read the decision from the database. If Redis is away
the waits fall back to re-reading the database every half second, so a decision is never lost, only slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)
POLL_WITHOUT_REDIS_S = 0.5
POLL_WITH_REDIS_S = 5.0


def channel(instance: str) -> str:
    return f"fleetgate:{instance}:decided"


def publish_decided(client: redis.Redis, instance: str, keys: list[str]) -> None:
    """Tell waiting agents these items changed ("approval:12", "action:34"); an outage only delays them."""
    for key in keys:
        try:
            client.publish(channel(instance), key)
        except redis.RedisError as e:
            log.warning("could not publish %s (agents will find it by polling): %s", key, e)


class DecisionWaiter:
    """One Redis subscription per process, fanned out to the long-polls waiting on approval ids."""

    def __init__(self, redis_url: str, instance: str) -> None:
        self._url = redis_url
        self._channel = channel(instance)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="fleetgate-decisions")

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
