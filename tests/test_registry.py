"""Users and inventory files: formats, refusals that name the culprit, policy, estate."""

from __future__ import annotations

import datetime as dt
import json
import typing
from pathlib import Path

import msgspec
import pytest

from gateway.core.registry import (
    DeviceType,
    IdPolicy,
    RegistryError,
    UserRole,
    check_policy,
    decode_inventory,
    decode_users,
    policy_violations,
)
from gateway.devkit import estate
from gateway.stores.operator_files import load_inventory, load_users
from mmc.applicability import APPLICABLE_DEVICE_TYPES, DEVICE_TYPES

USERS = """
[[users]]
user_id = "90-B3-D5-1F-30-01-00-00"
party = "supplier-1"
roles = ["IS", "GS"]
status = "active"
response_url = "https://supplier-1.example/duis"

[[users]]
user_id = "90-b3-d5-1f-30-01-00-01"
party = "supplier-1"
roles = ["ES"]
status = "suspended"
"""

INVENTORY = """
[[devices]]
device_id = "00-DB-12-34-56-78-90-A0"
device_type = "ESME"
status = "commissioned"
mpxn = "1312345678111"
chf_id = "00-DB-12-34-56-78-90-A2"

[[devices.eligibility]]  # the table form; estate.py uses inline tables
role = "IS"
user_id = "90-B3-D5-1F-30-01-00-00"
effective_from = 2015-01-01T00:00:00Z
effective_to = 2025-06-01T00:00:00Z

[[devices]]
device_id = "00-db-12-34-56-78-90-a2"
device_type = "CHF"
status = "commissioned"
han_variant = "Dual Band"
manufacturer = "106C"
model = "433100AC"
firmware_version = "9001"
"""

AT = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
U0, U1 = "90-B3-D5-1F-30-01-00-00", "90-b3-d5-1f-30-01-00-01"
A0 = "00-DB-12-34-56-78-90-A0"


def test_users_toml_round_trip_and_canonical_ids() -> None:
    registry = decode_users(USERS.encode(), fmt="toml")
    assert len(registry) == 2
    user = registry.get("90-B3-D5-1F-30-01-00-01")  # lower case in the file
    assert user is not None and user.status == "suspended" and user.roles == {"ES"}
    assert [u.user_id for u in registry.users_of("supplier-1")] == [
        "90-B3-D5-1F-30-01-00-00",
        "90-B3-D5-1F-30-01-00-01",
    ]
    assert registry.get("90-B3-D5-1F-30-09-00-00") is None


def test_inventory_toml_and_eligibility_windows() -> None:
    inventory = decode_inventory(INVENTORY.encode(), fmt="toml")
    hub = inventory.get("00-DB-12-34-56-78-90-A2")
    assert hub is not None and hub.device_type == "CHF" and hub.han_variant == "Dual Band"
    assert (hub.manufacturer, hub.model, hub.firmware_version) == ("106C", "433100AC", "9001")
    esme, user = "00-DB-12-34-56-78-90-A0", "90-B3-D5-1F-30-01-00-00"
    assert inventory.is_eligible(esme, user, frozenset({"IS"}), AT)
    assert not inventory.is_eligible(esme, user, frozenset({"ES"}), AT)
    end = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    assert not inventory.is_eligible(esme, user, frozenset({"IS"}), end)
    assert not inventory.is_eligible(
        esme, user, frozenset({"IS"}), dt.datetime(2014, 1, 1, tzinfo=dt.UTC)
    )


def test_json_files_load_like_toml(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text(
        json.dumps(
            {
                "users": [
                    {
                        "user_id": "90-B3-D5-1F-30-02-00-00",
                        "party": "dno",
                        "roles": ["ED"],
                        "status": "active",
                    }
                ]
            }
        )
    )
    inventory = tmp_path / "inventory.json"
    device = {
        "device_id": "00-DB-12-34-56-78-90-A0",
        "device_type": "ESME",
        "status": "commissioned",
        "eligibility": [
            {
                "role": "ED",
                "user_id": "90-B3-D5-1F-30-02-00-00",
                "effective_from": "2015-01-01T00:00:00Z",
            }
        ],
    }
    inventory.write_text(json.dumps({"devices": [device]}))
    assert load_users(users).get("90-B3-D5-1F-30-02-00-00") is not None
    loaded = load_inventory(inventory)
    assert loaded.is_eligible(
        "00-DB-12-34-56-78-90-A0", "90-B3-D5-1F-30-02-00-00", frozenset({"ED"}), AT
    )


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (USERS.replace('"GS"]', '"XX"]'), ["roles", U0]),
        (USERS.replace('"suspended"', '"gone"'), ["status", U1]),
        (
            USERS.replace('"90-B3-D5-1F-30-01-00-00"', '"90-B3-D5-1F-30-01-00"'),
            ["user_id", "users[0]"],
        ),
        (
            USERS.replace(
                'party = "supplier-1"\nroles = ["ES"]', 'party = "supplier-1"\nrole = ["ES"]'
            ),
            ["role", U1],
        ),
        (USERS.replace('"https://supplier-1.example/duis"', '"ftp://x"'), ["response_url"]),
        (USERS.replace("01-00-01", "01-00-00"), ["duplicate user_id 90-B3-D5-1F-30-01-00-00"]),
        ("[[users]\n", ["not valid TOML"]),
    ],
)
def test_bad_users_are_refused_naming_the_entry(text: str, needles: list[str]) -> None:
    with pytest.raises(RegistryError) as caught:
        decode_users(text.encode(), fmt="toml", source="users.toml")
    message = str(caught.value)
    assert message.startswith("users.toml: ")
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize(
    ("old", "new", "needles"),
    [
        ('device_type = "ESME"', 'device_type = "TOASTER"', ["device_type", A0]),
        ("2015-01-01T00:00:00Z", "2015-01-01T00:00:00", ["effective_from", A0]),
        ('role = "IS"', 'role = "GT"', [A0, "GT", "never eligible"]),
        ('role = "IS"', 'role = "OU"', ["never eligible"]),
        ("2025-06-01T00:00:00Z", "2014-06-01T00:00:00Z", ["effective_to is not after"]),
        (
            'chf_id = "00-DB-12-34-56-78-90-A2"',
            'chf_id = "00-DB-12-34-56-78-90-A0"',
            ["chf_id 00-DB-12-34-56-78-90-A0 is not a CHF"],
        ),
        ('"00-db-12-34-56-78-90-a2"', '"00-DB-12-34-56-78-90-A0"', ["duplicate device_id"]),
        ('mpxn = "1312345678111"', 'mpxn = "13123456781112"', ["mpxn", A0]),
        ('status = "commissioned"\nmpxn', 'state = "commissioned"\nmpxn', ["state", "A0"]),
        # The ID as the file spells it, so the operator's search finds it.
        ('"9001"', '"123456789"', ["firmware_version", "00-db-12-34-56-78-90-a2"]),
    ],
)
def test_bad_inventory_is_refused_naming_the_device(old: str, new: str, needles: list[str]) -> None:
    assert old in INVENTORY
    with pytest.raises(RegistryError) as caught:
        decode_inventory(INVENTORY.replace(old, new, 1).encode(), fmt="toml")
    for needle in needles:
        assert needle in str(caught.value)


def test_loader_refusals_for_files(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load_users(tmp_path / "missing.toml")
    with pytest.raises(RegistryError, match=r"\.toml or \.json"):
        load_users(tmp_path / "users.yaml")
    bad = tmp_path / "users.json"
    bad.write_text("{")
    with pytest.raises(RegistryError, match="not valid JSON"):
        load_users(bad)


# ---------------------------------------------------------------- one User ID per role


def _registry(*users: tuple[str, str, str, str]) -> typing.Any:
    text = "".join(
        f'[[users]]\nuser_id = "{uid}"\nparty = "{party}"\nroles = {json.dumps(roles.split())}\n'
        f'status = "{status}"\n'
        for uid, party, roles, status in users
    )
    return decode_users(text.encode(), fmt="toml")


UNTIL = IdPolicy(one_id_per_role_until=dt.date(2027, 1, 1))


def test_policy_violation_names_party_role_and_ids() -> None:
    registry = _registry(
        ("90-B3-D5-1F-30-01-00-00", "supplier-1", "IS GS", "active"),
        ("90-B3-D5-1F-30-01-00-01", "supplier-1", "IS", "active"),
        ("90-B3-D5-1F-30-02-00-00", "dno", "ED", "active"),
    )
    with pytest.raises(RegistryError) as caught:
        check_policy(registry, UNTIL, dt.date(2026, 6, 1))
    message = str(caught.value)
    for needle in (
        "supplier-1",
        "IS",
        "90-B3-D5-1F-30-01-00-00",
        "90-B3-D5-1F-30-01-00-01",
        "2027-01-01",
    ):
        assert needle in message
    assert "GS" not in message and "dno" not in message


def test_policy_allows_several_ids_after_the_end_date_or_without_one() -> None:
    registry = _registry(
        ("90-B3-D5-1F-30-01-00-00", "supplier-1", "IS", "active"),
        ("90-B3-D5-1F-30-01-00-01", "supplier-1", "IS", "active"),
    )
    check_policy(registry, UNTIL, dt.date(2027, 1, 1))  # the end date itself: rule over
    check_policy(registry, IdPolicy(), dt.date(2020, 1, 1))
    assert len(policy_violations(registry, UNTIL, dt.date(2026, 12, 31))) == 1


def test_policy_ignores_withdrawn_ids_and_other_parties() -> None:
    registry = _registry(
        ("90-B3-D5-1F-30-01-00-00", "supplier-1", "IS", "active"),
        ("90-B3-D5-1F-30-01-00-01", "supplier-1", "IS", "withdrawn"),
        ("90-B3-D5-1F-30-03-00-00", "supplier-2", "IS", "active"),
    )
    check_policy(registry, UNTIL, dt.date(2026, 1, 1))


# ---------------------------------------------------------------- the default estate


def test_default_estate_loads_and_keeps_the_policy() -> None:
    users, inventory = estate.default_users(), estate.default_inventory()
    assert len(inventory) == 8 + 2 * 11  # the home, and a hub + GPF per other variant
    hubs = {(d.han_variant, d.wan_variant) for d in inventory if d.device_type == "CHF"}
    assert hubs == {(h, w) for h in estate.HAN_VARIANTS for w in estate.WAN_VARIANTS}
    check_policy(users, UNTIL, dt.date(2026, 1, 1))
    dcc = users.get(estate.DCC_EUI64)
    assert dcc is not None and not dcc.roles
    for device in inventory:
        assert device.status == "commissioned"
        assert (device.device_type == "CHF") == (device.chf_id is None)


def test_default_estate_is_written_once(tmp_path: Path) -> None:
    users_path, inventory_path = estate.write_default_estate(tmp_path / "state")
    assert load_users(users_path).get("90-B3-D5-1F-30-02-00-00") is not None
    assert len(load_inventory(inventory_path)) == len(estate.default_inventory())
    users_path.write_text(users_path.read_text().replace("supplier-2", "supplier-two"))
    estate.write_default_estate(tmp_path / "state")
    assert "supplier-two" in users_path.read_text()  # the operator's edit survives
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_dev_users_cover_the_estate_with_role_codes() -> None:
    users = estate.default_users()
    dev = estate.dev_users()
    assert {d.eui64 for d in dev} == {u.user_id for u in users}
    codes = {d.label: d.role_code for d in dev}
    assert codes == {
        "supplier-1": "02",
        "network-operator": "03",
        "supplier-2": "02",
        "load-controller": "08",
        "access-control-broker": "04",
    }
    assert msgspec.json.decode(msgspec.json.encode(dev), type=list[estate.DevUser]) == dev


# ---------------------------------------------------------------- applicability data


def test_device_types_agree_between_registry_and_applicability() -> None:
    assert set(typing.get_args(DeviceType)) == DEVICE_TYPES
    assert set(typing.get_args(UserRole)) == {"IS", "ES", "GS", "ED", "GT", "RSA", "OU"}


def test_applicability_covers_every_srv_of_the_matrix(shared_dir: Path) -> None:
    matrix = json.loads((shared_dir / "duis" / "srv-matrix.json").read_text())
    variants = {row["Service Reference Variant"] for row in matrix}
    assert len(variants) == 129
    assert variants == set(APPLICABLE_DEVICE_TYPES)
    for row in matrix:
        types = APPLICABLE_DEVICE_TYPES[row["Service Reference Variant"]]
        assert types <= DEVICE_TYPES
        if row["Non-Device Request"] == "No":
            assert types, row["Service Reference Variant"]  # a device SRV applies to something
