"""Quarantine on Redis (issue 13): one outcome when nodes race, refs unique across nodes,
held requests kept through a Redis kill -9. The behaviour tests of test_quarantine.py and
test_quarantine_audit.py run on both backends (the `quarantine_opener` fixture)."""

from __future__ import annotations

from pathlib import Path

import trio

from gateway.core.clock import FixedClock
from gateway.stores.node_identity import release_owner
from gateway.stores.quarantine import NotHeld, QuarantineError, QuarantineStore
from gateway.stores.quarantine_audit import Decision
from tests.conftest import QuarantineOpener
from tests.test_quarantine import START, item

NODES = 3


async def test_racing_nodes_release_and_delete_with_exactly_one_outcome(
    quarantine_opener: QuarantineOpener,
) -> None:
    clock = FixedClock(START)
    async with (
        quarantine_opener(clock) as a,
        quarantine_opener(clock) as b,
        quarantine_opener(clock) as c,
    ):
        refs = [await (a, b, c)[n % NODES].hold(item(n, clock)) for n in range(30)]
        assert len(set(refs)) == 30  # unique whichever node held it
        outcomes: dict[int, list[str]] = {ref: [] for ref in refs}

        async def release(store: QuarantineStore, ref: int, owner: int) -> None:
            try:
                await store.begin_release(ref, owner, Decision(by=f"node-{owner}"))
                outcomes[ref].append("released")
            except NotHeld:
                pass

        async def delete(ref: int) -> None:
            try:
                await c.delete(ref, Decision(by="node-2"))
                outcomes[ref].append("deleted")
            except NotHeld:
                pass

        async with trio.open_nursery() as nursery:
            for ref in refs:
                nursery.start_soon(release, a, ref, 0)
                nursery.start_soon(release, b, ref, 1)
                nursery.start_soon(delete, ref)
        for ref in refs:
            assert len(outcomes[ref]) == 1, (ref, outcomes[ref])
            [decision] = await b.audit(ref)  # only the winner is audited
            shown = await b.show(ref)
            assert shown is not None and shown.state in ("releasing", "deleted")
            assert (decision.action == "delete") == (shown.state == "deleted")
        assert await a.count("held") == 0


async def test_an_unknown_ref_is_the_callers_error(quarantine_opener: QuarantineOpener) -> None:
    async with quarantine_opener(FixedClock(START)) as store:
        for attempt in (store.delete(10**12), store.begin_release(10**12, 0)):
            try:
                await attempt
            except QuarantineError as refused:
                assert "no quarantined request" in str(refused)
            else:
                raise AssertionError("an unknown ref was accepted")


def test_a_release_owner_names_its_directory_and_keeps_its_name(tmp_path: Path) -> None:
    first, second = tmp_path / "node-1", tmp_path / "node-2"
    first.mkdir()
    second.mkdir()
    owner = release_owner(first)
    assert owner == release_owner(first)  # the same after a restart
    assert owner != release_owner(second) and owner >= 1  # and not another node's
    assert (first / "node.id").stat().st_mode & 0o077 == 0
