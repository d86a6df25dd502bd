"""StageBatch: the calls of one scheduler round run together, each caller gets its own.

The pipeline runs every request's checks through one, and dispatch its signed
synchronous answers: a lost wake-up would hang a request, a result or an exception
handed to the wrong caller would answer one User with another's outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gateway.core.stages import RequestChecks
from gateway.edge.stage_batch import StageBatch
from tests.harness import default_config, next_counter, response_code, running_gateway

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"


class Boom(Exception):
    pass


def double(n: int) -> int:
    if n < 0:
        raise Boom(f"refused {n}")
    return 2 * n


async def test_callers_of_one_round_share_a_batch_and_keep_their_own_results() -> None:
    batch = StageBatch()
    order: list[int] = []
    results: dict[int, object] = {}

    def traced(n: int) -> int:
        order.append(n)
        return double(n)

    async def caller(n: int) -> None:
        try:
            results[n] = await batch.run(traced, n)
        except Boom as exc:
            results[n] = str(exc)

    with trio.fail_after(5):  # a lost wake-up hangs its caller
        async with trio.open_nursery() as nursery:
            for n in (1, -2, 3, 4):
                nursery.start_soon(caller, n)
    assert results == {1: 2, -2: "refused -2", 3: 6, 4: 8}
    assert batch.batches == 1 and batch.calls == 4
    assert sorted(order) == [-2, 1, 3, 4]  # each once


async def test_a_lone_caller_and_later_rounds_get_batches_of_their_own() -> None:
    batch = StageBatch()
    assert await batch.run(double, 5) == 10
    assert await batch.run(double, 6) == 12
    assert (batch.batches, batch.calls) == (2, 2)


async def test_a_caller_joining_while_its_round_runs_waits_for_the_next() -> None:
    """A call queued after the leader took the batch is not left behind."""
    batch = StageBatch()
    seen: list[int] = []

    async def late() -> None:
        seen.append(await batch.run(double, 100))

    with trio.fail_after(5):  # a lost wake-up hangs its caller
        async with trio.open_nursery() as nursery:

            def starts_another(n: int) -> int:
                nursery.start_soon(late)  # its task runs in a later round
                return double(n)

            assert await batch.run(starts_another, 1) == 2
    assert seen == [200]
    assert batch.batches == 2


async def test_a_cancel_while_the_batch_runs_spares_what_ran_and_drops_the_rest() -> None:
    """The batch's first call (the leader's: it came first) cancels every caller. The
    leader keeps its value and is cancelled at its next checkpoint; the others, whose
    calls had not run, raise Cancelled and their calls never run."""
    batch = StageBatch()
    scopes: list[trio.CancelScope] = []
    ran: list[int] = []
    got: list[int] = []

    def call(n: int) -> int:
        ran.append(n)
        if len(ran) == 1:
            for scope in scopes:
                scope.cancel()
        return double(n)

    async def caller(n: int) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            got.append(await batch.run(call, n))
            await trio.lowlevel.checkpoint()
            got.append(-1)  # never reached: cancelled above

    with trio.fail_after(5):  # a lost wake-up hangs its caller
        async with trio.open_nursery() as nursery:
            for n in (1, 2, 3):
                nursery.start_soon(caller, n)
    assert len(ran) == 1 and got == [2 * ran[0]]
    assert len(scopes) == 3 and all(scope.cancelled_caught for scope in scopes)
    assert batch.batches == 1


async def test_a_caller_cancelled_before_it_queues_runs_nothing() -> None:
    batch = StageBatch()
    ran: list[int] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await batch.run(ran.append, 1)
    assert scope.cancelled_caught and ran == [] and batch.calls == 0


async def test_an_unexpected_error_reaches_only_its_caller() -> None:
    batch = StageBatch()
    outcomes: dict[str, object] = {}

    def bug() -> int:
        raise KeyError("not a refusal")

    async def run(name: str, fn: object) -> None:
        try:
            outcomes[name] = await batch.run(fn)  # type: ignore[arg-type]
        except KeyError as exc:
            outcomes[name] = exc

    with trio.fail_after(5):  # a lost wake-up hangs its caller
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "bug", bug)
            nursery.start_soon(run, "fine", lambda: 7)
    assert isinstance(outcomes["bug"], KeyError)
    assert outcomes["fine"] == 7


async def test_a_bug_in_one_requests_checks_answers_only_that_request_500(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests checked in one batch: the one whose checks raise unexpectedly gets the
    crash boundary's 500, every other gets its own answer."""
    counters = [next_counter() for _ in range(6)]
    poisoned = str(counters[3]).encode()
    verify = RequestChecks.verify

    def buggy(self: RequestChecks, raw: bytes, *args: Any, **kwargs: Any) -> Any:
        if poisoned in raw:
            raise RuntimeError("a bug in the checks")
        return verify(self, raw, *args, **kwargs)

    monkeypatch.setattr(RequestChecks, "verify", buggy)
    xml = (shared_dir / INVENTORY).read_bytes()
    statuses: dict[int, tuple[int, str]] = {}
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:

        async def send(counter: int) -> None:
            answer = await gw.send(xml, counter=counter)
            code = response_code(answer.content) if answer.status_code == 200 else ""
            statuses[counter] = (answer.status_code, code)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for counter in counters:
                    nursery.start_soon(send, counter)
        assert (
            gw.metrics.registry.get_sample_value(
                "duisgw_internal_errors_total", {"listener": "duis"}
            )
            == 1
        )
    assert statuses.pop(counters[3]) == (500, "")
    # The rest are answered as DUIS says: in arrival order, a counter below one already
    # admitted is a replay (E1).
    assert {status for status, _ in statuses.values()} == {200}
    assert {code for _, code in statuses.values()} <= {"I0", "E1"}
    assert statuses[max(statuses)] == (200, "I0")
