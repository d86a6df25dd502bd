"""Device alerts to their Users: the core decision over the RTDS alert vectors and
hostile bytes, and the signed DeviceAlertMessage under every served version.

- every RTDS 4.5.0 alert goes to its recipient if that is a registered User, with the
  alert code its file name gives (91 of 93 name it) and `duisgw pc parse` decodes, under
  `alert:<device>:<counter>`; the one addressed to an unregistered ID is refused
  `unknown_recipient`;
- truncated, garbage and mutated alerts give a refusal, never an exception;
- a signed alert whose signature the device's key rejects is refused;
- the DUIS document validates against the XSD of 5.0, 5.1, 5.3a and 5.4 and its
  signature verifies (and stops verifying once a byte of it changes).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.core.answers import Answers
from gateway.core.clock import FixedClock
from gateway.core.device import DeviceOutcome, DeviceReply
from gateway.core.device_alerts import (
    AlertRefusal,
    RefusedAlert,
    RoutedAlert,
    alert_message_id,
    route_alert,
)
from gateway.core.ingest import SchemaSet
from gateway.core.registry import User, UserRegistry
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signature_profile import SignatureError
from gateway.core.signing import ResponseSigner
from gateway.core.versions import VersionRegistry
from gateway.devkit.estate import DEFAULT_USERS_TOML
from gateway.devkit.simulated_responses import simulated_alert
from gateway.edge.device_alerts import DeviceAlerts
from gateway.edge.lifecycle import Lifecycle
from gateway.edge.metrics import Metrics
from gateway.stores.operator_files import load_schemas, load_users
from gateway.stores.outbox_sqlite import OutboxStoreError
from mmc.catalogue import load_catalogue
from parse_correlate.gbcs import Cra, GbcsMessage, GroupingHeader, build_message, parse_message
from parse_correlate.mmc_output import render_mmc_output
from parse_correlate.parse_command import keystore_credentials

VERSIONS = ("5.0", "5.1", "5.3", "5.4")
RTDS = "gbcs/rtds/RTDS-4.5.0"
NOW = dt.datetime(2026, 12, 2, 15, 0, 0, 123000, tzinfo=dt.UTC)
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
# An alert code in an RTDS file name: ..._8F66_FUTURE_DATED_..._ALERT_...
NAMED_CODE = re.compile(r"_([0-9A-F]{4})_")


class Vector(NamedTuple):
    path: Path
    raw: bytes
    message: GbcsMessage


@pytest.fixture(scope="module")
def alerts(shared_dir: Path) -> list[Vector]:
    found = []
    for path in sorted((shared_dir / RTDS).glob("*/*.HEX")):
        if "_ALERT_" not in path.name and "_RESPONSE_" not in path.name:
            continue
        raw = bytes.fromhex(path.read_text())
        message = parse_message(raw)
        if message.header.cra is Cra.ALERT:
            found.append(Vector(path, raw, message))
    assert len(found) == 93
    return found


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> UserRegistry:
    path = tmp_path_factory.mktemp("users") / "users.toml"
    path.write_text(DEFAULT_USERS_TOML)
    return load_users(path)


def decoded_code(vector: Vector) -> int:
    """The alert code `duisgw pc parse` writes for the vector (GBCSHexAlertCode)."""
    output = render_mmc_output(vector.message, vector.raw, "5.4")
    text = etree.fromstring(output.xml).findtext(".//{*}GBCSHexAlertCode")
    assert text, vector.path.name
    return int(text, 16)


def test_every_rtds_alert_goes_to_its_user_or_is_refused_with_a_reason(
    alerts: list[Vector], users: UserRegistry
) -> None:
    routed = refused = named = 0
    forms = set()
    for vector in alerts:
        header = vector.message.header
        decision = route_alert(vector.raw, users)
        if users.get(header.recipient) is None:
            assert isinstance(decision, RefusedAlert), vector.path.name
            assert decision.reason is AlertRefusal.UNKNOWN_RECIPIENT
            assert header.recipient in decision.detail
            refused += 1
            continue
        assert isinstance(decision, RoutedAlert), (vector.path.name, decision)
        routed += 1
        assert decision.user_id == header.recipient
        assert decision.device_id == header.originator
        assert decision.counter == header.originator_counter
        assert decision.gbcs == vector.raw
        assert decision.message_id == f"alert:{header.originator}:{header.originator_counter}"
        assert decision.response_id == (
            f"{header.originator}:{header.recipient}:{header.originator_counter}"
        )
        # The code Parse and Correlate decodes for the same file ...
        assert decision.alert_code == decoded_code(vector), vector.path.name
        # ... and, independently, the one the DCC's file name gives.
        match = NAMED_CODE.search(vector.path.name)
        if match is not None:
            named += 1
            assert decision.alert_code_hex == match.group(1), vector.path.name
        forms.add(vector.message.payload[:1].hex())
    assert (routed, refused) == (92, 1)
    assert named == 90  # the refused one names its code too: 91 of 93 in all
    assert forms == {"0f", "01", "30"}  # DLMS, GBZ and ASN.1 alerts among them


def test_a_repeated_alert_has_the_same_message_id(
    alerts: list[Vector], users: UserRegistry
) -> None:
    first, again = route_alert(alerts[0].raw, users), route_alert(alerts[0].raw, users)
    assert isinstance(first, RoutedAlert) and isinstance(again, RoutedAlert)
    assert first.message_id == again.message_id
    assert alert_message_id(first.device_id, first.counter) == first.message_id


def test_truncated_alerts_are_refused_not_raised(alerts: list[Vector], users: UserRegistry) -> None:
    for vector in alerts:
        raw = vector.raw
        for end in {0, 1, 5, 20, len(raw) // 2, len(raw) - 1}:
            decision = route_alert(raw[:end], users)
            assert isinstance(decision, RefusedAlert), (vector.path.name, end)
            assert decision.reason is AlertRefusal.MALFORMED
            assert decision.detail


def framed(payload: bytes, *, cra: Cra = Cra.ALERT, recipient: str = SUPPLIER) -> bytes:
    header = GroupingHeader(
        cra=cra, originator_counter=7, originator=ESME, recipient=recipient, message_code=0x0001
    )
    return build_message(header, payload, ciphering=False, signature=None)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x0f",  # a DLMS data-notification cut short
        b"\x0f\x00\x00\x00\x01\x00\x02\x02\x12\x81",
        b"\x01\x09\x01\x81",  # a GBZ alert cut short
        b"\x30\x00",  # an ASN.1 alert without code or time
        b"\x30\x03\x02\x01\xff",  # code -1
        b"\x30\x05\x02\x03\x01\x00\x00",  # code 0x10000: not two bytes
        b"\xff" * 12,
        b"SIMULATED ALERT",
    ],
)
def test_well_framed_alerts_without_a_readable_code_are_refused(
    payload: bytes, users: UserRegistry
) -> None:
    decision = route_alert(framed(payload), users)
    assert isinstance(decision, RefusedAlert)
    assert decision.reason is AlertRefusal.NO_ALERT_CODE
    assert decision.device_id == ESME and decision.recipient == SUPPLIER


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300))
def test_garbage_never_raises(data: bytes, users: UserRegistry) -> None:
    for candidate in (data, framed(data)):
        decision = route_alert(candidate, users)
        assert isinstance(decision, RoutedAlert | RefusedAlert)
        if isinstance(decision, RoutedAlert):
            assert 0 <= decision.alert_code <= 0xFFFF


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.integers(min_value=0),
    byte=st.integers(min_value=0, max_value=255),
    which=st.integers(min_value=0),
)
def test_mutated_rtds_alerts_never_raise(
    alerts: list[Vector], users: UserRegistry, index: int, byte: int, which: int
) -> None:
    raw = bytearray(alerts[which % len(alerts)].raw)
    raw[index % len(raw)] = byte
    decision = route_alert(bytes(raw), users)
    assert isinstance(decision, RoutedAlert | RefusedAlert)


def test_other_refusals(alerts: list[Vector], users: UserRegistry, shared_dir: Path) -> None:
    response = next((shared_dir / RTDS).glob("4.1.1_ECS17b/*_RESPONSE_GBCS.HEX"))
    decision = route_alert(bytes.fromhex(response.read_text()), users)
    assert isinstance(decision, RefusedAlert) and decision.reason is AlertRefusal.NOT_AN_ALERT

    vector = next(v for v in alerts if users.get(v.message.header.recipient) is not None)
    origin = vector.message.header.originator
    assert isinstance(route_alert(vector.raw, users, device_id=origin.lower()), RoutedAlert)
    decision = route_alert(vector.raw, users, device_id="00-DB-12-34-56-78-90-FF")
    assert isinstance(decision, RefusedAlert) and decision.reason is AlertRefusal.WRONG_DEVICE

    recipient = vector.message.header.recipient
    withdrawn = UserRegistry(
        [
            User(user_id=u.user_id, party=u.party, roles=u.roles, status="withdrawn")
            if u.user_id == recipient
            else u
            for u in users
        ]
    )
    decision = route_alert(vector.raw, withdrawn)
    assert isinstance(decision, RefusedAlert)
    assert decision.reason is AlertRefusal.RECIPIENT_WITHDRAWN


def test_a_signed_alert_is_checked_with_the_device_key_when_held(
    alerts: list[Vector], users: UserRegistry, shared_dir: Path
) -> None:
    keystore = shared_dir / "gbcs/rtds/keystore"
    checked = 0
    for vector in alerts:
        header = vector.message.header
        if not vector.message.signature or users.get(header.recipient) is None:
            continue
        key = keystore_credentials(keystore, vector.message).device_signing_key
        if key is None:
            continue
        keys = {header.originator: key}
        assert isinstance(route_alert(vector.raw, users, device_signing_keys=keys), RoutedAlert)
        corrupted = bytearray(vector.raw)
        corrupted[-1] ^= 0x01  # the signature is the message's last field
        decision = route_alert(bytes(corrupted), users, device_signing_keys=keys)
        assert isinstance(decision, RefusedAlert), vector.path.name
        assert decision.reason is AlertRefusal.SIGNATURE_INVALID
        # Without the key it cannot be checked, and goes on (as a signed response does).
        assert isinstance(route_alert(bytes(corrupted), users), RoutedAlert)
        checked += 1
    assert checked >= 50


# ---- the DUIS document ------------------------------------------------------------------


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    return load_schemas(
        shared_dir / "duis" / "xsd", {v: load_catalogue(v).xsd_file for v in VERSIONS}
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_device_alert_message_is_valid_and_signed_in_every_version(
    version: str, schemas: SchemaSet, alerts: list[Vector], users: UserRegistry
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    answers = Answers(FixedClock(NOW), ResponseSigner(key, "CN=Z1,OU=07", 5))
    decision = route_alert(alerts[0].raw, users)
    assert isinstance(decision, RoutedAlert)
    body = answers.device_alert(
        load_catalogue(version), decision.alert_code_hex, decision.gbcs, decision.response_id
    )
    root = etree.fromstring(body)
    assert root.get("schemaVersion") == version
    assert schemas.error(version, root) is None
    verify_signature(root, parse_signature(root), key.public_key())
    assert root.find("{*}Header/{*}RequestID") is None
    assert root.findtext("{*}Header/{*}ResponseID") == decision.response_id
    assert root.findtext("{*}Header/{*}ResponseCode") == "I0"
    message = root.find("{*}Body/{*}DeviceAlertMessage")
    assert message is not None
    assert message.findtext("{*}AlertCode") == decision.alert_code_hex
    assert base64.b64decode(message.findtext("{*}GBCSPayload") or "") == alerts[0].raw

    # The signature covers it: another alert code in the same document does not verify.
    tampered = body.replace(
        f"<sr:AlertCode>{decision.alert_code_hex}</sr:AlertCode>".encode(),
        b"<sr:AlertCode>0000</sr:AlertCode>",
    )
    assert tampered != body
    tampered_root = etree.fromstring(tampered)
    with pytest.raises(SignatureError):
        verify_signature(tampered_root, parse_signature(tampered_root), key.public_key())


# ---- the edge: version, retries, the orphan reply's alerts ------------------------------


def simulated(counter: int, recipient: str = SUPPLIER) -> bytes:
    return simulated_alert(
        ESME, recipient, counter, alert_code=0x8F35, clock=FixedClock(NOW), keys=None
    )


async def test_edge_version_choice_and_store_retries(users: UserRegistry) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    answers = Answers(FixedClock(NOW), ResponseSigner(key, "CN=Z1,OU=07", 5))
    stored: dict[str, tuple[str, bytes]] = {}
    failures = [OutboxStoreError("disk gone")]

    async def store(user_id: str, message_id: str, body: bytes) -> bool:
        if failures:
            raise failures.pop()
        if message_id in stored:
            return False
        stored[message_id] = (user_id, body)
        return True

    metrics = Metrics()
    snapshots = SimpleNamespace(current=SimpleNamespace(users=users))
    alerts = DeviceAlerts(
        snapshots,  # type: ignore[arg-type]
        VersionRegistry.build(("5.1", "5.4"), {}),
        answers,
        store,
        metrics=metrics,
        retry_seconds=0,
    )

    def version_of(message_id: str) -> str | None:
        return etree.fromstring(stored[message_id][1]).get("schemaVersion")

    # No request (an orphan reply, a frame): the newest version served; the failed
    # store is waited out, then the alert is stored once.
    await alerts.from_reply((simulated(1),), None)
    assert failures == [] and version_of(f"alert:{ESME}:1") == "5.4"
    # The reply to the User's own request: that request's version.
    request = SimpleNamespace(
        header=SimpleNamespace(request_id=SimpleNamespace(originator=SUPPLIER)),
        route=SimpleNamespace(catalogue=load_catalogue("5.1")),
    )
    await alerts.from_reply((simulated(2), simulated(1)), request)  # type: ignore[arg-type]
    assert version_of(f"alert:{ESME}:2") == "5.1"
    assert version_of(f"alert:{ESME}:1") == "5.4"  # the first one stands
    sample = metrics.registry.get_sample_value
    assert sample("duisgw_device_alerts_total", {"outcome": "stored"}) == 2
    assert sample("duisgw_device_alerts_total", {"outcome": "duplicate"}) == 1

    # A reply no job here waits for still passes its alerts on.
    lifecycle = Lifecycle(None, None, None, None, None, None)  # type: ignore[arg-type]
    handed: list[tuple[tuple[bytes, ...], object]] = []

    async def hook(batch: tuple[bytes, ...], request: object) -> None:
        handed.append((batch, request))

    lifecycle.on_reply_alerts(hook)  # type: ignore[arg-type]
    await lifecycle.finish_reply(
        "x:y:1", DeviceReply(DeviceOutcome.RESPONDED, b"", (simulated(3),))
    )
    assert handed == [((simulated(3),), None)]
