"""The embedded device simulator: outcomes, GBCS responses (against the RTDS vectors),
alerts, Communications Hub variants, priority under overload. Time is trio's mock clock."""

from __future__ import annotations

import datetime as dt
import random
import statistics
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from prometheus_client import CollectorRegistry

from gateway.core.clock import Clock, FixedClock
from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply, Priority
from gateway.core.registry import Device, DeviceStatus, Inventory
from gateway.core.simulator_config import (
    HAN_VARIANTS,
    WAN_VARIANTS,
    LinkProfile,
    QueueLimits,
    SimulatorConfig,
    default_han_profiles,
    default_wan_profiles,
)
from gateway.devkit.simulated_responses import DeviceKeys
from gateway.devkit.simulator import Simulator, default_hub_variants, sample_latency
from gateway.edge.metrics import Metrics
from gateway.edge.transport import QueueFull
from mmc.identifiers import Eui64, RequestId, eui64_to_bytes
from parse_correlate.commands import CommandFacts, DeviceType, build_command
from parse_correlate.correlate import sign_pre_command
from parse_correlate.gbcs import BlockKind, Cra, parse_message, verify_mac
from parse_correlate.gbcs_codes import MESSAGE_CODES
from parse_correlate.gbcs_mac import KeyAgreement, message_key

USER = "90-B3-D5-1F-30-01-00-00"  # the IDs of the RTDS vectors
OTHER_USER = "90-B3-D5-1F-30-03-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
HUB = "00-DB-12-34-56-78-90-A2"
START = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
RTDS = "gbcs/rtds/RTDS-4.5.0"


class TrioWallClock:
    """Wall-clock time that moves with trio's clock from START, so execution times line
    up. Made inside trio: START is the trio time of its making."""

    def __init__(self) -> None:
        self._origin = trio.current_time()

    def now(self) -> dt.datetime:
        return START + dt.timedelta(seconds=trio.current_time() - self._origin)

    def monotonic(self) -> float:
        return trio.current_time()


def fixed(seconds: float, *, unreachable: float = 0.0, silent: float = 0.0) -> LinkProfile:
    return LinkProfile(
        distribution="fixed",
        latency_median_seconds=seconds,
        latency_p99_seconds=seconds,
        unreachable_rate=unreachable,
        no_response_rate=silent,
    )


def config(
    wan: LinkProfile | None = None, han: LinkProfile | None = None, **options: object
) -> SimulatorConfig:
    wan = wan if wan is not None else fixed(2.0)
    han = han if han is not None else fixed(0.5)
    return SimulatorConfig(
        wan_profiles=dict.fromkeys(WAN_VARIANTS, wan),
        han_profiles=dict.fromkeys(HAN_VARIANTS, han),
        **options,  # type: ignore[arg-type]
    )


def estate(
    *, device_status: DeviceStatus = "commissioned", hub_status: DeviceStatus = "commissioned"
) -> Inventory:
    return Inventory(
        [
            Device(
                device_id=HUB,
                device_type="CHF",
                status=hub_status,
                han_variant="Dual Band",
                wan_variant="4G Central",
            ),
            Device(device_id=ESME, device_type="ESME", status=device_status, chf_id=HUB),
        ]
    )


def simulator(
    cfg: SimulatorConfig | None = None,
    inventory: Inventory | None = None,
    clock: Clock | None = None,
    *,
    keys: DeviceKeys | None = None,
    metrics: Metrics | None = None,
) -> Simulator:
    inv = inventory if inventory is not None else estate()
    return Simulator(
        lambda: inv,
        cfg if cfg is not None else config(),
        clock if clock is not None else TrioWallClock(),
        random.Random(7),
        keys=keys,
        metrics=metrics,
    )


def command(
    srv: str = "4.1.1",
    *,
    device: Eui64 = ESME,
    device_type: DeviceType = DeviceType.ESME,
    counter: int = 1000,
    user: Eui64 = USER,
    priority: Priority = Priority.ON_DEMAND,
    not_before: dt.datetime | None = None,
    gbcs: bytes | None = None,
) -> DeviceCommand:
    request_id = RequestId(user, device, counter)
    if gbcs is None:
        facts = CommandFacts(device_type=device_type)
        gbcs = build_command(srv, request_id, facts, originator_counter=counter, now=START).gbcs
    return DeviceCommand(
        request_id=request_id,
        srv_variant=srv,
        device_id=device,
        device_type=str(device_type),
        hub_id=HUB,
        gbcs=gbcs,
        priority=priority,
        not_before=not_before,
    )


async def timed_send(sim: Simulator, cmd: DeviceCommand) -> tuple[DeviceReply, float]:
    started = trio.current_time()
    reply = await sim.send(cmd)
    return reply, trio.current_time() - started


# --- outcomes -----------------------------------------------------------------------


async def test_responded_after_wan_plus_han_latency(autojump_clock: trio.testing.MockClock) -> None:
    reply, took = await timed_send(simulator(), command("11.2", counter=77))
    assert reply.outcome is DeviceOutcome.RESPONDED and reply.alerts == ()
    assert took == 2.5
    assert reply.gbcs is not None
    message = parse_message(reply.gbcs)
    header = message.header
    assert header.cra is Cra.RESPONSE and header.message_code == MESSAGE_CODES["ECS52"]
    assert (header.originator, header.recipient, header.originator_counter) == (ESME, USER, 77)
    assert message.kind is BlockKind.GENERAL_CIPHERING and message.mac == bytes(12)


async def test_a_command_to_the_hub_itself_skips_the_han(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reply, took = await timed_send(
        simulator(), command("6.2.4", device=HUB, device_type=DeviceType.CHF)
    )
    assert reply.outcome is DeviceOutcome.RESPONDED and took == 2.0
    assert reply.gbcs is not None
    message = parse_message(reply.gbcs)
    assert message.header.originator == HUB
    assert message.payload.startswith(b"SIMULATED RESPONSE FFFF 6.2.4 CHF")


@pytest.mark.parametrize(
    ("inventory", "cmd"),
    [
        pytest.param(estate(), command(device="00-DB-12-34-56-78-90-FF"), id="unknown device"),
        pytest.param(
            estate(device_status="installed_not_commissioned"), command(), id="not commissioned"
        ),
        pytest.param(estate(hub_status="decommissioned"), command(), id="hub decommissioned"),
        pytest.param(
            Inventory([Device(device_id=ESME, device_type="ESME", status="commissioned")]),
            msgspec.structs.replace(command(), hub_id=None),
            id="no hub to route through",
        ),
    ],
)
async def test_unreachable_at_once_when_the_inventory_has_no_route(
    autojump_clock: trio.testing.MockClock, inventory: Inventory, cmd: DeviceCommand
) -> None:
    reply, took = await timed_send(simulator(inventory=inventory), cmd)
    assert reply == DeviceReply(DeviceOutcome.UNREACHABLE) and took == 0.0


@pytest.mark.parametrize(
    ("wan", "han", "outcome", "after"),
    [
        pytest.param(fixed(2.0, unreachable=1.0), fixed(0.5), "unreachable", 2.0, id="wan E20"),
        pytest.param(fixed(2.0), fixed(0.5, unreachable=1.0), "unreachable", 2.5, id="han E20"),
        pytest.param(fixed(2.0, silent=1.0), fixed(0.5), "no_response", 30.0, id="wan E21"),
        pytest.param(fixed(2.0), fixed(0.5, silent=1.0), "no_response", 30.0, id="han E21"),
        pytest.param(fixed(29.0), fixed(1.5), "no_response", 30.0, id="slower than timeout"),
    ],
)
async def test_failure_outcomes(
    autojump_clock: trio.testing.MockClock,
    wan: LinkProfile,
    han: LinkProfile,
    outcome: str,
    after: float,
) -> None:
    reply, took = await timed_send(simulator(config(wan, han)), command())
    assert reply == DeviceReply(DeviceOutcome(outcome), queued_seconds=0.0)  # first in its queue
    assert took == after


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda gbcs: gbcs[:-3], id="malformed"),
        pytest.param(lambda gbcs: command(device=HUB).gbcs, id="addressed to another device"),
    ],
)
async def test_a_command_the_device_cannot_take_gets_no_response(
    autojump_clock: trio.testing.MockClock, mangle: object
) -> None:
    cmd = command()
    cmd = msgspec.structs.replace(cmd, gbcs=mangle(cmd.gbcs))  # type: ignore[operator]
    reply, took = await timed_send(simulator(), cmd)
    assert reply == DeviceReply(DeviceOutcome.NO_RESPONSE, queued_seconds=0.0) and took == 30.0


async def test_future_dated_command_answers_after_its_execution_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = TrioWallClock()
    sim = simulator(clock=clock)
    at = clock.now() + dt.timedelta(hours=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timed_send, sim, command(priority=Priority.FUTURE_DATED, not_before=at))
        await trio.sleep(1)
        # The hub is not held for it meanwhile.
        reply, took = await timed_send(sim, command("11.2", counter=2))
        assert reply.outcome is DeviceOutcome.RESPONDED and took == 2.5
    in_ten_minutes = clock.now() + dt.timedelta(seconds=600)
    cmd = command(counter=3, priority=Priority.FUTURE_DATED, not_before=in_ten_minutes)
    reply, took = await timed_send(sim, cmd)
    assert reply.outcome is DeviceOutcome.RESPONDED and took == 600 + 2.5


async def test_future_dated_command_not_started_in_time_is_e30(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = TrioWallClock()
    cfg = config(fixed(100.0), response_timeout_seconds=200.0, future_dated_timeout_seconds=10.0)
    sim = simulator(cfg, clock=clock)
    at = clock.now() + dt.timedelta(seconds=20)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sim.send, command(counter=1))  # holds the hub for 100.5 s
        await trio.sleep(1)
        reply, took = await timed_send(
            sim, command(counter=2, priority=Priority.PREPAYMENT_AND_CRITICAL, not_before=at)
        )
    assert reply == DeviceReply(DeviceOutcome.FUTURE_DATED_TIMEOUT) and took == 29.0


async def test_command_waiting_longer_than_the_queue_timeout_is_e21(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = simulator(config(fixed(100.0), response_timeout_seconds=200.0, queue_timeout_seconds=5.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sim.send, command(counter=1))
        await trio.sleep(1)
        reply, took = await timed_send(sim, command(counter=2))
    assert reply == DeviceReply(DeviceOutcome.NO_RESPONSE) and took == 5.0
    assert sim.queues.depth() == 0


async def test_a_full_hub_queue_raises_for_the_caller_to_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = QueueLimits(max_queued_per_class=1, max_queued_per_user_per_class=1)
    sim = simulator(config(queue_limits=limits))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sim.send, command(counter=1))
        nursery.start_soon(sim.send, command(counter=2))
        await trio.sleep(1)
        with pytest.raises(QueueFull):
            await sim.send(command(counter=3))


# --- responses and alerts against the RTDS vectors ----------------------------------


class PkiKeys:
    """DeviceKeys from the RTDS keystore. Only the Users' private keys are published, so
    the pair is (User private, device public): ECDH gives the device's key all the same."""

    def __init__(self, keystore: Path, signing: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._keystore = keystore
        self._signing = signing

    def key_agreement(self, device_id: Eui64, user_id: Eui64) -> KeyAgreement:
        user = serialization.load_pem_private_key(
            (self._keystore / f"{_compact(user_id)}-ka.key").read_bytes(), None
        )
        device = x509.load_pem_x509_certificate(
            (self._keystore / f"{_compact(device_id)}-ka.pem").read_bytes()
        ).public_key()
        assert isinstance(user, ec.EllipticCurvePrivateKey)
        assert isinstance(device, ec.EllipticCurvePublicKey)
        return KeyAgreement(user, device)

    def signing_key(self, device_id: Eui64) -> ec.EllipticCurvePrivateKey | None:
        return self._signing


def _compact(eui: Eui64) -> str:
    return eui.replace("-", "").lower()


def _vector(shared_dir: Path, name: str) -> bytes:
    folder = name.split("_")[1] + "_" + name.split("_")[0]
    return bytes.fromhex((shared_dir / RTDS / folder / name).read_text().strip())


async def test_ecs52_response_equals_the_rtds_vector(
    autojump_clock: trio.testing.MockClock, shared_dir: Path
) -> None:
    vector = _vector(shared_dir, "ECS52_11.2_SUCCESS_RESPONSE_GBCS.HEX")
    firmware = parse_message(vector).payload[10:14].hex()  # the vector's firmware version
    keys = PkiKeys(shared_dir / "gbcs/rtds/keystore")
    sim = simulator(config(firmware_version_hex=firmware), clock=FixedClock(START), keys=keys)
    reply = await sim.send(command("11.2", counter=1000))
    assert reply.gbcs == vector  # MAC included


async def test_ecs17b_response_has_the_rtds_shape_and_decrypts_for_the_user(
    autojump_clock: trio.testing.MockClock, shared_dir: Path
) -> None:
    vector = _vector(shared_dir, "ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX")
    keys = PkiKeys(shared_dir / "gbcs/rtds/keystore")
    sim = simulator(clock=FixedClock(START), keys=keys)
    reply = await sim.send(command("4.1.1", counter=1000))
    assert reply.gbcs is not None
    mine, theirs = parse_message(reply.gbcs), parse_message(vector)
    assert mine.header == theirs.header  # device date-time included
    assert verify_mac(mine, keys.key_agreement(ESME, USER))
    # Same bytes but for the encrypted registers: 5-byte security header, ciphertext, tag.
    cut = theirs.payload.index(bytes([0x09, 0x2B, 0x31]))
    assert len(mine.payload) == len(theirs.payload)
    assert mine.payload[: cut + 7] == theirs.payload[: cut + 7]
    assert mine.payload[-3:] == theirs.payload[-3:]
    plain_mine = _decrypt_registers(mine.payload[cut + 2 : -3], keys)
    plain_theirs = _decrypt_registers(theirs.payload[cut + 2 : -3], keys)
    values = (slice(5, 9), slice(16, 20))  # the two double-long-unsigned register values

    def shape(plain: bytes) -> bytes:
        return plain[: values[0].start] + plain[values[0].stop : values[1].start] + plain[20:]

    assert shape(plain_mine) == shape(plain_theirs)


def _decrypt_registers(protected: bytes, keys: PkiKeys) -> bytes:
    key = message_key(keys.key_agreement(ESME, USER), ESME, b"\x04" + (1000).to_bytes(8), USER)
    iv = eui64_to_bytes(ESME) + protected[1:5]
    decryptor = Cipher(
        algorithms.AES(key), modes.GCM(iv, protected[-12:], min_tag_length=12)
    ).decryptor()
    decryptor.authenticate_additional_data(protected[:1])
    return decryptor.update(protected[5:-12]) + decryptor.finalize()


async def test_signed_pre_command_gets_a_signed_general_signing_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    user_key, device_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    facts = CommandFacts(device_type=DeviceType.ESME)
    pre = build_command(
        "1.6", RequestId(USER, ESME, 9), facts, originator_counter=9, now=START, critical=True
    ).gbcs
    signed = sign_pre_command(pre, user_key)
    for keys, signature_bytes in ((None, 0), (_GeneratedKeys(device_key), 64)):
        sim = simulator(keys=keys)
        reply = await sim.send(command("1.6", counter=9, gbcs=signed))
        assert reply.gbcs is not None
        message = parse_message(reply.gbcs)
        assert message.kind is BlockKind.GENERAL_SIGNING and message.header.cra is Cra.RESPONSE
        assert message.signature is not None and len(message.signature) == signature_bytes
    signature = message.signature or b""
    r, s = int.from_bytes(signature[:32]), int.from_bytes(signature[32:])
    device_key.public_key().verify(
        utils.encode_dss_signature(r, s), message.signed_data, ec.ECDSA(hashes.SHA256())
    )


class _GeneratedKeys:
    def __init__(self, signing: ec.EllipticCurvePrivateKey) -> None:
        self._signing = signing

    def key_agreement(self, device_id: Eui64, user_id: Eui64) -> KeyAgreement | None:
        return None

    def signing_key(self, device_id: Eui64) -> ec.EllipticCurvePrivateKey:
        return self._signing


async def test_device_alerts_ride_along_with_replies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alerting = config(device_alert_rate=1.0, device_alert_code=0x8F1F)
    sim = simulator(alerting, clock=FixedClock(START))
    counters = []
    for counter in (1, 2):
        reply = await sim.send(command(counter=counter))
        assert reply.outcome is DeviceOutcome.RESPONDED and len(reply.alerts) == 1
        alert = parse_message(reply.alerts[0])
        header = alert.header
        assert header.cra is Cra.ALERT and header.message_code == MESSAGE_CODES["GNCA-DLMS"]
        assert (header.originator, header.recipient) == (ESME, USER)
        assert alert.payload[0] == 0x0F and bytes.fromhex("12 8F1F") in alert.payload
        counters.append(header.originator_counter)
    assert counters[1] == counters[0] + 1  # the device numbers its alerts in order
    # A simulator started later (a restarted gateway) numbers above the earlier run.
    later = simulator(alerting, clock=FixedClock(START + dt.timedelta(seconds=1)))
    again = parse_message((await later.send(command(counter=3))).alerts[0])
    assert again.header.originator_counter > counters[1]
    quiet = await simulator(config(device_alert_rate=0.0)).send(command())
    assert quiet.alerts == ()


# --- Communications Hub variants, determinism, config -------------------------------


def test_one_test_hub_per_han_wan_variant() -> None:
    hubs = default_hub_variants()
    combos = {(hub.han_variant, hub.wan_variant) for hub in hubs}
    assert len(hubs) == len(combos) == len(HAN_VARIANTS) * len(WAN_VARIANTS) == 12
    assert {"4G North", "4G Central", "4G South", "North", "Central", "South"} == set(WAN_VARIANTS)
    assert len(Inventory(hubs)) == 12  # distinct IDs, valid inventory entries
    assert all(hub.device_type == "CHF" and hub.status == "commissioned" for hub in hubs)
    wan, han = default_wan_profiles(), default_han_profiles()
    assert set(wan) == set(WAN_VARIANTS) and set(han) == set(HAN_VARIANTS)
    median = {name: profile.latency_median_seconds for name, profile in wan.items()}
    assert median["4G North"] < median["Central"] < median["North"]
    assert han["Dual Band"].latency_p99_seconds > han["Single Band"].latency_p99_seconds


def _variant_estate() -> Inventory:
    hubs = default_hub_variants()
    meters = [
        Device(
            device_id=hub.device_id[:-2] + f"{0x80 + i:02X}",
            device_type="ESME",
            status="commissioned",
            chf_id=hub.device_id,
        )
        for i, hub in enumerate(hubs)
    ]
    return Inventory([*hubs, *meters])


async def _run_estate(seed: int) -> dict[str, tuple[DeviceReply, float]]:
    inventory = _variant_estate()
    sim = Simulator(lambda: inventory, SimulatorConfig(), TrioWallClock(), random.Random(seed))
    results: dict[str, tuple[DeviceReply, float]] = {}

    async def one(device: Device) -> None:
        cmd = command("4.1.1", device=device.device_id, counter=5)
        reply, took = await timed_send(sim, cmd)
        results[device.device_id] = (reply, round(took, 6))  # trio time is a float sum

    async with trio.open_nursery() as nursery:
        for device in inventory:
            if device.device_type == "ESME":
                nursery.start_soon(one, device)
    return results


async def test_estate_of_every_variant_is_deterministic_under_a_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, again = await _run_estate(seed=11), await _run_estate(seed=11)
    assert len(first) == 12 and first == again
    assert len({took for _, took in first.values()}) == 12  # each hub drew its own latency
    other = await _run_estate(seed=12)
    assert other != first


def test_lognormal_latency_meets_its_median_and_p99() -> None:
    rng = random.Random(3)
    for profile in [*default_wan_profiles().values(), *default_han_profiles().values()]:
        samples = sorted(sample_latency(profile, rng) for _ in range(20_000))
        assert statistics.median(samples) == pytest.approx(profile.latency_median_seconds, rel=0.05)
        assert samples[int(0.99 * len(samples))] == pytest.approx(
            profile.latency_p99_seconds, rel=0.15
        )
    assert sample_latency(fixed(1.25), rng) == 1.25


CONFIG_TOML = b"""
response_timeout_seconds = 20.0
hub_capacity = 1
device_alert_rate = 0.01
queue_limits = { max_queued_per_class = 500, max_queued_per_user_per_class = 400 }
[wan_profiles."4G Central"]
latency_median_seconds = 0.8
latency_p99_seconds = 4.0
unreachable_rate = 0.001
[wan_profiles.Central]
distribution = "fixed"
latency_median_seconds = 2.0
latency_p99_seconds = 2.0
[han_profiles."Single Band"]
latency_median_seconds = 0.3
latency_p99_seconds = 1.0
"""


def test_config_decodes_from_toml_and_refuses_nonsense() -> None:
    cfg = msgspec.toml.decode(CONFIG_TOML, type=SimulatorConfig)
    assert cfg.wan_profiles["4G Central"].unreachable_rate == 0.001
    assert cfg.queue_limits.max_queued_per_class == 500
    bad = [
        b"[wan_profiles.North]\nlatency_median_seconds = 5.0\nlatency_p99_seconds = 1.0\n",
        b"[han_profiles.X]\nlatency_median_seconds = 1\nlatency_p99_seconds = 1\n"
        b"unreachable_rate = 0.6\nno_response_rate = 0.6\n",
        b"latency_seconds = 1\n",
        b'fallback_wan_variant = "Mars"\n',
        b"hub_capacity = 0\n",
    ]
    for text in bad:
        with pytest.raises(msgspec.ValidationError):
            msgspec.toml.decode(text, type=SimulatorConfig)


# --- priority under overload, end to end -------------------------------------------


async def test_overload_top_ups_answer_within_two_services_while_bulk_reads_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The hub takes 2 s a command; a bulk read arrives every second, a top-up every 10 s.
    A top-up waits at most for the one command in service: answer <= 2 services."""
    metrics = Metrics(CollectorRegistry())
    sim = simulator(config(fixed(2.0), fixed(0.0)), metrics=metrics)
    answers: dict[str, list[float]] = {"top-up": [], "bulk": []}

    async def send(kind: str, cmd: DeviceCommand) -> None:
        reply, took = await timed_send(sim, cmd)
        assert reply.outcome is DeviceOutcome.RESPONDED
        answers[kind].append(took)

    async with trio.open_nursery() as nursery:
        for second in range(120):
            bulk = command("4.1.1", counter=second, priority=Priority.DCC_SCHEDULED)
            nursery.start_soon(send, "bulk", bulk)
            if second % 10 == 5:
                top_up = command(
                    "2.2",
                    counter=second,
                    user=OTHER_USER,
                    priority=Priority.PREPAYMENT_AND_CRITICAL,
                )
                nursery.start_soon(send, "top-up", top_up)
            await trio.sleep(1.0)
        assert sim.queues.depth(Priority.DCC_SCHEDULED) > 50
    assert len(answers["top-up"]) == 12 and max(answers["top-up"]) <= 4.0
    assert max(answers["bulk"]) > 100.0
    waited = metrics.registry.get_sample_value(
        "duisgw_command_queue_wait_seconds_count", {"priority": "prepayment_and_critical"}
    )
    assert waited == 12
