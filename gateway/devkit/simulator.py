"""The embedded device simulator: a DeviceTransport that answers like a GB estate.

Each command travels WAN (the CSP) to its Communications Hub, then HAN to the device
unless the device is the hub. Each leg has a LinkProfile: a latency distribution and
failure rates, per WAN variant (CSP region) and per HAN variant, so a test estate with
one hub of each HAN/WAN combination (`default_hub_variants`, consultation §2.4) shows
each its own behaviour. Commands to one hub queue in HubQueues (gateway.devkit.priority): a hub
serves `hub_capacity` commands at a time in priority order.

What a reply contains (REAL shapes from the RTDS vectors, SIMULATED payloads
elsewhere) is gateway/devkit/simulated_responses.py.

Outcomes: a device missing from the inventory, or not commissioned, or without a
commissioned hub, is UNREACHABLE (E20); a device that is silent, or slower than
`response_timeout_seconds`, is NO_RESPONSE (E21) after that timeout; a future-dated
command not started within `future_dated_timeout_seconds` of its execution time is
FUTURE_DATED_TIMEOUT (E30). A full hub queue raises QueueFull (gateway.devkit.priority).

Deterministic: each command draws from its own random.Random seeded by the constructor's
rng and its RequestID, so results do not depend on how trio interleaves commands.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable

import msgspec
import trio

from gateway.core.clock import Clock, SystemClock
from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply
from gateway.core.registry import Device, Inventory
from gateway.core.simulator_config import (
    HAN_VARIANTS,
    WAN_VARIANTS,
    LinkProfile,
    SimulatorConfig,
)
from gateway.devkit.priority import HubQueues, QueueTimeout
from gateway.devkit.simulated_responses import DeviceKeys, simulated_alert, simulated_response
from gateway.edge.metrics import Metrics
from mmc.identifiers import Eui64

TEST_HUB_ID_PREFIX = "00-DB-12-34-56-78-C0"  # + one byte per HAN/WAN combination
_Z99 = 2.3263478740408408  # standard normal 99th percentile: p99 = median * exp(z99 sigma)


def default_hub_variants(prefix: str = TEST_HUB_ID_PREFIX) -> tuple[Device, ...]:
    """One commissioned test Communications Hub per HAN/WAN combination."""
    combos = [(han, wan) for han in HAN_VARIANTS for wan in WAN_VARIANTS]
    return tuple(
        Device(
            device_id=f"{prefix}-{index:02X}",
            device_type="CHF",
            status="commissioned",
            han_variant=han,
            wan_variant=wan,
        )
        for index, (han, wan) in enumerate(combos, start=1)
    )


def sample_latency(profile: LinkProfile, rng: random.Random) -> float:
    median = profile.latency_median_seconds
    if profile.distribution == "fixed" or median == 0.0:
        return median
    sigma = math.log(profile.latency_p99_seconds / median) / _Z99
    return rng.lognormvariate(math.log(median), sigma) if sigma > 0 else median


class Simulator:
    """DeviceTransport over the live inventory. Nothing to start: each send waits for
    its hub in its own task (see gateway.devkit.priority)."""

    def __init__(
        self,
        inventory_getter: Callable[[], Inventory],
        config: SimulatorConfig,
        clock: Clock,
        rng: random.Random,
        *,
        metrics: Metrics | None = None,
        keys: DeviceKeys | None = None,
    ) -> None:
        self._inventory = inventory_getter
        self._config = config
        self._clock = clock
        self._seed = rng.getrandbits(64)
        self._keys = keys
        self._firmware_version = bytes.fromhex(config.firmware_version_hex)
        # Devices number their alerts for life; a simulator starts its devices' counters
        # at its start time in milliseconds, so a restarted gateway's simulated alerts
        # never reuse an earlier run's counters (and message ids).
        self._alert_counter_base = int(clock.now().timestamp() * 1000)
        self._alert_counters: dict[Eui64, int] = {}
        self.queues = HubQueues(
            capacity=config.hub_capacity, limits=config.queue_limits, metrics=metrics
        )

    @classmethod
    def for_inventory(
        cls,
        inventory_getter: Callable[[], Inventory],
        config: SimulatorConfig | None = None,
        clock: Clock | None = None,
        *,
        seed: int | None = None,
        metrics: Metrics | None = None,
    ) -> Simulator:
        return cls(
            inventory_getter,
            config if config is not None else SimulatorConfig(),
            clock if clock is not None else SystemClock(),
            random.Random(seed),
            metrics=metrics,
        )

    async def send(self, command: DeviceCommand) -> DeviceReply:
        inventory = self._inventory()
        device = inventory.get(command.device_id)
        hub = _hub_of(device, command, inventory)
        if device is None or hub is None or device.status != "commissioned":
            return DeviceReply(DeviceOutcome.UNREACHABLE)
        now = trio.current_time()
        delay = 0.0
        if (execute_at := command.not_before) is not None:
            if execute_at.tzinfo is None:  # DUIS date-times without an offset are UTC
                execute_at = execute_at.replace(tzinfo=dt.UTC)
            delay = max(0.0, (execute_at - self._clock.now()).total_seconds())
        config = self._config
        patience = config.future_dated_timeout_seconds if delay else config.queue_timeout_seconds
        try:
            async with self.queues.slot(
                hub.device_id,
                priority=command.priority,
                originator=command.request_id.originator,
                ready_at=now + delay,
                deadline=now + delay + patience,
            ) as waited:
                reply = await self._exchange(command, device is hub, hub)
                return msgspec.structs.replace(reply, queued_seconds=waited)
        except QueueTimeout:
            late = DeviceOutcome.FUTURE_DATED_TIMEOUT if delay else DeviceOutcome.NO_RESPONSE
            return DeviceReply(late)

    async def _exchange(self, command: DeviceCommand, to_hub: bool, hub: Device) -> DeviceReply:
        config = self._config
        rng = random.Random(f"{self._seed}:{command.request_id}")
        links = [self._profile(config.wan_profiles, hub.wan_variant, config.fallback_wan_variant)]
        if not to_hub:
            links.append(
                self._profile(config.han_profiles, hub.han_variant, config.fallback_han_variant)
            )
        latency = 0.0
        for link in links:
            latency += sample_latency(link, rng)
            draw = rng.random()
            if draw < link.unreachable_rate:
                await trio.sleep(latency)  # the CSP or hub reports it after trying
                return DeviceReply(DeviceOutcome.UNREACHABLE)
            if draw < link.unreachable_rate + link.no_response_rate:
                latency = math.inf
        response = (
            self._response(command, rng) if latency <= config.response_timeout_seconds else None
        )
        if response is None:
            await trio.sleep(config.response_timeout_seconds)
            return DeviceReply(DeviceOutcome.NO_RESPONSE)
        await trio.sleep(latency)
        alerts = (self._alert(command),) if rng.random() < config.device_alert_rate else ()
        return DeviceReply(DeviceOutcome.RESPONDED, response, alerts)

    @staticmethod
    def _profile(table: dict[str, LinkProfile], variant: str | None, fallback: str) -> LinkProfile:
        return table.get(variant or fallback) or table[fallback]

    def _response(self, command: DeviceCommand, rng: random.Random) -> bytes | None:
        return simulated_response(
            command,
            rng,
            clock=self._clock,
            keys=self._keys,
            firmware_version=self._firmware_version,
        )

    def _alert(self, command: DeviceCommand) -> bytes:
        """A Generic Non Critical Alert from the device to the User it just answered."""
        device, user = command.device_id, command.request_id.originator
        counter = self._alert_counters.get(device, self._alert_counter_base) + 1
        self._alert_counters[device] = counter
        return simulated_alert(
            device,
            user,
            counter,
            alert_code=self._config.device_alert_code,
            clock=self._clock,
            keys=self._keys,
        )


def _hub_of(device: Device | None, command: DeviceCommand, inventory: Inventory) -> Device | None:
    """The commissioned CHF the command travels through (the device itself for a CHF)."""
    if device is None:
        return None
    if device.device_type == "CHF":
        return device
    hub_id = device.chf_id or command.hub_id
    hub = inventory.get(hub_id) if hub_id is not None else None
    if hub is None or hub.device_type != "CHF" or hub.status != "commissioned":
        return None
    return hub
