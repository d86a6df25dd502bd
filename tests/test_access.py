"""The access decision, table-driven: every code, the order, change of supplier, templates."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, cast

import pytest
from lxml import etree

from gateway.core.access import AccessRequest, decide
from gateway.core.registry import (
    Device,
    DeviceStatus,
    DeviceType,
    EligibleUser,
    Inventory,
    User,
    UserRegistry,
    UserRole,
    UserStatus,
)
from gateway.devkit.estate import DCC_EUI64, default_inventory, default_users
from mmc.catalogue import Endpoint, Srv
from mmc.identifiers import RequestId, parse_request_id

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
COS = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)  # change of supplier on the ESME
AFTER_COS = COS + dt.timedelta(days=1)
START = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)

SUP = "90-B3-D5-1F-30-01-00-00"  # IS/GS, the ESME's import supplier until COS
NET = "90-B3-D5-1F-30-02-00-00"  # ED/GT
SUP2 = "90-B3-D5-1F-30-03-00-00"  # IS/GS, the ESME's import supplier from COS
OTHER = "90-B3-D5-1F-30-04-00-00"  # OU
SUSPENDED = "90-B3-D5-1F-30-05-00-00"
WITHDRAWN = "90-B3-D5-1F-30-06-00-00"
NO_ROLE = "90-B3-D5-1F-30-07-00-00"
AGENT = "90-B3-D5-1F-30-08-00-00"  # RSA, listed on no device
EXPORTER = "90-B3-D5-1F-30-09-00-00"  # ES
UNKNOWN_USER = "90-B3-D5-1F-30-FF-00-00"

E0 = "00-DB-00-00-00-00-00-E0"  # ESME, commissioned
G0 = "00-DB-00-00-00-00-00-60"  # GSME, commissioned
H0 = "00-DB-00-00-00-00-00-C0"  # CHF
P0 = "00-DB-00-00-00-00-00-E1"  # ESME pending
D0 = "00-DB-00-00-00-00-00-E2"  # ESME decommissioned
S0 = "00-DB-00-00-00-00-00-E3"  # ESME suspended
R0 = "00-DB-00-00-00-00-00-E4"  # ESME recovered
I0 = "00-DB-00-00-00-00-00-E5"  # ESME installed, not commissioned
M0 = "00-DB-00-00-00-00-00-A4"  # PPMID
UNKNOWN_DEVICE = "00-DB-00-00-00-00-00-FF"


def make_srv(
    variant: str,
    roles: str,
    *,
    critical: bool = False,
    non_device: bool = False,
) -> Srv:
    cvs = {8} if non_device else ({4, 5, 6, 7} if critical else {1, 2, 3})
    return Srv(
        variant=variant,
        reference=variant.rsplit(".", 1)[0] if variant.count(".") > 1 else variant,
        name=f"SRV {variant}",
        body_element=f"Body{variant.replace('.', '_')}",
        command_variants=frozenset(cvs),
        critical=critical,
        on_demand=not non_device,
        future_dated="No",
        dcc_scheduled=False,
        non_device=non_device,
        roles=frozenset(roles.split()),
    )


READ = make_srv("4.1.1", "IS GS ED GT")
EXPORT_READ = make_srv("4.2", "ES ED")
GAS_BLOCKS = make_srv("4.1.4", "GS")
PROFILE = make_srv("4.8.1", "IS GS ED GT OU")
TARIFF = make_srv("1.1.1", "IS GS", critical=True)
COMMISSION = make_srv("8.1.1", "IS GS", critical=True)
JOIN = make_srv("8.7.2", "IS GS OU")
CIN = make_srv("9.1", "OU")
LIMIT_APC = make_srv("7.16", "", critical=True)
READ_INVENTORY = make_srv("8.2", "IS ES GS RSA ED GT OU", non_device=True)
DECOMMISSION = make_srv("8.3", "IS GS", non_device=True)
FIRMWARE = make_srv("11.1", "IS GS", non_device=True)
PPMID_FIRMWARE = make_srv("11.4", "IS GS", non_device=True)
PRENOTIFY = make_srv("12.2", "IS ES GS RSA ED GT OU", non_device=True)
SUPPLY_STATUS = make_srv("7.4", "IS ES GS RSA ED GT")


def _user(user_id: str, roles: str, status: UserStatus = "active") -> User:
    return User(
        user_id=user_id,
        party=f"party-{user_id[-8:-6]}",
        roles=cast(frozenset[UserRole], frozenset(roles.split())),
        status=status,
    )


def _entry(
    role: UserRole, user_id: str, start: dt.datetime = START, end: dt.datetime | None = None
) -> EligibleUser:
    return EligibleUser(role=role, user_id=user_id, effective_from=start, effective_to=end)


def _device(
    device_id: str, device_type: DeviceType, status: DeviceStatus, *entries: EligibleUser
) -> Device:
    return Device(device_id=device_id, device_type=device_type, status=status, eligibility=entries)


REGISTRY = UserRegistry(
    [
        _user(SUP, "IS GS"),
        _user(NET, "ED GT"),
        _user(SUP2, "IS GS"),
        _user(OTHER, "OU"),
        _user(SUSPENDED, "IS GS", "suspended"),
        _user(WITHDRAWN, "IS GS", "withdrawn"),
        _user(NO_ROLE, ""),
        _user(AGENT, "RSA"),
        _user(EXPORTER, "ES"),
    ]
)

_ELECTRIC = (_entry("IS", SUP), _entry("ED", NET))
INVENTORY = Inventory(
    [
        _device(
            E0,
            "ESME",
            "commissioned",
            _entry("IS", SUP, START, COS),
            _entry("IS", SUP2, COS),
            _entry("ED", NET),
            _entry("ES", EXPORTER),
            _entry("IS", SUSPENDED),
        ),
        _device(G0, "GSME", "commissioned", _entry("GS", SUP), _entry("GT", NET)),
        _device(H0, "CHF", "commissioned", _entry("IS", SUP), _entry("GS", SUP)),
        _device(P0, "ESME", "pending", *_ELECTRIC),
        _device(D0, "ESME", "decommissioned", *_ELECTRIC),
        _device(S0, "ESME", "suspended", *_ELECTRIC),
        _device(R0, "ESME", "recovered", *_ELECTRIC),
        _device(I0, "ESME", "installed_not_commissioned", *_ELECTRIC),
        _device(M0, "PPMID", "commissioned", _entry("IS", SUP), _entry("GS", SUP)),
    ]
)


def check(
    srv: Srv,
    *,
    user: str = SUP,
    target: str | None = None,
    cv: int | None = None,
    endpoint: Endpoint | None = None,
    body: tuple[str, ...] = (),
    now: dt.datetime = NOW,
) -> str | None:
    if cv is None:
        cv = min(srv.command_variants)
    if target is None:
        target = DCC_EUI64 if srv.non_device else E0
    header = AccessRequest(RequestId(user, target, 1), cv, srv.variant, body)
    decision = decide(
        header, srv, REGISTRY, INVENTORY, now, endpoint or srv.endpoint_for(cv), DCC_EUI64
    )
    assert decision.accepted == (decision.code is None)
    if decision.code is not None:
        assert decision.reason  # every refusal says why
    return decision.code


# fmt: off
CASES: list[tuple[str, str | None, dict[str, Any]]] = [
    # ---- accepted
    ("read by the supplier", None, {"srv": READ}),
    ("read by the ED", None, {"srv": READ, "user": NET}),
    ("gas read by the GT", None, {"srv": READ, "user": NET, "target": G0}),
    ("critical on serviceT", None, {"srv": TARIFF, "cv": 4}),
    ("signed pre-command CV 5", None, {"srv": TARIFF, "cv": 5}),
    ("OU profile read, no relation needed", None, {"srv": PROFILE, "user": OTHER}),
    ("inventory read", None, {"srv": READ_INVENTORY, "body": (D0,)}),
    ("pre-notification of a new device", None, {"srv": PRENOTIFY, "body": (UNKNOWN_DEVICE,)}),
    ("commissioning a pending device", None, {"srv": COMMISSION, "target": P0, "cv": 4}),
    ("firmware for a suspended device", None, {"srv": FIRMWARE, "body": (S0,)}),
    # 11.1's DSPUpdateFirmwareWarning names unknown and decommissioned devices one by one.
    ("unknown device in a firmware list", None, {"srv": FIRMWARE, "body": (E0, UNKNOWN_DEVICE)}),
    ("decommissioned meter in a firmware list", None, {"srv": FIRMWARE, "body": (D0, E0)}),
    ("decommission a pending device", None, {"srv": DECOMMISSION, "body": (P0,)}),
    ("local delivery by the supplier", None, {"srv": READ, "cv": 2}),
    ("local copy, installed device", None, {"srv": READ, "cv": 3, "target": I0}),
    ("join names an existing PPMID", None, {"srv": JOIN, "body": (M0,)}),
    ("export read by the ES", None, {"srv": EXPORT_READ, "user": EXPORTER}),
    # ---- E1: unknown User ID, or an ID with no role
    ("unknown originator", "E1", {"srv": READ, "user": UNKNOWN_USER}),
    ("originator with no role", "E1", {"srv": READ, "user": NO_ROLE}),
    ("the DCC as originator", "E1", {"srv": READ_INVENTORY, "user": DCC_EUI64}),
    ("unknown originator, non-device", "E1", {"srv": PRENOTIFY, "user": UNKNOWN_USER}),
    # ---- E2: roles held, none eligible for the SRV
    ("ED sends a tariff", "E2", {"srv": TARIFF, "user": NET, "cv": 4}),
    ("OU sends a register read", "E2", {"srv": READ, "user": OTHER}),
    ("IS/GS send an OU-only SRV", "E2", {"srv": CIN}),
    ("SRV with no eligible role", "E2", {"srv": LIMIT_APC, "cv": 4}),
    # ---- E3: User status
    ("suspended User", "E3", {"srv": READ, "user": SUSPENDED}),
    ("withdrawn User", "E3", {"srv": READ, "user": WITHDRAWN}),
    ("suspended User, non-device", "E3", {"srv": READ_INVENTORY, "user": SUSPENDED}),
    # ---- E13: endpoint
    ("CV 4 on serviceS", "E13", {"srv": TARIFF, "cv": 4, "endpoint": Endpoint.SEND}),
    ("CV 1 on serviceT", "E13", {"srv": READ, "endpoint": Endpoint.TRANSFORM}),
    ("non-device on serviceS", "E13", {"srv": READ_INVENTORY, "endpoint": Endpoint.SEND}),
    ("device read on serviceD", "E13", {"srv": READ, "endpoint": Endpoint.NON_DEVICE}),
    # ---- E12: CommandVariant
    ("CV 1 for a critical SRV", "E12", {"srv": TARIFF, "cv": 1}),
    ("CV 4 for a non-critical SRV", "E12", {"srv": READ, "cv": 4}),
    ("CV 8 for a device SRV", "E12", {"srv": READ, "cv": 8}),
    ("CV 1 for a non-device SRV", "E12", {"srv": READ_INVENTORY, "cv": 1,
                                          "endpoint": Endpoint.NON_DEVICE}),
    # ---- E11: target kind, then device type
    ("non-device aimed at a device", "E11", {"srv": READ_INVENTORY, "target": G0}),
    ("device SRV aimed at the DCC", "E11", {"srv": READ, "target": DCC_EUI64}),
    ("export read on a GSME", "E11", {"srv": EXPORT_READ, "user": NET, "target": G0}),
    ("gas block counters on an ESME", "E11", {"srv": GAS_BLOCKS}),
    ("PPMID firmware for an ESME", "E11", {"srv": PPMID_FIRMWARE, "body": (E0,)}),
    ("register read on the CHF", "E11", {"srv": READ, "target": H0}),
    # ---- E19: device unknown
    ("unknown target", "E19", {"srv": READ, "target": UNKNOWN_DEVICE}),
    ("join names an unknown device", "E19", {"srv": JOIN, "body": (UNKNOWN_DEVICE,)}),
    ("inventory read of an unknown device", "E19", {"srv": READ_INVENTORY,
                                                    "body": (UNKNOWN_DEVICE,)}),
    # ---- E4: not the eligible User
    ("other supplier's meter", "E4", {"srv": READ, "user": SUP2}),
    ("gas supplier not listed", "E4", {"srv": READ, "user": SUP2, "target": G0}),
    ("RSA not listed on the device", "E4", {"srv": SUPPLY_STATUS, "user": AGENT}),
    ("firmware for another's meter", "E4", {"srv": FIRMWARE, "user": SUP2, "body": (G0,)}),
    ("at the end of the window exactly", "E4", {"srv": READ, "now": COS}),
    # ---- E5: device status
    ("read of a decommissioned meter", "E5", {"srv": READ, "target": D0}),
    ("read of a pending meter", "E5", {"srv": READ, "target": P0}),
    ("tariff on a suspended meter", "E5", {"srv": TARIFF, "target": S0, "cv": 4}),
    ("decommissioning twice", "E5", {"srv": DECOMMISSION, "body": (D0,)}),
    # ---- E17: local delivery
    ("local delivery by the ED", "E17", {"srv": READ, "user": NET, "cv": 2}),
    ("local delivery to a recovered meter", "E17", {"srv": READ, "target": R0, "cv": 3}),
    ("local delivery for an OU", "E17", {"srv": PROFILE, "user": OTHER, "cv": 2}),
    ("signed pre-command delivered locally, recovered", "E17",
     {"srv": TARIFF, "target": R0, "cv": 6}),
    # ---- order proofs: each request fails two checks and gets the earlier code
    ("E1 before E13", "E1", {"srv": READ, "user": UNKNOWN_USER, "endpoint": Endpoint.TRANSFORM}),
    ("E2 before E3", "E2", {"srv": CIN, "user": SUSPENDED}),
    ("E3 before E13", "E3", {"srv": READ, "user": WITHDRAWN, "endpoint": Endpoint.TRANSFORM}),
    ("E13 before E12", "E13", {"srv": READ, "cv": 4, "endpoint": Endpoint.SEND}),
    ("E12 before E11 (target kind)", "E12", {"srv": READ_INVENTORY, "cv": 1, "target": G0,
                                             "endpoint": Endpoint.NON_DEVICE}),
    ("E11 (target kind) before E19", "E11", {"srv": FIRMWARE, "target": UNKNOWN_DEVICE,
                                             "body": (UNKNOWN_DEVICE,)}),
    ("E19 before E11 (type)", "E19", {"srv": DECOMMISSION, "body": (H0, UNKNOWN_DEVICE)}),
    ("PPMID firmware: E11 (type) of a known device", "E11", {"srv": PPMID_FIRMWARE,
                                                             "body": (E0, UNKNOWN_DEVICE)}),
    ("E11 before E4", "E11", {"srv": GAS_BLOCKS, "user": SUP2}),
    ("E4 before E5", "E4", {"srv": READ, "user": SUP2, "target": D0}),
    ("E5 before E17", "E5", {"srv": READ, "user": NET, "target": D0, "cv": 2}),
    ("E12 before E17", "E12", {"srv": READ, "user": NET, "cv": 6}),
    ("E2 before E12", "E2", {"srv": LIMIT_APC, "cv": 1}),
]
# fmt: on


@pytest.mark.parametrize(("expected", "kwargs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decision(expected: str | None, kwargs: dict[str, Any]) -> None:
    assert check(**kwargs) == expected


def test_every_code_has_three_cases() -> None:
    codes = [code for _, code, _ in CASES]
    for code in ("E1", "E2", "E3", "E4", "E5", "E11", "E12", "E13", "E17", "E19"):
        assert codes.count(code) >= 3, code


# ---------------------------------------------------------------- change of supplier


@pytest.mark.parametrize(
    ("user", "now", "expected"),
    [
        (SUP, NOW, None),  # the old supplier before the effective date
        (SUP, AFTER_COS, "E4"),  # ... and after it
        (SUP2, NOW, "E4"),  # the new supplier before it
        (SUP2, AFTER_COS, None),  # ... and after it
        (SUP2, COS, None),  # effective_from is inclusive, effective_to exclusive
    ],
)
def test_change_of_supplier(user: str, now: dt.datetime, expected: str | None) -> None:
    assert check(READ, user=user, now=now) == expected
    assert check(TARIFF, user=user, now=now, cv=4) == expected


# ---------------------------------------------------------------- the RTDS templates


def _srvs_for_templates(shared: Path) -> dict[str, Srv]:
    """The 5.4 catalogue if it loads, else Srvs derived from the SRV matrix."""
    try:
        from mmc.catalogue import load_catalogue  # type: ignore[attr-defined,unused-ignore]

        return dict(load_catalogue("5.4").srvs)
    except Exception:  # the catalogue is someone else's work in progress
        pass
    srvs = {}
    for row in json.loads((shared / "duis" / "srv-matrix.json").read_text()):
        critical = row["Critical"] == "Yes"
        non_device = row["Non-Device Request"] == "Yes"
        variant = row["Service Reference Variant"]
        srvs[variant] = make_srv(
            variant, " ".join(row["Eligible User Roles"]), critical=critical, non_device=non_device
        )
    return srvs


_SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
_EUI = re.compile(r"[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){7}\Z")


def _facts(path: Path) -> AccessRequest:
    root = etree.parse(str(path)).getroot()
    header = root.find(f"{_SR}Header")
    body = root.find(f"{_SR}Body")
    assert header is not None and body is not None
    devices = []
    for element in body.iter():
        text = (element.text or "").strip() if isinstance(element.tag, str) else ""
        if _EUI.match(text):
            devices.append(text.upper())
        elif text and str(element.tag).endswith("RequestID"):
            devices.append(parse_request_id(text).target)
    return AccessRequest(
        request_id=parse_request_id(header.findtext(f"{_SR}RequestID") or ""),
        command_variant=int(header.findtext(f"{_SR}CommandVariant") or 0),
        srv_variant=header.findtext(f"{_SR}ServiceReferenceVariant") or "",
        body_device_ids=tuple(devices),
    )


def test_every_template_is_accepted_by_the_default_estate(shared_dir: Path) -> None:
    srvs = _srvs_for_templates(shared_dir)
    registry, inventory = default_users(), default_inventory()
    templates = sorted((shared_dir / "duis" / "samples" / "requests").glob("*.XML"))
    assert len(templates) >= 20
    refused = {}
    for path in templates:
        facts = _facts(path)
        srv = srvs[facts.srv_variant]
        endpoint = srv.endpoint_for(facts.command_variant)
        decision = decide(facts, srv, registry, inventory, NOW, endpoint, DCC_EUI64)
        if not decision.accepted:
            refused[path.name] = f"{decision.code}: {decision.reason}"
    assert refused == {}
