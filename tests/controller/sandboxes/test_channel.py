"""The exec channel's hand-over between API threads and the gateway's event loop, with a real loop in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from controller.models import ExecResult
from controller.sandboxes import channel as channel_module
from controller.sandboxes.channel import ChannelLost, ExecChannel, capped

JOB = {"command": ["echo", "ok"], "env": {}, "workdir": "/workspace", "timeout_s": 5, "max_output": 100}
ANSWER = {"exit_code": 0, "stdout": "ok\n", "stderr": "", "timed_out": False, "truncated": False, "duration_ms": 1.0}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running

    async def cancel_the_rest() -> None:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    asyncio.run_coroutine_threadsafe(cancel_the_rest(), running).result(2)
    running.call_soon_threadsafe(running.stop)
    thread.join(5)
    running.close()


@pytest.fixture
def channel(loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> ExecChannel:
    monkeypatch.setattr(channel_module, "TAKE_S", 0.3)
    found = ExecChannel()
    found.bind(loop)
    return found


def on_loop(loop: asyncio.AbstractEventLoop, coroutine: Any) -> Future[Any]:
    return asyncio.run_coroutine_threadsafe(coroutine, loop)


def polling(channel: ExecChannel, loop: asyncio.AbstractEventLoop, sandbox_id: str) -> Future[Any]:
    """A supervisor's long-poll, begun on the loop before this returns."""
    poll = on_loop(loop, channel.next(sandbox_id, 5))
    loop_call(loop, lambda: None)  # runs after the poll's first step
    return poll


def in_thread(fn: Any) -> Future[Any]:
    """`fn()` on a thread of its own (as the API calls the channel), its result or exception in a future."""
    result: Future[Any] = Future()

    def call() -> None:
        try:
            result.set_result(fn())
        except Exception as e:  # the test asserts on it
            result.set_exception(e)

    threading.Thread(target=call, daemon=True).start()
    return result


def test_a_supervisor_takes_starts_and_answers_a_command(channel: ExecChannel, loop: asyncio.AbstractEventLoop) -> None:
    poll = polling(channel, loop, "sb_1")
    answer = in_thread(lambda: channel.run("sb_1", JOB, 5))
    offered = poll.result(2)
    assert offered is not None
    assert offered["command"] == ["echo", "ok"]
    assert channel.start("sb_1", offered["id"])
    assert not channel.deliver("sb_2", offered["id"], ANSWER)  # another sandbox's token cannot answer it
    assert loop_call(loop, lambda: channel.deliver("sb_1", offered["id"], ANSWER))
    assert answer.result(2) == ANSWER
    assert not channel.deliver("sb_1", offered["id"], ANSWER)  # answered once


def loop_call(loop: asyncio.AbstractEventLoop, fn: Any) -> Any:
    async def call() -> Any:
        return fn()

    return on_loop(loop, call()).result(2)


def test_a_supervisor_never_seen_is_not_waited_for(channel: ExecChannel) -> None:
    started = time.monotonic()
    assert channel.run("sb_1", JOB, 5) is None  # a cold sandbox still starting: docker exec at once
    assert time.monotonic() - started < 0.1


def test_a_claimed_sandboxs_supervisor_is_waited_for_once_and_then_not(channel: ExecChannel) -> None:
    channel.expect("sb_1")
    started = time.monotonic()
    assert channel.run("sb_1", JOB, 5) is None
    assert 0.25 < time.monotonic() - started < 2  # waited TAKE_S (0.3 s here) for it
    started = time.monotonic()
    assert channel.run("sb_1", JOB, 5) is None
    assert time.monotonic() - started < 0.1  # it never came: docker exec at once


def test_an_expected_supervisor_that_polls_late_gets_the_command(
    channel: ExecChannel, loop: asyncio.AbstractEventLoop
) -> None:
    channel.expect("sb_1")
    answer = in_thread(lambda: channel.run("sb_1", JOB, 5))
    time.sleep(0.05)
    serve(channel, loop, on_loop(loop, channel.next("sb_1", 5)))
    assert answer.result(2) == ANSWER


def serve(channel: ExecChannel, loop: asyncio.AbstractEventLoop, poll: Future[Any]) -> None:
    """What a supervisor does with the command its poll brings: start it, answer it."""
    offered = poll.result(2)
    assert offered is not None
    assert loop_call(loop, lambda: channel.start("sb_1", offered["id"]))
    assert loop_call(loop, lambda: channel.deliver("sb_1", offered["id"], ANSWER))


def test_a_command_offered_but_not_started_in_time_is_withdrawn_and_may_not_start_later(
    channel: ExecChannel, loop: asyncio.AbstractEventLoop
) -> None:
    poll = polling(channel, loop, "sb_1")
    assert channel.run("sb_1", JOB, 5) is None  # a frozen supervisor took it from the poll and never started it
    offered = poll.result(2)
    assert offered is not None
    assert not loop_call(loop, lambda: channel.start("sb_1", offered["id"]))  # it ran by docker exec instead


def test_a_returning_supervisor_is_used_again(channel: ExecChannel, loop: asyncio.AbstractEventLoop) -> None:
    seen_then_quiet = on_loop(loop, channel.next("sb_1", 0.1)).result(2)
    assert seen_then_quiet is None
    assert channel.run("sb_1", JOB, 5) is None  # its next command waits in vain, once
    poll = polling(channel, loop, "sb_1")
    answer = in_thread(lambda: channel.run("sb_1", JOB, 5))
    serve(channel, loop, poll)
    assert answer.result(2) == ANSWER


def test_closing_fails_the_running_commands_and_ends_the_polls(
    channel: ExecChannel, loop: asyncio.AbstractEventLoop
) -> None:
    poll = polling(channel, loop, "sb_1")
    answer = in_thread(lambda: channel.run("sb_1", JOB, 5))
    offered = poll.result(2)
    assert offered is not None
    assert loop_call(loop, lambda: channel.start("sb_1", offered["id"]))
    idle = on_loop(loop, channel.next("sb_2", 5))
    loop_call(loop, channel.close)
    with pytest.raises(ChannelLost, match="gateway stopped"):
        answer.result(2)
    assert idle.result(2) is None
    assert channel.run("sb_1", JOB, 5) is None  # closed: docker exec


def test_an_unbound_channel_sends_every_command_to_docker_exec() -> None:
    assert ExecChannel().run("sb_1", JOB, 5) is None


def test_an_answer_is_held_to_the_output_limit() -> None:
    big = ExecResult(exit_code=0, stdout="x" * 80, stderr="y" * 80, duration_ms=1.0)
    cut = capped(big, 100)
    assert (len(cut.stdout), len(cut.stderr), cut.truncated) == (80, 20, True)
    small = ExecResult(exit_code=0, stdout="x", stderr="", duration_ms=1.0)
    assert capped(small, 100) is small


def test_a_command_whose_sandbox_ends_fails_within_a_second_not_at_its_deadline(
    channel: ExecChannel, loop: asyncio.AbstractEventLoop
) -> None:
    ended = threading.Event()
    poll = polling(channel, loop, "sb_1")
    answer = in_thread(lambda: channel.run("sb_1", JOB, 60, alive=lambda: not ended.is_set()))
    offered = poll.result(2)
    assert offered is not None
    assert loop_call(loop, lambda: channel.start("sb_1", offered["id"]))
    ended.set()  # the sandbox was OOM-killed under the running command, say
    started = time.monotonic()
    with pytest.raises(ChannelLost, match="ended while the command ran"):
        answer.result(5)
    assert time.monotonic() - started < 2.5
