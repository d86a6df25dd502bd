"""The embedded device simulator: a DeviceTransport that answers like a GB estate.

Each command travels WAN (the CSP) to its Communications Hub, then HAN to the device
unless the device is the hub. Each leg has a LinkProfile: a latency distribution and
failure rates, per WAN variant (CSP region) and per HAN variant, so a test estate with
one hub of each HAN/WAN combination (`default_hub_variants`, consultation §2.4) shows
each its own behaviour. Commands to one hub queue in HubQueues (gateway.priority): a hub
serves `hub_capacity` commands at a time in priority order.

What a reply contains:
- REAL shapes (learned from the RTDS 4.5.0 response vectors, checked against them in
  tests/test_simulator.py): the GBCS framing of every response (CRA response, the
  command's counter, device -> User, general-ciphering with MAC or general-signing, like
  the command); ECS52 (11.2) the DLMS access-response with the firmware version octets;
  ECS17b (4.1.1) the access-response carrying the get-protected-attributes result:
  protection parameters and the register values AES-GCM encrypted for the User, and the
  device's date-time in the header; device alerts as Generic Non Critical Alerts
  (0x1001): a DLMS data-notification with alert code and time stamp.
- SIMULATED: every other use case's payload is the ASCII text "SIMULATED RESPONSE <code>
  <SRV> <device type>"; meter register values are random; MACs and device signatures are
  real only when a DeviceKeys is given (else a zero MAC and an empty signature field), and
  without keys the ECS17b registers are encrypted under SIMULATED_PROTECTION_KEY.
Outcomes: a device missing from the inventory, or not commissioned, or without a
commissioned hub, is UNREACHABLE (E20); a device that is silent, or slower than
`response_timeout_seconds`, is NO_RESPONSE (E21) after that timeout; a future-dated
command not started within `future_dated_timeout_seconds` of its execution time is
FUTURE_DATED_TIMEOUT (E30). A full hub queue raises QueueFull (gateway.priority).

Deterministic: each command draws from its own random.Random seeded by the constructor's
rng and its RequestID, so results do not depend on how trio interleaves commands.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
from collections.abc import Callable
from typing import Annotated, Literal, Protocol

import msgspec
import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.clock import Clock, SystemClock
from gateway.metrics import Metrics
from gateway.priority import HubQueues, QueueLimits, QueueTimeout
from gateway.registry import Device, Inventory
from gateway.transport import DeviceCommand, DeviceOutcome, DeviceReply
from mmc.identifiers import Eui64, eui64_to_bytes
from parse_correlate.gbcs import (
    MESSAGE_CODES,
    BlockKind,
    Cra,
    GbcsError,
    GbcsMessage,
    GroupingHeader,
    KeyAgreement,
    build_message,
    encode_general_signing,
    message_key,
    parse_message,
)

log = logging.getLogger("duisgw.simulator")

Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=86_400.0)]
Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]

HAN_VARIANTS = ("Single Band", "Dual Band")  # 2.4 GHz; 2.4 GHz + 868 MHz (sub-GHz)
# DUIS sr:CSPRegion (5.3+) minus "Unknown" and "SMETS1": North is Arqiva's long-range
# radio, Central and South Telefonica's cellular (with mesh in the South); the 4G
# variants are the newer hubs of each region.
WAN_VARIANTS = ("North", "Central", "South", "4G North", "4G Central", "4G South")
TEST_HUB_ID_PREFIX = "00-DB-12-34-56-78-C0"  # + one byte per HAN/WAN combination
SIMULATED_PROTECTION_KEY = bytes(16)  # ECS17b registers without DeviceKeys: not secret
_Z99 = 2.3263478740408408  # standard normal 99th percentile: p99 = median * exp(z99 sigma)


class LinkProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One leg of the route: latency (lognormal from median and p99, or fixed at the
    median) and the chances a command finds the far end unreachable or silent."""

    distribution: Literal["lognormal", "fixed"] = "lognormal"
    latency_median_seconds: Seconds
    latency_p99_seconds: Seconds
    unreachable_rate: Rate = 0.0
    no_response_rate: Rate = 0.0

    def __post_init__(self) -> None:
        if self.latency_p99_seconds < self.latency_median_seconds:
            raise ValueError("latency_p99_seconds is below latency_median_seconds")
        if self.unreachable_rate + self.no_response_rate > 1.0:
            raise ValueError("unreachable_rate + no_response_rate exceeds 1")


def _link(median: float, p99: float, unreachable: float, silent: float) -> LinkProfile:
    return LinkProfile(
        latency_median_seconds=median,
        latency_p99_seconds=p99,
        unreachable_rate=unreachable,
        no_response_rate=silent,
    )


def default_wan_profiles() -> dict[str, LinkProfile]:
    """Illustrative, not measured: long-range radio slower than cellular, 4G fastest."""
    g4 = _link(1.0, 5.0, 0.002, 0.002)
    return {
        "North": _link(4.0, 20.0, 0.005, 0.005),
        "Central": _link(2.5, 15.0, 0.005, 0.005),
        "South": _link(3.0, 18.0, 0.01, 0.005),
        "4G North": g4,
        "4G Central": g4,
        "4G South": g4,
    }


def default_han_profiles() -> dict[str, LinkProfile]:
    """Illustrative: the 868 MHz band's duty-cycle limits make Dual Band hubs slower."""
    return {
        "Single Band": _link(0.3, 1.5, 0.002, 0.002),
        "Dual Band": _link(0.5, 3.0, 0.002, 0.003),
    }


class SimulatorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    wan_profiles: dict[str, LinkProfile] = msgspec.field(default_factory=default_wan_profiles)
    han_profiles: dict[str, LinkProfile] = msgspec.field(default_factory=default_han_profiles)
    # For hubs whose inventory entry names no variant, or one the tables lack.
    fallback_wan_variant: str = "Central"
    fallback_han_variant: str = "Single Band"
    response_timeout_seconds: Seconds = 30.0  # a silent device holds its hub this long
    queue_timeout_seconds: Seconds = 600.0  # longest wait for the hub, then E21
    future_dated_timeout_seconds: Seconds = 3600.0  # start this late at most, then E30
    hub_capacity: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    queue_limits: QueueLimits = QueueLimits()
    device_alert_rate: Rate = 0.0  # chance a reply carries a device alert
    device_alert_code: Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)] = 0x8145  # clock adjusted
    firmware_version_hex: Annotated[str, msgspec.Meta(pattern=r"^([0-9A-Fa-f]{2}){1,64}$")] = (
        "53494D31"  # "SIM1"
    )

    def __post_init__(self) -> None:
        if self.fallback_wan_variant not in self.wan_profiles:
            raise ValueError(f"fallback_wan_variant {self.fallback_wan_variant!r} has no profile")
        if self.fallback_han_variant not in self.han_profiles:
            raise ValueError(f"fallback_han_variant {self.fallback_han_variant!r} has no profile")


class DeviceKeys(Protocol):
    """The simulated devices' private keys, where the operator has them (test PKI)."""

    def key_agreement(self, device_id: Eui64, user_id: Eui64) -> KeyAgreement | None:
        """The device's key agreement private key with the User's public key."""
        ...

    def signing_key(self, device_id: Eui64) -> ec.EllipticCurvePrivateKey | None: ...


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
    its hub in its own task (see gateway.priority)."""

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
            ):
                return await self._exchange(command, device is hub, hub)
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
        """The device's GBCS response; None when the device would drop the command."""
        try:
            message = parse_message(command.gbcs)
        except GbcsError as exc:
            log.warning(
                "request_id=%s: device drops a malformed command: %s", command.request_id, exc
            )
            return None
        sent = message.header
        if sent.cra != Cra.COMMAND or sent.recipient != command.device_id:
            log.warning(
                "request_id=%s: device %s drops a command (CRA %s) addressed to %s",
                command.request_id,
                command.device_id,
                sent.cra.name,
                sent.recipient,
            )
            return None
        code = sent.message_code
        date_time = None
        if code == MESSAGE_CODES["ECS17b"]:
            date_time = _dlms_datetime(self._clock.now())
        header = GroupingHeader(
            cra=Cra.RESPONSE,
            originator_counter=sent.originator_counter,
            originator=sent.recipient,
            recipient=sent.originator,
            message_code=code,
            date_time=date_time,
        )
        payload = self._payload(command, message, header, rng)
        return self._frame(header, payload, message.kind)

    def _payload(
        self, command: DeviceCommand, sent: GbcsMessage, header: GroupingHeader, rng: random.Random
    ) -> bytes:
        code = header.message_code
        invoke = _invoke_id(sent)
        if code == MESSAGE_CODES["ECS52"]:
            data = _octets(self._firmware_version)
            return _access_response(invoke, data, specification=_GET_SUCCESS)
        if code == MESSAGE_CODES["ECS17b"]:
            return _access_response(
                invoke, self._protected_registers(header, rng), specification=_ACTION_SUCCESS
            )
        text = f"SIMULATED RESPONSE {code:04X} {command.srv_variant} {command.device_type}"
        return text.encode("ascii")

    def _protected_registers(self, header: GroupingHeader, rng: random.Random) -> bytes:
        """ECS17b's get-protected-attributes result: the active and reactive import
        registers (Wh, varh; scaler 0), AES-GCM encrypted by the device for the User."""
        device, user = header.originator, header.recipient
        registers = _structure(
            _structure(
                bytes([_DOUBLE_LONG_UNSIGNED]) + rng.randrange(1 << 24).to_bytes(4, "big"),
                _structure(bytes([_INTEGER, 0]), bytes([_ENUM, _UNIT_WH])),
                bytes([_DOUBLE_LONG_UNSIGNED]) + rng.randrange(1 << 20).to_bytes(4, "big"),
                _structure(bytes([_INTEGER, 0]), bytes([_ENUM, _UNIT_VARH])),
            )
        )
        transaction_id = _PROTECTION_PREFIX + header.originator_counter.to_bytes(8, "big")
        keys = self._keys.key_agreement(device, user) if self._keys else None
        key = message_key(keys, device, transaction_id, user) if keys else SIMULATED_PROTECTION_KEY
        iv = eui64_to_bytes(device) + bytes(4)  # invocation counter 0, as in every vector
        encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        encryptor.authenticate_additional_data(bytes([_SECURITY_CONTROL_ENCRYPTED]))
        ciphertext = encryptor.update(registers) + encryptor.finalize()
        protected = bytes([_SECURITY_CONTROL_ENCRYPTED]) + bytes(4) + ciphertext
        protection = _structure(
            bytes([_ENUM, 2]),  # authenticated and encrypted
            _structure(
                _octets(transaction_id),
                _octets(eui64_to_bytes(device)),
                _octets(eui64_to_bytes(user)),
                _octets(b""),
                _structure(bytes([_ENUM, 2]), _structure(_octets(b"\x02"), _octets(b""))),
            ),
        )
        return _structure(_array(protection), _octets(protected + encryptor.tag[:12]))

    def _frame(self, header: GroupingHeader, payload: bytes, kind: BlockKind) -> bytes:
        device, user = header.originator, header.recipient
        if kind == BlockKind.GENERAL_CIPHERING:
            keys = self._keys.key_agreement(device, user) if self._keys else None
            return build_message(header, payload, mac_keys=keys)
        signing_key = self._keys.signing_key(device) if self._keys else None
        if signing_key is None:
            return build_message(header, payload, ciphering=False)  # signature field empty
        unsigned = encode_general_signing(header, payload, signature=None)
        r, s = utils.decode_dss_signature(signing_key.sign(unsigned[1:], ec.ECDSA(hashes.SHA256())))
        return unsigned + b"\x40" + r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def _alert(self, command: DeviceCommand) -> bytes:
        """A Generic Non Critical Alert from the device to the User it just answered."""
        device, user = command.device_id, command.request_id.originator
        counter = self._alert_counters.get(device, 0) + 1
        self._alert_counters[device] = counter
        header = GroupingHeader(
            cra=Cra.ALERT,
            originator_counter=counter,
            originator=device,
            recipient=user,
            message_code=MESSAGE_CODES["GNCA-DLMS"],
        )
        body = _structure(
            bytes([_LONG_UNSIGNED]) + self._config.device_alert_code.to_bytes(2, "big"),
            _octets(_dlms_datetime(self._clock.now())),
        )
        notification = bytes([_DATA_NOTIFICATION]) + _invoke(counter) + b"\x00" + body
        keys = self._keys.key_agreement(device, user) if self._keys else None
        return build_message(header, notification, mac_keys=keys)


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


# ---- DLMS A-XDR: just what the real response shapes need -------------------------------

_ACCESS_REQUEST, _ACCESS_RESPONSE, _DATA_NOTIFICATION = 0xD9, 0xDA, 0x0F
_ARRAY, _STRUCTURE, _DOUBLE_LONG_UNSIGNED, _OCTETS = 0x01, 0x02, 0x06, 0x09
_INTEGER, _LONG_UNSIGNED, _ENUM = 0x0F, 0x12, 0x16
_UNIT_WH, _UNIT_VARH = 30, 32  # DLMS unit enumeration
_INVOKE_FLAGS = 0x20000000  # as every RTDS message: the low 24 bits carry the counter
_GET_SUCCESS, _ACTION_SUCCESS = b"\x01\x00", b"\x03\x00"  # access-response-get/action, ok
_PROTECTION_PREFIX = b"\x04"  # first octet of the protection transaction-id, as commands
_SECURITY_CONTROL_ENCRYPTED = 0x31


def _octets(value: bytes) -> bytes:
    if len(value) > 0x7F:
        raise ValueError("octet string too long for this encoder")
    return bytes([_OCTETS, len(value)]) + value


def _structure(*items: bytes) -> bytes:
    return bytes([_STRUCTURE, len(items)]) + b"".join(items)


def _array(*items: bytes) -> bytes:
    return bytes([_ARRAY, len(items)]) + b"".join(items)


def _invoke(counter: int) -> bytes:
    return (_INVOKE_FLAGS | (counter & 0xFFFFFF)).to_bytes(4, "big")


def _invoke_id(sent: GbcsMessage) -> bytes:
    """The command's long-invoke-id-and-priority, which the response echoes."""
    payload = sent.payload
    if len(payload) >= 5 and payload[0] == _ACCESS_REQUEST:
        return payload[1:5]
    return _invoke(sent.header.originator_counter)


def _access_response(invoke: bytes, data: bytes, *, specification: bytes) -> bytes:
    # tag, invoke id, date-time absent, access-request-specification absent, one data
    # item, one access-response-specification.
    return bytes([_ACCESS_RESPONSE]) + invoke + b"\x00\x00\x01" + data + b"\x01" + specification


def _dlms_datetime(when: dt.datetime) -> bytes:
    """12-byte DLMS date-time in UTC, laid out as the RTDS devices write it: day of week
    and deviation not specified, clock status not specified."""
    t = when.astimezone(dt.UTC)
    return b"".join(
        (
            t.year.to_bytes(2, "big"),
            bytes([t.month, t.day, 0xFF, t.hour, t.minute, t.second, t.microsecond // 10_000]),
            b"\x80\x00\xff",
        )
    )
