"""A released request is answered by what dispatch decided, read from its typed outcome.

Before the outcome carried its kind, the release forwarded whatever dispatch answered
unless its code was I99: a request dispatch refused (E11: no command could be built)
went to the User's Receive Response URL as an unsigned sr:Acknowledgement. Now a
signed Service Response carries the refusal, as for a deleted request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from lxml import etree

from gateway.core.answers import Answers
from gateway.core.clock import SystemClock
from gateway.core.outcome import Acknowledge, Outcome, Verified
from gateway.core.snapshot import Snapshot
from gateway.core.stages import RequestChecks
from gateway.devkit.client import sign_request
from gateway.devkit.simulator import Simulator
from gateway.edge.lifecycle import Lifecycle
from gateway.edge.metrics import Metrics
from gateway.edge.quarantine_ops import QuarantineOps
from gateway.edge.screen import ThresholdScreen
from gateway.stores.jobs import open_sqlite_jobs
from gateway.stores.operator_files import Loaded, load
from gateway.stores.outbox import Outbox, open_outbox
from gateway.stores.quarantine import QuarantineItem, open_quarantine_store
from gateway.stores.threshold_memory import MemoryThresholdStore
from mmc.identifiers import parse_request_id
from tests.harness import default_config, next_counter, response_code
from thresholds.config import ThresholdConfig

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
DS_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"


class RefusingDispatcher:
    """Dispatch that can build no command for the request (the E11 path)."""

    async def dispatch(self, request: Verified, snapshot: Snapshot) -> Outcome:
        raise Acknowledge("dispatch", "E11", "no command for this request")


@asynccontextmanager
async def released_world(
    tmp_path: Path,
) -> AsyncIterator[tuple[QuarantineOps, Outbox, Loaded]]:
    clock = SystemClock()
    loaded = load(default_config(tmp_path), clock)
    answers = Answers(clock, loaded.signer)
    checks = RequestChecks(loaded.versions, loaded.schemas, clock)
    transport = Simulator.for_inventory(lambda: loaded.snapshots.current.inventory, clock=clock)
    async with (
        open_outbox(tmp_path / "outbox.sqlite", clock=clock) as outbox,
        open_sqlite_jobs(tmp_path / "jobs.sqlite", clock=clock) as jobs,
        open_quarantine_store(tmp_path / "quarantine.sqlite", clock) as quarantine,
    ):
        lifecycle = Lifecycle(checks, loaded.snapshots, answers, transport, jobs, outbox)
        screen = ThresholdScreen(
            answers,
            Metrics(),
            MemoryThresholdStore(ThresholdConfig()),
            quarantine,
            lifecycle.deliver_alert,
        )
        ops = QuarantineOps(
            checks,
            loaded.snapshots,
            loaded.versions,
            answers,
            screen,
            RefusingDispatcher(),
            lifecycle,
            retention_seconds=3600.0,
        )
        yield ops, outbox, loaded


async def test_a_release_dispatch_refuses_is_told_with_a_signed_response(
    tmp_path: Path, shared_dir: Path
) -> None:
    async with released_world(tmp_path) as (ops, outbox, _):
        signed, _ = sign_request(
            (shared_dir / ECS17B).read_bytes(), [tmp_path / "pki"], counter=next_counter()
        )
        header = etree.fromstring(signed).find("{*}Header")
        assert header is not None
        request_id = parse_request_id(header.findtext("{*}RequestID") or "")
        ref = await ops.screen.quarantine.hold(
            QuarantineItem(
                user_id=request_id.originator,
                request_id=str(request_id),
                srv="4.1.1",
                duis_version="5.4",
                breach="ADUserThresholdBreach",
                held_at=dt.datetime.now(dt.UTC),
                raw_request=signed,
            )
        )
        with trio.fail_after(10):
            answered = await ops.release(ref)
        assert answered == "E11"
        [message] = await outbox.pending(request_id.originator)
        assert message.message_id == f"{request_id}:quarantine:{ref}"
        document = etree.fromstring(message.body)
        assert response_code(message.body) == "E11"
        assert document.find(DS_SIGNATURE) is not None  # signed: never a bare acknowledgement
        assert (await ops.screen.quarantine.show(ref)).state == "released"  # type: ignore[union-attr]
