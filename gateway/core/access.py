"""The access decision: may this User send this Service Request to these devices now?

A sans-IO function over immutable snapshots (gateway.core.registry) and a catalogue Srv.
It runs after the signature is verified (the originator is authenticated) and before
anomaly detection. Checks run in ONE order and the first failure decides the code, so
a request failing two checks always gets the earlier one:

  1. E1   the originator User ID is not registered, or holds no User Role at all
  2. E2   none of the User's roles is eligible for the SRV (srv.roles)
  3. E3   the User's status is not "active"
  4. E13  the request arrived on the wrong endpoint for its CommandVariant
          (srv.endpoint_for: CV 4 -> serviceT, non-device -> serviceD, else serviceS)
  5. E12  the CommandVariant is not one the SRV allows
  6. E11  the RequestID target is the wrong kind: a non-device (DCC-only, CV 8) SRV
          must target the DCC's own EUI-64; a device SRV must not. E11 rather than
          E13: the endpoint was right, the named target is incompatible with the SRV
  7. E19  a device the request acts on is not in the inventory
  8. E11  a device's type is not one the SRV applies to (mmc.applicability)
  9. E4   the User is not the eligible User for a device at `now` (rule below)
 10. E5   a device's status does not allow the SRV (table below)
 11. E17  local delivery (CV 2/3/6/7) is not permitted (rule below)

Devices a request acts on: the RequestID target of a device SRV; for a non-device
SRV, the device IDs its body names (each checked like a target). The body devices of
a device SRV (a join's OtherDeviceID ...) need only exist. See
mmc.applicability.body_device_rule for the exceptions (8.2: exist; 12.1/12.2: none;
11.1/11.4: the known ones for type and eligibility only, as the Service Response's
DSPUpdateFirmwareWarning names unknown and not-commissioned devices one by one).

E4 rule. The roles that count are those the User holds AND the SRV allows. If OU
is among them the request passes: an Other User has no registered relation with any
device, and the SRV matrix listing OU means any Other User may send it for any device.
Otherwise the device's eligibility list must name this User ID, in one of those roles,
with effective_from <= now < effective_to. The inventory loader already refuses a role
that cannot relate to the device type (IS/ES/ED with electricity, GS/GT with gas, RSA
with both), so the role relation is the data's.

E5 table (mmc.applicability.status_class):
  inventory      any status
  removal        any but decommissioned / withdrawn
  commissioning  pending, whitelisted, installed_not_commissioned, commissioned, recovered
  firmware       installed_not_commissioned, commissioned, suspended, recovered
  security       installed_not_commissioned, commissioned, recovery, recovered
  operational    installed_not_commissioned, commissioned, recovered

E17 rule. Local delivery puts the command in the hands of someone at the premises, so
it is for the device's supplier: the User must be eligible for the target device in a
supplier role (IS, ES or GS) the SRV allows, and the device must be
installed_not_commissioned or commissioned. An OU, a network operator or an RSA gets
E17; so does a recovered device. Which SRVs allow CV 2/3/6/7 at all is E12's business.
"""

from __future__ import annotations

import datetime as dt
import typing

import msgspec

from gateway.core.registry import Device, DeviceStatus, Inventory, UserRegistry
from mmc.applicability import (
    BodyDevices,
    StatusClass,
    applicable_device_types,
    body_device_rule,
    status_class,
)
from mmc.catalogue import Endpoint, Srv
from mmc.identifiers import Eui64, RequestId

LOCAL_DELIVERY_VARIANTS = frozenset({2, 3, 6, 7})
SUPPLIER_ROLES = frozenset({"IS", "ES", "GS"})
OTHER_USER = "OU"

_ALL_STATUSES: frozenset[str] = frozenset(typing.get_args(DeviceStatus))
_IN_SERVICE = frozenset({"installed_not_commissioned", "commissioned", "recovered"})
ALLOWED_STATUSES: dict[StatusClass, frozenset[str]] = {
    StatusClass.INVENTORY: _ALL_STATUSES,
    StatusClass.REMOVAL: _ALL_STATUSES - {"decommissioned", "withdrawn"},
    StatusClass.COMMISSIONING: _IN_SERVICE | {"pending", "whitelisted"},
    StatusClass.FIRMWARE: _IN_SERVICE | {"suspended"},
    StatusClass.SECURITY: _IN_SERVICE | {"recovery"},
    StatusClass.OPERATIONAL: _IN_SERVICE,
}
LOCAL_DELIVERY_STATUSES = frozenset({"installed_not_commissioned", "commissioned"})


class AccessRequest(msgspec.Struct, frozen=True, gc=False):
    """The facts of a request the decision needs, taken from its header and body.

    `srv_variant` is the header's ServiceReferenceVariant (the Srv passed to decide is
    the catalogue entry for it). `body_device_ids` are the canonical device IDs the body
    names: DeviceID, OtherDeviceID, DeviceIDList entries, the target of an
    OriginalRequestID; empty if it names none.
    """

    request_id: RequestId
    command_variant: int
    srv_variant: str
    body_device_ids: tuple[Eui64, ...] = ()


class AccessDecision(msgspec.Struct, frozen=True, gc=False):
    """Accepted (code None), or the DUIS response code and a short reason for the log."""

    code: str | None = None
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.code is None


ACCEPTED = AccessDecision()


def decide(
    header: AccessRequest,
    srv: Srv,
    registry: UserRegistry,
    inventory: Inventory,
    now: dt.datetime,
    endpoint: Endpoint,
    dcc_eui64: Eui64,
) -> AccessDecision:
    """Apply the checks in the module's order; `now` is timezone-aware."""
    user_id = header.request_id.originator
    user = registry.get(user_id)
    if user is None:
        return AccessDecision("E1", f"User ID {user_id} is not registered")
    if not user.roles:
        return AccessDecision("E1", f"User ID {user_id} holds no User Role")
    roles = user.roles & srv.roles
    if not roles:
        return AccessDecision(
            "E2", f"roles {_names(user.roles)} of {user_id} may not send SRV {srv.variant}"
        )
    if user.status != "active":
        return AccessDecision("E3", f"User ID {user_id} is {user.status}")
    cv = header.command_variant
    expected = srv.endpoint_for(cv)
    if endpoint != expected:
        return AccessDecision(
            "E13", f"SRV {srv.variant} CV {cv} belongs on service{expected}, not service{endpoint}"
        )
    if cv not in srv.command_variants:
        return AccessDecision("E12", f"SRV {srv.variant} does not allow CommandVariant {cv}")

    target = header.request_id.target
    body = header.body_device_ids
    types, rule, allowed = _profile(srv)
    if srv.non_device:
        if target != dcc_eui64:
            return AccessDecision(
                "E11", f"non-device SRV {srv.variant} must target the DCC ({dcc_eui64})"
            )
        acted_on = body if rule is _FULL else ()
        must_exist = body if rule is _EXISTS else ()
        if rule is _LISTED:  # the response names unknown and not-commissioned devices
            acted_on = tuple(d for d in body if inventory.get(d) is not None)
            allowed = ALLOWED_STATUSES[StatusClass.INVENTORY]
    else:
        if target == dcc_eui64:
            return AccessDecision("E11", f"device SRV {srv.variant} cannot target the DCC")
        acted_on = (target,)
        must_exist = body if rule is not _IGNORE else ()
    return _device_checks(header, srv, inventory, now, roles, acted_on, must_exist, types, allowed)


# Per-SRV facts the decision needs, looked up once per (variant, non_device) instead of
# three table lookups per request. Bounded: Srvs come from the catalogues (129 each).
_Profile = tuple[frozenset[str], BodyDevices, frozenset[str]]
_PROFILES: dict[tuple[str, bool], _Profile] = {}
_FULL, _EXISTS, _IGNORE = BodyDevices.FULL, BodyDevices.EXISTS, BodyDevices.IGNORE
_LISTED = BodyDevices.LISTED


def _profile(srv: Srv) -> _Profile:
    key = (srv.variant, srv.non_device)
    profile = _PROFILES.get(key)
    if profile is None:
        profile = (
            applicable_device_types(srv.variant),
            body_device_rule(srv.variant, srv.non_device),
            ALLOWED_STATUSES[status_class(srv.variant)],
        )
        _PROFILES[key] = profile
    return profile


def _device_checks(
    header: AccessRequest,
    srv: Srv,
    inventory: Inventory,
    now: dt.datetime,
    roles: frozenset[str],
    acted_on: tuple[Eui64, ...],
    must_exist: tuple[Eui64, ...],
    types: frozenset[str],
    allowed: frozenset[str],
) -> AccessDecision:
    devices: list[Device] = []
    for device_id in acted_on:
        device = inventory.get(device_id)
        if device is None:
            return AccessDecision("E19", f"device {device_id} is not in the inventory")
        devices.append(device)
    for device_id in must_exist:
        if inventory.get(device_id) is None:
            return AccessDecision("E19", f"device {device_id} is not in the inventory")

    for device in devices:
        if device.device_type not in types:
            return AccessDecision(
                "E11",
                f"SRV {srv.variant} does not apply to {device.device_type} {device.device_id}",
            )

    user_id = header.request_id.originator
    if OTHER_USER not in roles:
        for device in devices:
            if not inventory.is_eligible(device.device_id, user_id, roles, now):
                return AccessDecision(
                    "E4", f"{user_id} is not the eligible {_names(roles)} for {device.device_id}"
                )

    for device in devices:
        if device.status not in allowed:
            return AccessDecision(
                "E5", f"device {device.device_id} is {device.status}: SRV {srv.variant} refused"
            )

    if header.command_variant in LOCAL_DELIVERY_VARIANTS:
        return _local_delivery(header, roles, inventory, devices, now)
    return ACCEPTED


def _local_delivery(
    header: AccessRequest,
    roles: frozenset[str],
    inventory: Inventory,
    devices: list[Device],
    now: dt.datetime,
) -> AccessDecision:
    user_id = header.request_id.originator
    supplier_roles = roles & SUPPLIER_ROLES
    for device in devices:
        if not supplier_roles or not inventory.is_eligible(
            device.device_id, user_id, supplier_roles, now
        ):
            return AccessDecision(
                "E17", f"local delivery to {device.device_id} needs its supplier; {user_id} is not"
            )
        if device.status not in LOCAL_DELIVERY_STATUSES:
            return AccessDecision(
                "E17", f"no local delivery to {device.device_id} while {device.status}"
            )
    return ACCEPTED


def _names(roles: frozenset[str]) -> str:
    return "/".join(sorted(roles))
