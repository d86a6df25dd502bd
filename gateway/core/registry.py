"""The User registry and the Smart Metering Inventory: typed snapshots and their loaders.

Both are operator data files (TOML or JSON, chosen by suffix) decoded straight into
frozen Structs, then indexed once into a snapshot with O(1) lookups. A snapshot never
changes: reloading builds a new one and the caller swaps its reference, so a request
in flight sees one consistent estate.

users.toml:

    [[users]]
    user_id = "90-B3-D5-1F-30-01-00-00"
    party = "supplier-1"
    roles = ["IS", "GS"]
    status = "active"                      # active | suspended | withdrawn
    response_url = "https://supplier-1.example/duis"  # optional; "dev-inbox": the dev inbox

inventory.toml:

    [[devices]]
    device_id = "00-DB-12-34-56-78-90-A0"
    device_type = "ESME"
    status = "commissioned"
    mpxn = "1100000000001"                 # optional
    chf_id = "00-DB-12-34-56-78-90-A2"     # optional: the hub it hangs off
    # optional too: han_variant, wan_variant (a CHF's), manufacturer, model, firmware_version,
    # technical_specification ("SMETS 2.0"), gbcs_version ("1.0"), uprn, postcode,
    # address_identifier
    eligibility = [
      { role = "IS", user_id = "90-B3-D5-1F-30-01-00-00", effective_from = 2015-01-01T00:00:00Z },
    ]

Loaders raise RegistryError naming the file, the key path and, where it can, the
User ID or Device ID of the offending entry.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, Literal, Protocol, TypeVar, get_args

import msgspec

from mmc.applicability import DEVICE_TYPES
from mmc.identifiers import Eui64

EuiText = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){7}$")]
PartyName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
]
# An http(s) URL, or "dev-inbox": this gateway's dev inbox (gateway/devkit/inbox.py).
ResponseUrl = Annotated[
    str, msgspec.Meta(max_length=2048, pattern=r"^(https?://[^\s]+|dev-inbox)$")
]
Mpxn = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,13}$")]  # MPAN or MPRN (sr:MPxN)
VariantText = Annotated[str, msgspec.Meta(min_length=1, max_length=30)]
# sr:DeviceManufacturer / sr:DeviceModel are up to 30 characters, sr:FirmwareVersion 1-8.
DeviceText = Annotated[str, msgspec.Meta(min_length=1, max_length=30)]
FirmwareText = Annotated[str, msgspec.Meta(min_length=1, max_length=8)]
AwareDatetime = Annotated[dt.datetime, msgspec.Meta(tz=True)]
# "SMETS 2.0", "SMETS v2.0", "CHTS V1.4" (sr:SMETSCHTSVersion), and a GBCS version "1.0".
SpecText = Annotated[str, msgspec.Meta(pattern=r"^(?i:SMETS|CHTS) ?[vV]?[0-9]{1,4}\.[0-9]{1,4}$")]
GbcsText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,4}\.[0-9]{1,4}$")]
Uprn = Annotated[int, msgspec.Meta(ge=1, le=999_999_999_999)]  # sr:UPRN
PostcodeText = Annotated[str, msgspec.Meta(min_length=5, max_length=8)]  # sr:PostCode
AddressText = Annotated[str, msgspec.Meta(min_length=1, max_length=30)]  # sr:AddressIdentifier

UserRole = Literal["IS", "ES", "GS", "ED", "GT", "RSA", "OU"]
USER_ROLES: frozenset[str] = frozenset(get_args(UserRole))
UserStatus = Literal["active", "suspended", "withdrawn"]
DeviceType = Literal["ESME", "GSME", "GPF", "CHF", "PPMID", "HCALCS", "IHD", "CAD", "TYPE2"]
DeviceStatus = Literal[
    "pending",
    "whitelisted",
    "installed_not_commissioned",
    "commissioned",
    "decommissioned",
    "withdrawn",
    "suspended",
    "recovery",
    "recovered",
]

# Which relation a role can have with a device of each type; an eligibility entry
# outside this table is a data error (a gas transporter is never eligible for an
# ESME). OU has no device relation at all: Other Users are never listed.
_ELECTRICITY = frozenset({"IS", "ES", "ED", "RSA"})
_GAS = frozenset({"GS", "GT", "RSA"})
_ROLES_FOR_TYPE: dict[str, frozenset[str]] = {
    "ESME": _ELECTRICITY,
    "GSME": _GAS,
    "GPF": _GAS,
    "CHF": _ELECTRICITY | _GAS,
    "PPMID": frozenset({"IS", "GS", "RSA"}),
    "HCALCS": frozenset({"IS", "ED", "RSA"}),
    "IHD": frozenset({"IS", "GS", "RSA"}),
    "CAD": frozenset({"IS", "GS", "RSA"}),
    "TYPE2": frozenset({"IS", "GS", "RSA"}),
}
assert set(_ROLES_FOR_TYPE) == DEVICE_TYPES  # one table of types, checked at import


Format = Literal["toml", "json"]
F = TypeVar("F")
A = TypeVar("A")
S = TypeVar("S")


class RegistryError(ValueError):
    """A users or inventory file is unusable; the message names the key and the ID."""


class User(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    user_id: EuiText
    party: PartyName
    roles: frozenset[UserRole]  # empty for an ID that may not send requests (the DCC's own)
    status: UserStatus
    response_url: ResponseUrl | None = None


class EligibleUser(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One User's relation with a device in one role over [effective_from, effective_to)."""

    role: UserRole
    user_id: EuiText
    effective_from: AwareDatetime
    effective_to: AwareDatetime | None = None


class Device(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    device_id: EuiText
    device_type: DeviceType
    status: DeviceStatus
    mpxn: Mpxn | None = None
    chf_id: EuiText | None = None
    han_variant: VariantText | None = None  # e.g. "Single Band" (CHF)
    wan_variant: VariantText | None = None  # e.g. "4G Central" (CHF)
    # What Read Inventory (8.2) reports, when the inventory knows it.
    manufacturer: DeviceText | None = None
    model: DeviceText | None = None
    firmware_version: FirmwareText | None = None
    # The Technical Specification versions it meets (SEC A3), when recorded; otherwise
    # the techspec product tables derive them from manufacturer, model and firmware.
    technical_specification: SpecText | None = None
    gbcs_version: GbcsText | None = None
    # The premises, as the SM WAN Coverage Database keys them (Install and Leave).
    uprn: Uprn | None = None
    postcode: PostcodeText | None = None
    address_identifier: AddressText | None = None
    eligibility: tuple[EligibleUser, ...] = ()


class UsersFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    users: tuple[User, ...]


class InventoryFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    devices: tuple[Device, ...]


def _canonical(eui: str) -> Eui64:
    return eui.upper()


class UserRegistry:
    """An immutable snapshot of the Users, indexed by User ID and by party."""

    __slots__ = ("_by_id", "_by_party")

    def __init__(self, users: Iterable[User]) -> None:
        by_id: dict[Eui64, User] = {}
        by_party: dict[str, list[User]] = {}
        for user in users:
            if user.user_id != _canonical(user.user_id):
                user = msgspec.structs.replace(user, user_id=_canonical(user.user_id))
            if user.user_id in by_id:
                raise RegistryError(f"duplicate user_id {user.user_id}")
            by_id[user.user_id] = user
            by_party.setdefault(user.party, []).append(user)
        self._by_id = by_id
        self._by_party = {party: tuple(members) for party, members in by_party.items()}

    def get(self, user_id: Eui64) -> User | None:
        return self._by_id.get(user_id)

    def parties(self) -> tuple[str, ...]:
        return tuple(self._by_party)

    def users_of(self, party: str) -> tuple[User, ...]:
        return self._by_party.get(party, ())

    def __iter__(self) -> Iterator[User]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


# (role, effective_from, effective_to) for one (device, user) pair.
_Window = tuple[str, dt.datetime, dt.datetime | None]


class Inventory:
    """An immutable snapshot of the Smart Metering Inventory.

    Eligibility is indexed by (device, user) so the access decision asks one dict
    and walks the (usually one or two) windows that User has on that device.
    """

    __slots__ = ("_by_id", "_windows")

    def __init__(self, devices: Iterable[Device]) -> None:
        by_id: dict[Eui64, Device] = {}
        windows: dict[tuple[Eui64, Eui64], list[_Window]] = {}
        for device in devices:
            device = _canonical_device(device)
            if device.device_id in by_id:
                raise RegistryError(f"duplicate device_id {device.device_id}")
            by_id[device.device_id] = device
            for entry in device.eligibility:
                _check_entry(device, entry)
                key = (device.device_id, entry.user_id)
                windows.setdefault(key, []).append(
                    (entry.role, entry.effective_from, entry.effective_to)
                )
        for device in by_id.values():
            _check_hub(device, by_id)
        self._by_id = by_id
        self._windows = {key: tuple(value) for key, value in windows.items()}

    def get(self, device_id: Eui64) -> Device | None:
        return self._by_id.get(device_id)

    def is_eligible(
        self, device_id: Eui64, user_id: Eui64, roles: frozenset[str], at: dt.datetime
    ) -> bool:
        """True if `user_id` holds one of `roles` for the device at `at` (timezone-aware)."""
        for role, start, end in self._windows.get((device_id, user_id), ()):
            if role in roles and start <= at and (end is None or at < end):
                return True
        return False

    def __iter__(self) -> Iterator[Device]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def _canonical_device(device: Device) -> Device:
    eligibility = tuple(
        e
        if e.user_id == _canonical(e.user_id)
        else msgspec.structs.replace(e, user_id=_canonical(e.user_id))
        for e in device.eligibility
    )
    chf_id = None if device.chf_id is None else _canonical(device.chf_id)
    return msgspec.structs.replace(
        device, device_id=_canonical(device.device_id), chf_id=chf_id, eligibility=eligibility
    )


def _check_entry(device: Device, entry: EligibleUser) -> None:
    where = f"device {device.device_id} eligibility for {entry.role} {entry.user_id}"
    if entry.role not in _ROLES_FOR_TYPE[device.device_type]:
        raise RegistryError(f"{where}: a {entry.role} is never eligible for a {device.device_type}")
    if entry.effective_to is not None and entry.effective_to <= entry.effective_from:
        raise RegistryError(f"{where}: effective_to is not after effective_from")


def _check_hub(device: Device, by_id: dict[Eui64, Device]) -> None:
    if device.chf_id is None:
        return
    hub = by_id.get(device.chf_id)
    if hub is None or hub.device_type != "CHF":
        raise RegistryError(
            f"device {device.device_id}: chf_id {device.chf_id} is not a CHF in the inventory"
        )


# ---------------------------------------------------------------- loading


def decode_users(data: bytes, *, fmt: Format, source: str = "<users>") -> UserRegistry:
    file = _decode(data, fmt, source, UsersFile, "users", "user_id")
    return _build(source, UserRegistry, file.users)


def decode_inventory(data: bytes, *, fmt: Format, source: str = "<inventory>") -> Inventory:
    file = _decode(data, fmt, source, InventoryFile, "devices", "device_id")
    return _build(source, Inventory, file.devices)


def _build(source: str, snapshot: Callable[[A], S], entries: A) -> S:
    try:
        return snapshot(entries)
    except RegistryError as exc:
        raise RegistryError(f"{source}: {exc}") from None


def _decode(data: bytes, fmt: Format, source: str, kind: type[F], list_key: str, id_key: str) -> F:
    try:
        raw: Any = tomllib.loads(data.decode()) if fmt == "toml" else msgspec.json.decode(data)
    except (tomllib.TOMLDecodeError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{source}: not valid {fmt.upper()}: {exc}") from None
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        hint = _entry_hint(raw, list_key, id_key, str(exc))
        raise RegistryError(f"{source}: {exc}{hint}") from None


_INDEX = re.compile(r"`\$\.(\w+)\[(\d+)\]")


def _entry_hint(raw: Any, list_key: str, id_key: str, message: str) -> str:
    """' (user_id 90-...)' for an error inside one entry, so the operator can find it."""
    match = _INDEX.search(message)
    if match is None or match.group(1) != list_key or not isinstance(raw, dict):
        return ""
    entries = raw.get(list_key)
    index = int(match.group(2))
    if not isinstance(entries, list) or index >= len(entries):
        return ""
    entry = entries[index]
    ident = entry.get(id_key) if isinstance(entry, dict) else None
    return f" ({id_key} {ident})" if isinstance(ident, str) else ""


# ---------------------------------------------------------------- policy


class UserIdPolicy(Protocol):
    """The one-User-ID-per-User-Role rule (consultation ¶135-137).

    A transitional rule with an end date: before `one_id_per_role_until` a party may
    hold at most one User ID per User Role; from that date on it may hold several.
    None means the rule is over. The gateway's RegistryConfig satisfies this.
    """

    @property
    def one_id_per_role_until(self) -> dt.date | None: ...


class IdPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    one_id_per_role_until: dt.date | None = None


def policy_violations(registry: UserRegistry, policy: UserIdPolicy, today: dt.date) -> list[str]:
    """One message per (party, role) holding several User IDs while the rule applies.

    Withdrawn User IDs do not count: they can no longer be used in any role.
    """
    until = policy.one_id_per_role_until
    if isinstance(today, dt.datetime):  # a datetime is a date, but does not compare to one
        today = today.date()
    if until is None or today >= until:
        return []
    problems = []
    for party in sorted(registry.parties()):
        live = [u for u in registry.users_of(party) if u.status != "withdrawn"]
        for role in sorted(USER_ROLES):
            ids = sorted(u.user_id for u in live if role in u.roles)
            if len(ids) > 1:
                problems.append(
                    f"party {party!r} holds {len(ids)} User IDs for User Role {role}: "
                    f"{', '.join(ids)} (one User ID per User Role until {until.isoformat()})"
                )
    return problems


def check_policy(registry: UserRegistry, policy: UserIdPolicy, today: dt.date) -> None:
    """Refuse a registry that breaks the one-User-ID-per-User-Role rule."""
    problems = policy_violations(registry, policy, today)
    if problems:
        raise RegistryError("; ".join(problems))
