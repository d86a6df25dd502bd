"""`decide` against a plain reference model, on generated registries, inventories, requests.

Three searches: broad hypothesis scenarios (everything varies), focused ones (the
request always passes the User/endpoint/CommandVariant checks) and a systematic grid
over one device (every SRV x type x status x role x eligibility x CommandVariant).
The model restates the rules of gateway/core/access.py's docstring in the most direct form
(lists, loops, its own status tables); only the SRV facts (applicable device types,
body-device rule, status class) come from mmc.applicability, because they are data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast, get_args

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

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
from mmc.applicability import applicable_device_types, body_device_rule, status_class
from mmc.catalogue import Endpoint, Srv
from mmc.identifiers import RequestId
from tests.test_access import make_srv

DCC = "90-B3-D5-1F-30-00-00-02"
USER_IDS = [f"90-B3-D5-1F-30-0{i}-00-00" for i in range(1, 5)]
DEVICE_IDS = [f"00-DB-00-00-00-00-00-0{i}" for i in range(1, 5)]
ROLES = ["IS", "ES", "GS", "ED", "GT", "RSA", "OU"]
TYPES = ["ESME", "GSME", "GPF", "CHF", "PPMID", "HCALCS", "IHD"]
STATUSES = list(get_args(DeviceStatus))
TIMES = [dt.datetime(2020 + i, 1, 1, tzinfo=dt.UTC) for i in range(5)]
ROLES_FOR_TYPE = {
    "ESME": ["IS", "ES", "ED", "RSA"],
    "GSME": ["GS", "GT", "RSA"],
    "GPF": ["GS", "GT", "RSA"],
    "CHF": ["IS", "ES", "ED", "GS", "GT", "RSA"],
    "PPMID": ["IS", "GS", "RSA"],
    "HCALCS": ["IS", "ED", "RSA"],
    "IHD": ["IS", "GS", "RSA"],
}


SRVS = [
    make_srv("4.1.1", "IS GS ED GT"),
    make_srv("4.8.1", "IS GS ED GT OU"),
    make_srv("1.1.1", "IS GS", critical=True),
    make_srv("8.1.1", "IS GS", critical=True),
    make_srv("8.7.2", "IS GS OU"),
    make_srv("6.15.1", "IS GS ED GT", critical=True),
    make_srv("11.3", "IS GS", critical=True),
    make_srv("11.2", "IS ES GS RSA ED GT OU"),
    make_srv("7.4", "IS ES GS RSA ED GT"),
    make_srv("9.1", "OU"),
    make_srv("7.16", "", critical=True),
    make_srv("8.2", "IS ES GS RSA ED GT OU", non_device=True),
    make_srv("8.3", "IS GS", non_device=True),
    make_srv("11.1", "IS GS", non_device=True),
    make_srv("12.2", "IS ES GS RSA ED GT OU", non_device=True),
    make_srv("5.1", "IS ES GS ED GT OU", non_device=True),
    make_srv("8.14.3", "IS GS", non_device=True),
]

# The model's own E5 table, written out per SRV kind.
MODEL_ALLOWED = {
    "inventory": set(STATUSES),
    "removal": set(STATUSES) - {"decommissioned", "withdrawn"},
    "commissioning": {
        "pending",
        "whitelisted",
        "installed_not_commissioned",
        "commissioned",
        "recovered",
    },
    "firmware": {"installed_not_commissioned", "commissioned", "recovered", "suspended"},
    "security": {"installed_not_commissioned", "commissioned", "recovered", "recovery"},
    "operational": {"installed_not_commissioned", "commissioned", "recovered"},
}


def _usually(draw: st.DrawFn) -> bool:
    """True seven times in eight: biases generation toward requests that pass the early
    checks (the table tests cover those), so the device checks get most examples."""
    return draw(st.integers(0, 7)) > 0


def _user(draw: st.DrawFn, user_id: str, srv: Srv, focused: bool) -> User:
    fitting = sorted(srv.roles) if srv.roles and (focused or _usually(draw)) else ROLES
    min_roles = 1 if focused else int(_usually(draw))
    roles = draw(st.sets(st.sampled_from(fitting), min_size=min_roles, max_size=2))
    if focused or _usually(draw):
        status = "active"
    else:
        status = draw(st.sampled_from(["suspended", "withdrawn"]))
    return User(
        user_id=user_id,
        party=f"p{user_id[-7]}",
        roles=cast(frozenset[UserRole], frozenset(roles)),
        status=cast(UserStatus, status),
    )


def _device(draw: st.DrawFn, device_id: str, srv: Srv, originator: User | None) -> Device:
    applicable = sorted(applicable_device_types(srv.variant) & set(TYPES))
    device_type = draw(st.sampled_from(applicable if applicable and _usually(draw) else TYPES))
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        possible = ROLES_FOR_TYPE[device_type]
        user_id = draw(st.sampled_from(USER_IDS))
        if originator is not None and _usually(draw):
            user_id = originator.user_id
            possible = [r for r in possible if r in originator.roles] or possible
        start = TIMES[0] if _usually(draw) else draw(st.sampled_from(TIMES[:-1]))
        end = None if _usually(draw) else draw(st.sampled_from([t for t in TIMES if t > start]))
        entries.append(
            EligibleUser(
                role=cast(UserRole, draw(st.sampled_from(possible))),
                user_id=user_id,
                effective_from=start,
                effective_to=end,
            )
        )
    return Device(
        device_id=device_id,
        device_type=cast(DeviceType, device_type),
        status=cast(DeviceStatus, draw(st.sampled_from(["commissioned"] * 4 + STATUSES))),
        eligibility=tuple(entries),
    )


UNKNOWN_USER = "90-B3-D5-1F-30-0F-00-00"
UNKNOWN_DEVICE = "00-DB-00-00-00-00-00-0F"

Scenario = tuple[list[User], list[Device], AccessRequest, Srv, Endpoint, dt.datetime]


@st.composite
def scenarios(draw: st.DrawFn, focused: bool) -> Scenario:
    """An SRV, a registry and inventory, and a request, mostly naming what exists.

    Focused scenarios always pass the User, endpoint and CommandVariant checks, so every
    example exercises the device checks (E19, E11, E4, E5, E17) where bugs hide in
    combinations; the broad ones vary everything.
    """

    def likely() -> bool:
        return focused or _usually(draw)

    srv = draw(st.sampled_from(SRVS))
    users = [_user(draw, user_id, srv, focused) for user_id in USER_IDS if likely()]
    originator = draw(st.sampled_from(users)) if users and likely() else None
    devices = [_device(draw, i, srv, originator) for i in DEVICE_IDS if _usually(draw)]
    device_ids = [d.device_id for d in devices]

    def some_device() -> str:
        known = device_ids if device_ids and _usually(draw) else [UNKNOWN_DEVICE, *DEVICE_IDS]
        return draw(st.sampled_from(known))

    if likely():
        target = DCC if srv.non_device else some_device()
    else:
        target = draw(st.sampled_from([DCC, UNKNOWN_DEVICE, *DEVICE_IDS]))
    if likely():
        local = sorted(srv.command_variants & {2, 3, 6, 7})
        prefer_local = bool(local) and draw(st.booleans())  # E17 needs local delivery
        cv = draw(st.sampled_from(local if prefer_local else sorted(srv.command_variants)))
    else:
        cv = draw(st.integers(1, 8))
    endpoint = srv.endpoint_for(cv) if likely() else draw(st.sampled_from(list(Endpoint)))
    body = [some_device() for _ in range(draw(st.integers(0, 2)))]
    now = draw(st.sampled_from(TIMES))
    user_id = originator.user_id if originator else draw(st.sampled_from([UNKNOWN_USER, *USER_IDS]))
    header = AccessRequest(RequestId(user_id, target, 1), cv, srv.variant, tuple(body))
    return users, devices, header, srv, endpoint, now


def model(
    header: AccessRequest,
    srv: Srv,
    users: list[User],
    devices: list[Device],
    now: dt.datetime,
    endpoint: Endpoint,
) -> str | None:
    user = next((u for u in users if u.user_id == header.request_id.originator), None)
    if user is None or len(user.roles) == 0:
        return "E1"
    roles = [r for r in user.roles if r in srv.roles]
    if not roles:
        return "E2"
    if user.status != "active":
        return "E3"
    cv = header.command_variant
    if cv == 4:
        right_endpoint = Endpoint.TRANSFORM
    elif srv.non_device:
        right_endpoint = Endpoint.NON_DEVICE
    else:
        right_endpoint = Endpoint.SEND
    if endpoint != right_endpoint:
        return "E13"
    if cv not in srv.command_variants:
        return "E12"
    target = header.request_id.target
    if srv.non_device and target != DCC:
        return "E11"
    if not srv.non_device and target == DCC:
        return "E11"

    def find(device_id: str) -> Device | None:
        return next((d for d in devices if d.device_id == device_id), None)

    rule = body_device_rule(srv.variant, srv.non_device).value
    if srv.non_device:
        checked = list(header.body_device_ids) if rule == "full" else []
        only_exist = list(header.body_device_ids) if rule == "exists" else []
        if rule == "listed":  # 11.1/11.4: the answer names unknown and idle devices
            checked = [i for i in header.body_device_ids if find(i) is not None]
    else:
        checked = [target]
        only_exist = list(header.body_device_ids) if rule != "ignore" else []

    for device_id in checked + only_exist:
        if find(device_id) is None:
            return "E19"
    found = [d for d in (find(i) for i in checked) if d is not None]
    for device in found:
        if device.device_type not in applicable_device_types(srv.variant):
            return "E11"

    def eligible(device: Device, wanted: Sequence[str]) -> bool:
        for entry in device.eligibility:
            in_window = entry.effective_from <= now and (
                entry.effective_to is None or now < entry.effective_to
            )
            if entry.user_id == user.user_id and entry.role in wanted and in_window:
                return True
        return False

    if "OU" not in roles:
        for device in found:
            if not eligible(device, roles):
                return "E4"
    allowed = MODEL_ALLOWED[status_class(srv.variant).value]
    if rule == "listed":
        allowed = set(STATUSES)
    for device in found:
        if device.status not in allowed:
            return "E5"
    if cv in (2, 3, 6, 7):
        supplier_roles = [r for r in roles if r in ("IS", "ES", "GS")]
        for device in found:
            if not supplier_roles or not eligible(device, supplier_roles):
                return "E17"
            if device.status not in ("installed_not_commissioned", "commissioned"):
                return "E17"
    return None


def _check(scenario: Scenario) -> None:
    users, devices, header, srv, endpoint, now = scenario
    registry, inventory = UserRegistry(users), Inventory(devices)
    decision = decide(header, srv, registry, inventory, now, endpoint, DCC)
    expected = model(header, srv, users, devices, now, endpoint)
    event(f"code {expected}")  # --hypothesis-show-statistics shows every code is reached
    assert decision.code == expected


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(focused=False))
def test_decide_matches_the_model(scenario: Scenario) -> None:
    _check(scenario)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(focused=True))
def test_device_checks_match_the_model(scenario: Scenario) -> None:
    _check(scenario)


# Role sets that matter for the device checks: suppliers, network operators, agents,
# OU beside a supplier role, and mixtures where only a non-supplier role is eligible.
GRID_ROLE_SETS = [{"IS"}, {"ES"}, {"ED"}, {"IS", "ED"}, {"GS", "GT"}, {"IS", "OU"}, {"RSA"}]


def test_device_grid_matches_the_model() -> None:
    """Every SRV x device type x status x roles x eligible role x CommandVariant, on a
    one-device estate: a systematic sweep of the device checks the random search can
    miss (one cell of the status table, one role of the local-delivery rule)."""
    device_id, user_id = DEVICE_IDS[0], USER_IDS[0]
    now = TIMES[2]
    compared = 0
    for roles in GRID_ROLE_SETS:
        user = User(
            user_id=user_id,
            party="p",
            roles=cast(frozenset[UserRole], frozenset(roles)),
            status="active",
        )
        registry = UserRegistry([user])
        for device_type in TYPES:
            eligible_roles = [r for r in ROLES_FOR_TYPE[device_type] if r in roles]
            for eligible in [None, *eligible_roles]:
                entries = (
                    ()
                    if eligible is None
                    else (
                        EligibleUser(
                            role=cast(UserRole, eligible), user_id=user_id, effective_from=TIMES[0]
                        ),
                    )
                )
                for status in STATUSES:
                    device = Device(
                        device_id=device_id,
                        device_type=cast(DeviceType, device_type),
                        status=cast(DeviceStatus, status),
                        eligibility=entries,
                    )
                    inventory = Inventory([device])
                    for srv in SRVS:
                        target = DCC if srv.non_device else device_id
                        for body in [(device_id,), (device_id, UNKNOWN_DEVICE)]:
                            for cv in srv.command_variants:
                                header = AccessRequest(
                                    RequestId(user_id, target, 1), cv, srv.variant, body
                                )
                                endpoint = srv.endpoint_for(cv)
                                got = decide(
                                    header, srv, registry, inventory, now, endpoint, DCC
                                ).code
                                want = model(header, srv, [user], [device], now, endpoint)
                                assert got == want, (header, srv.variant, device, roles)
                                compared += 1
    assert compared > 50_000
