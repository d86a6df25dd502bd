"""The default estate: the Users and devices of the DCC's test data, for a dev gateway.

On first start the gateway writes these two files to its state directory (and never
overwrites them afterwards: they are then the operator's). They match the IDs used by
the RTDS request templates, the GBCS reference vectors and the test PKI, so every
template in ../shared/duis/samples/requests/ is accepted unchanged.

Choices the test data forces, and why:
- 90-B3-D5-1F-30-01-00-00 (supplier-1) also holds OU: the 9.1 Request Customer
  Identification Number template is sent from it, and the SRV matrix makes 9.1
  eligible for OU only. One ID in several roles is allowed (consultation ¶134); it does
  mean this ID passes E4 for every SRV that lists OU.
- The load controller gets OU: the SRVs it needs (7.7, 7.11, 7.14, 7.15) list OU, and
  DUIS has no load-controller User Role. It is its own party, so supplier-1 and it do
  not both hold OU within one party (the one-ID-per-role rule).
- 90-B3-D5-1F-30-00-00-02 is the access control broker and the DCC's own EUI-64 (the
  target of every non-device request). It is registered with no User Role: a request
  that claims it as originator gets E1.
- Device types follow the GBCS reference vectors (see mmc.applicability); -A6 is the
  auxiliary controller the APC use cases address, which DUIS 5.4's DeviceType has no
  value for, so it is recorded as an HCALCS.
- 00-DB-12-34-56-78-90-99 is the Type 2 device (an IHD) the 8.8.1 Unjoin template names
  as OtherDeviceID; a join or unjoin body device must be in the inventory.
- Beside the home's hub (-90-A2, Dual Band / 4G Central), a CHF and GPF of every other
  HAN/WAN variant (-92-k0 / -92-k1), as the DCC provides test hubs of each (¶67-68).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from gateway.core.registry import Inventory, UserRegistry, decode_inventory, decode_users
from mmc.identifiers import Eui64

USERS_FILE_NAME = "users.toml"
INVENTORY_FILE_NAME = "inventory.toml"
DCC_EUI64: Eui64 = "90-B3-D5-1F-30-00-00-02"

DEFAULT_USERS_TOML = """\
# DUIS Users of the development estate (gateway.devkit.estate). Edit freely: the gateway
# writes this file only when it is missing. Each User's Receive Response URL is the
# dev inbox on this gateway's admin listener, wherever [admin] puts it ("dev-inbox";
# `duisgw inbox` lists what arrived there). Any http(s) URL works instead.

[[users]]
user_id = "90-B3-D5-1F-30-01-00-00"
party = "supplier-1"
# OU too: the RTDS 9.1 template (eligible for OU only) is sent from this ID.
roles = ["IS", "GS", "OU"]
status = "active"
response_url = "dev-inbox"

[[users]]
user_id = "90-B3-D5-1F-30-02-00-00"
party = "network-operator"
roles = ["ED", "GT"]
status = "active"
response_url = "dev-inbox"

[[users]]
user_id = "90-B3-D5-1F-30-03-00-00"
party = "supplier-2"
roles = ["IS", "GS"]
status = "active"
response_url = "dev-inbox"

[[users]]
user_id = "90-B3-D5-1F-30-01-00-08"
party = "load-controller"
roles = ["OU"]
status = "active"
response_url = "dev-inbox"

[[users]]
# The access control broker: the DCC's own EUI-64, target of non-device requests.
# No User Role, so it cannot originate Service Requests.
user_id = "90-B3-D5-1F-30-00-00-02"
party = "dcc"
roles = []
status = "active"
"""

_SUPPLIER = "90-B3-D5-1F-30-01-00-00"
_NETWORK = "90-B3-D5-1F-30-02-00-00"
_FROM = "2015-01-01T00:00:00Z"
_HOME_HUB = "00-DB-12-34-56-78-90-A2"

# Every HAN and WAN variant of Communications Hub (SEC F10.12 / H14.9: test hubs of
# every combination). WAN variants are the CSP regions of sr:CSPRegion.
HAN_VARIANTS = ("Single Band", "Dual Band")
WAN_VARIANTS = ("North", "Central", "South", "4G North", "4G Central", "4G South")
_HOME_HUB_VARIANT = ("Dual Band", "4G Central")  # dual band: the 6.28-6.32 sub-GHz SRVs apply


def _device(
    device_id: str,
    device_type: str,
    roles: list[tuple[str, str]],
    *,
    mpxn: str | None = None,
    hub: str = _HOME_HUB,
    variant: tuple[str, str] | None = None,
) -> str:
    lines = [
        "[[devices]]",
        f'device_id = "{device_id}"',
        f'device_type = "{device_type}"',
        'status = "commissioned"',
    ]
    if mpxn is not None:
        lines.append(f'mpxn = "{mpxn}"')
    if variant is not None:
        lines += [f'han_variant = "{variant[0]}"', f'wan_variant = "{variant[1]}"']
    else:
        lines.append(f'chf_id = "{hub}"')
    lines.append("eligibility = [")
    for role, user_id in roles:
        lines.append(f'  {{ role = "{role}", user_id = "{user_id}", effective_from = {_FROM} }},')
    lines.append("]")
    return "\n".join(lines) + "\n"


_ELECTRIC = [("IS", _SUPPLIER), ("ED", _NETWORK)]
_GAS = [("GS", _SUPPLIER), ("GT", _NETWORK)]
_HOME = [("IS", _SUPPLIER), ("GS", _SUPPLIER)]


def _home(suffix: str) -> str:
    return f"00-DB-12-34-56-78-90-{suffix}"


def _variant_hubs() -> list[str]:
    """A CHF and its GPF for every other HAN/WAN variant: 00-DB-12-34-56-78-92-k0/k1."""
    variants = [(h, w) for h in HAN_VARIANTS for w in WAN_VARIANTS if (h, w) != _HOME_HUB_VARIANT]
    entries = []
    for k, variant in enumerate(variants):
        chf, gpf = f"00-DB-12-34-56-78-92-{k:X}0", f"00-DB-12-34-56-78-92-{k:X}1"
        entries.append(_device(chf, "CHF", _ELECTRIC + _GAS, variant=variant))
        entries.append(_device(gpf, "GPF", _GAS, hub=chf))
    return entries


DEFAULT_INVENTORY_TOML = (
    "# Smart Metering Inventory of the development estate (gateway.devkit.estate): one home on\n"
    "# one Communications Hub (-90-A0 .. -90-A6, -90-99), and a hub with its GPF for every\n"
    "# other HAN/WAN variant (-92-k0, -92-k1). supplier-1 is the supplier of everything,\n"
    "# network-operator the ED and GT.\n\n"
    + "\n".join(
        [
            _device(_home("A0"), "ESME", _ELECTRIC, mpxn="1312345678111"),
            _device(_home("A1"), "GSME", _GAS, mpxn="1234567890"),
            _device(_home("A2"), "CHF", _ELECTRIC + _GAS, variant=_HOME_HUB_VARIANT),
            _device(_home("A3"), "GPF", _GAS),
            _device(_home("A4"), "PPMID", _HOME),
            _device(_home("A5"), "HCALCS", _ELECTRIC),
            # The auxiliary controller (APC) of the reference vectors, as an HCALCS.
            _device(_home("A6"), "HCALCS", _ELECTRIC),
            # The Type 2 device the 8.8.1 Unjoin template unjoins from the ESME.
            _device(_home("99"), "IHD", _HOME),
            *_variant_hubs(),
        ]
    )
)


def default_users() -> UserRegistry:
    return decode_users(DEFAULT_USERS_TOML.encode(), fmt="toml", source="<default users>")


def default_inventory() -> Inventory:
    return decode_inventory(
        DEFAULT_INVENTORY_TOML.encode(), fmt="toml", source="<default inventory>"
    )


def write_default_estate(state_dir: Path) -> tuple[Path, Path]:
    """Write users.toml and inventory.toml into state_dir unless they already exist.

    Blocking (call it at start-up, or through trio.to_thread). Each file is written to
    a temporary name, fsynced and renamed, so a crash never leaves half a file.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    users = state_dir / USERS_FILE_NAME
    inventory = state_dir / INVENTORY_FILE_NAME
    for path, text in ((users, DEFAULT_USERS_TOML), (inventory, DEFAULT_INVENTORY_TOML)):
        if not path.exists():
            _write_atomically(path, text.encode())
    return users, inventory


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class DevUser(msgspec.Struct, frozen=True):
    """One identity the dev PKI generator issues certificates for."""

    eui64: Eui64
    label: str
    role_code: str  # SMKI Organisation certificate subject OU, two hex digits


def dev_users() -> list[DevUser]:
    """The estate's identities with their certificate role codes (SPEC: OU codes)."""
    return [
        DevUser("90-B3-D5-1F-30-01-00-00", "supplier-1", "02"),
        DevUser("90-B3-D5-1F-30-02-00-00", "network-operator", "03"),
        DevUser("90-B3-D5-1F-30-03-00-00", "supplier-2", "02"),
        DevUser("90-B3-D5-1F-30-01-00-08", "load-controller", "08"),
        DevUser(DCC_EUI64, "access-control-broker", "04"),
    ]
