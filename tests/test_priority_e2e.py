"""Priority end to end, through the real gateway (HTTP, signed requests): no first-in-
first-out stage in front of a hub's priority queues (¶130, SEC H3.27)."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import msgspec
import trio

from gateway.core.clock import SystemClock
from gateway.core.device import DeviceCommand, DeviceReply, Priority
from gateway.core.registry import Device
from gateway.core.signing import sign_document
from gateway.core.simulator_config import LinkProfile, QueueLimits, SimulatorConfig
from gateway.devkit.client import endpoint_path, prepare, signing_key
from gateway.devkit.simulator import Simulator
from gateway.edge.metrics import Metrics
from gateway.stores.operator_files import load_inventory
from tests.harness import default_config, next_counter, response_code, running_gateway

READ = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
TOP_UP = "duis/samples/requests/CS01a_2.2_SUCCESS_REQUEST_DUIS.XML"  # CV 1, 2.2, same ESME
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
READS = 5000


class HubLog(Simulator):
    """The simulated estate, noting the order in which commands reach a device."""

    started: list[tuple[Priority, str]]

    async def _exchange(self, command: DeviceCommand, to_hub: bool, hub: Device) -> DeviceReply:
        self.started.append((command.priority, str(command.request_id)))
        return await super()._exchange(command, to_hub, hub)


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


async def test_a_top_up_behind_5000_reads_is_the_next_command_its_hub_receives(
    tmp_path: Path, shared_dir: Path
) -> None:
    # Every command holds the hub 0.1 s (WAN + HAN): the reads pile up in its queue.
    leg = LinkProfile(distribution="fixed", latency_median_seconds=0.05, latency_p99_seconds=0.05)
    simulator_config = SimulatorConfig(
        wan_profiles={name: leg for name in SimulatorConfig().wan_profiles},
        han_profiles={name: leg for name in SimulatorConfig().han_profiles},
        # Room for all of them, so the limits do not thin the queue out.
        queue_limits=QueueLimits(max_queued_per_class=20_000, max_queued_per_user_per_class=20_000),
    )
    config = default_config(tmp_path, simulator=simulator_config)
    metrics = Metrics()
    inventory = load_inventory(Path(config.registry.inventory_file))
    hub = HubLog(
        lambda: inventory,
        simulator_config,
        SystemClock(),
        random.Random(5),
        metrics=metrics,
    )
    hub.started = []
    signer = Signer([tmp_path / "pki"], "5.4")
    read = (shared_dir / READ).read_bytes()
    top_up = (shared_dir / TOP_UP).read_bytes()
    async with running_gateway(config, [tmp_path / "pki"], hub, metrics=metrics) as gw:
        counters = iter([next_counter() for _ in range(READS)])

        async def send_reads(client: httpx.AsyncClient) -> None:
            for counter in counters:
                body, path = signer.sign(read, counter)
                r = await client.post(
                    gw.url + path, content=body, headers={"content-type": "application/xml"}
                )
                assert response_code(r.content) == "I99", r.text

        async with httpx.AsyncClient(timeout=60) as client:
            await send_reads(client)  # one at a time: RequestID counters must increase
            waiting = metrics.queue_depth.labels("on_demand")._value.get()
            assert waiting > 1000  # most of the reads are still queued for the hub
            body, path = signer.sign(top_up, counter := next_counter())
            r = await client.post(
                gw.url + path, content=body, headers={"content-type": "application/xml"}
            )
            assert response_code(r.content) == "I99", r.text
            before = len(hub.started)
            with trio.fail_after(10):
                while not any(p is Priority.PREPAYMENT_AND_CRITICAL for p, _ in hub.started):
                    await trio.sleep(0.01)
        order = hub.started
        index = next(i for i, (p, _) in enumerate(order) if p is Priority.PREPAYMENT_AND_CRITICAL)
        assert order[index][1].endswith(f":{counter}")
        # The next command the hub took after the top-up was queued (at most one read
        # may have started between the I99 and the job reaching the queue).
        assert index - before in (0, 1), (index, before)
        # The wait metric saw every class's wait in the hub queue itself: the reads that
        # started after a long queue waited over a second, the top-up under one command.
        registry = metrics.registry
        read_waits = registry.get_sample_value(
            "duisgw_command_queue_wait_seconds_count", {"priority": "on_demand"}
        )
        read_waits_under_1s = registry.get_sample_value(
            "duisgw_command_queue_wait_seconds_bucket", {"priority": "on_demand", "le": "1.0"}
        )
        assert read_waits is not None and read_waits_under_1s is not None
        assert read_waits >= index and read_waits - read_waits_under_1s > 0
        top_up_waits = registry.get_sample_value(
            "duisgw_command_queue_wait_seconds_bucket",
            {"priority": "prepayment_and_critical", "le": "0.5"},
        )
        assert top_up_waits == 1.0
