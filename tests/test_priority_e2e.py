"""Priority end to end, through the real gateway (HTTP, signed requests): no first-in-
first-out stage in front of a hub's priority queues (¶130, SEC H3.27)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from gateway.core.clock import SystemClock
from gateway.core.device import DeviceCommand, DeviceReply, Priority
from gateway.core.estate_config import EstateConfig
from gateway.core.registry import Device
from gateway.core.signing import sign_document
from gateway.core.simulator_config import LinkProfile, QueueLimits, SimulatorConfig
from gateway.devkit.client import endpoint_path, prepare, signing_key
from gateway.devkit.estate_server import EstateServer
from gateway.devkit.simulator import Simulator
from gateway.edge.estate_link import NetworkTransport
from gateway.edge.metrics import Metrics
from gateway.edge.transport import DeviceTransport
from gateway.stores.operator_files import load_inventory
from tests.estate_harness import FAST_LINK
from tests.harness import Gateway, default_config, next_counter, response_code, running_gateway

READ = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
TOP_UP = "duis/samples/requests/CS01a_2.2_SUCCESS_REQUEST_DUIS.XML"  # CV 1, 2.2, same ESME
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
READS = 5000


class HubLog(Simulator):
    """The simulated estate, noting the order in which commands reach a device."""

    started: list[tuple[Priority, str]]
    waiting: Callable[[], float]  # on-demand commands queued, wherever they wait

    async def _exchange(self, command: DeviceCommand, to_hub: bool, hub: Device) -> DeviceReply:
        self.started.append((command.priority, str(command.request_id)))
        return await super()._exchange(command, to_hub, hub)


def _on_demand(metrics: Metrics) -> float:
    depth: float = metrics.queue_depth.labels("on_demand")._value.get()
    return depth


class Signer:
    """Signs templates with the supplier's key, loaded once (the CLI reloads it each time)."""

    def __init__(self, key_dirs: list[Path], version: str) -> None:
        self.cert, self.key = signing_key(key_dirs, SUPPLIER, version)

    def sign(self, xml: bytes, counter: int) -> tuple[bytes, str]:
        root, _ = prepare(xml, counter=counter)
        signed = sign_document(
            root, self.key, self.cert.certificate.issuer.rfc4514_string(), self.cert.serial
        )
        return signed, endpoint_path("5.4", "4.1.1", 1)


@asynccontextmanager
async def gateway_and_hub(
    tmp_path: Path, transport: str
) -> AsyncIterator[tuple[Gateway, HubLog, Metrics]]:
    """A gateway whose one busy hub serves a command in 0.1 s (WAN + HAN), in its own
    process's simulator or behind the estate link."""
    leg = LinkProfile(distribution="fixed", latency_median_seconds=0.05, latency_p99_seconds=0.05)
    simulator_config = SimulatorConfig(
        wan_profiles={name: leg for name in SimulatorConfig().wan_profiles},
        han_profiles={name: leg for name in SimulatorConfig().han_profiles},
        # Room for all of them, so the limits do not thin the queue out.
        queue_limits=QueueLimits(max_queued_per_class=20_000, max_queued_per_user_per_class=20_000),
    )
    config = default_config(tmp_path, simulator=simulator_config)
    metrics = Metrics()  # the gateway's
    estate_metrics = Metrics()  # the estate process's, behind the link
    inventory = load_inventory(Path(config.registry.inventory_file))
    hub = HubLog(
        lambda: inventory,
        simulator_config,
        SystemClock(),
        random.Random(5),
        # Embedded, the hub queues are the gateway's own; behind the link, the estate's.
        metrics=metrics if transport == "embedded" else estate_metrics,
    )
    hub.started = []
    async with trio.open_nursery() as nursery:
        device_transport: DeviceTransport = hub
        if transport == "network":
            server = EstateServer(hub, FAST_LINK)  # the default credit window (1024)
            _, port = await nursery.start(server.serve, "127.0.0.1", 0)
            # The default command timeout: 1,024 reads in the estate take 102 s to serve.
            estate = msgspec.structs.replace(
                FAST_LINK,
                address=f"127.0.0.1:{port}",
                node_id="n1",
                command_timeout_seconds=EstateConfig().command_timeout_seconds,
            )
            config = msgspec.structs.replace(config, estate=estate)
            device_transport = NetworkTransport(
                estate, node_id="n1", clock=SystemClock(), metrics=metrics
            )
        async with running_gateway(
            config, [tmp_path / "pki"], device_transport, metrics=metrics
        ) as gw:
            hub.waiting = lambda: (
                _on_demand(metrics)
                + (_on_demand(estate_metrics) if transport == "network" else 0.0)
            )
            yield gw, hub, metrics
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("transport", ["embedded", "network"])
async def test_a_top_up_behind_5000_reads_is_the_next_command_its_hub_receives(
    tmp_path: Path, shared_dir: Path, transport: str
) -> None:
    read = (shared_dir / READ).read_bytes()
    top_up = (shared_dir / TOP_UP).read_bytes()
    async with (
        gateway_and_hub(tmp_path, transport) as (gw, hub, metrics),
        httpx.AsyncClient(timeout=60) as client,
    ):
        signer = Signer([tmp_path / "pki"], "5.4")

        async def send(template: bytes, counter: int) -> None:
            body, path = signer.sign(template, counter)
            r = await client.post(
                gw.url + path, content=body, headers={"content-type": "application/xml"}
            )
            assert response_code(r.content) == "I99", r.text

        # Behind the link, 2,000 are enough to fill the estate's credit window (1,024) and
        # keep the rest waiting for credit in the gateway.
        reads = READS if transport == "embedded" else 2000
        for _ in range(reads):  # one at a time: RequestID counters must increase
            await send(read, next_counter())
        # Most of the reads are still waiting (for the hub, or for credit at the link).
        # Every read not yet served is waiting (for the hub, or for credit at the link):
        # none dropped, and enough of them for the top-up to overtake.
        queued = reads - len(hub.started)
        assert queued > 100
        assert abs(hub.waiting() - queued) <= 2  # one may be on the wire, one just started
        await send(top_up, counter := next_counter())
        before = len(hub.started)
        registry = metrics.registry

        def top_up_waits() -> float | None:
            return registry.get_sample_value(
                "duisgw_command_queue_wait_seconds_count", {"priority": "prepayment_and_critical"}
            )

        with trio.fail_after(10):
            while not top_up_waits():
                await trio.sleep(0.01)
    order = hub.started
    index = next(i for i, (p, _) in enumerate(order) if p is Priority.PREPAYMENT_AND_CRITICAL)
    assert order[index][1].endswith(f":{counter}")
    # The next command the hub took after the top-up was accepted (at most one read may
    # have started between the I99 and the job reaching the hub's queue).
    assert index - before in (0, 1), (index, before)
    # The wait metric has each class's real wait: the reads that started after a long
    # queue waited over a second; the top-up at most one command's service.
    read_waits = registry.get_sample_value(
        "duisgw_command_queue_wait_seconds_count", {"priority": "on_demand"}
    )
    read_waits_under_1s = registry.get_sample_value(
        "duisgw_command_queue_wait_seconds_bucket", {"priority": "on_demand", "le": "1.0"}
    )
    assert read_waits is not None and read_waits_under_1s is not None
    assert read_waits >= index - 1 and read_waits - read_waits_under_1s > 0
    assert top_up_waits() == 1.0
    top_up_quick = registry.get_sample_value(
        "duisgw_command_queue_wait_seconds_bucket",
        {"priority": "prepayment_and_critical", "le": "0.5"},
    )
    assert top_up_quick == 1.0
