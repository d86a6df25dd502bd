"""Who can sign: Users without a usable signing certificate, at start-up and in /admin/status."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import msgspec
import pytest

from gateway.core.certstore import CertStore
from gateway.core.registry import UserRegistry
from gateway.core.trust_report import (
    ALL_VERSIONS,
    SignerChoice,
    missing_signer_lines,
    signing_readiness,
    users_without_signer,
)
from gateway.core.versions import VersionRegistry
from gateway.devkit.estate import DCC_EUI64, default_users
from gateway.stores.certfiles import load_certstore
from mmc.identifiers import Eui64
from tests.harness import dccboxed_config, default_config, running_gateway

VERSIONS = ("5.0", "5.1", "5.3", "5.4")
AT = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)  # after every Z1 role certificate expired
SUPPLIER_1 = "90-B3-D5-1F-30-01-00-00"
NETWORK = "90-B3-D5-1F-30-02-00-00"
SUPPLIER_2 = "90-B3-D5-1F-30-03-00-00"
LOAD_CONTROLLER = "90-B3-D5-1F-30-01-00-08"


def unusable(
    store: CertStore,
    users: UserRegistry,
    versions: VersionRegistry,
    at: dt.datetime,
    dcc_originator: Eui64 | None = None,
) -> dict[tuple[str, str], SignerChoice]:
    """(User ID, version or "*") -> the choice, for every listed User's unusable signer."""
    report = signing_readiness(store, users, versions, at, dcc_originator)
    found = {}
    for user in users_without_signer(report):
        dcc = user.dcc_originated
        for choice in (dcc,) if dcc is not None else user.versions:
            if not choice.usable:
                found[user.user_id, choice.version] = choice
    return found


def test_the_dcc_test_pki_leaves_these_users_unable_to_sign(shared_dir: Path) -> None:
    store = load_certstore([shared_dir / "pki" / "dccboxed"])
    versions = VersionRegistry.build(VERSIONS, {})
    missing = unusable(store, default_users(), versions, AT, DCC_EUI64)
    found = set(missing)
    assert found == {
        # 5.0 signs with role certificates: the Z1 supplier and network operator ones expired.
        (SUPPLIER_1, "5.0"),
        (NETWORK, "5.0"),
        # supplier-2 has no OU 87 and its OU 02 expired on 2025-12-22.
        *((SUPPLIER_2, v) for v in VERSIONS),
        # The load controller holds OU 08 only: no version lets a User sign with it.
        *((LOAD_CONTROLLER, v) for v in VERSIONS),
    }
    # The DCC's own EUI-64 signs with OU 89 (valid to 2118): not listed.
    assert all(user != DCC_EUI64 for user, _ in missing)
    expired = missing[SUPPLIER_2, "5.0"]
    assert expired.allowed_role_codes == ("02", "03", "7F")
    assert "expired" in (expired.problem or "")
    none = missing[SUPPLIER_2, "5.4"]
    assert none.problem == f"no digitalSignature certificate with OU 87 for {SUPPLIER_2}"
    report = signing_readiness(store, default_users(), versions, AT, DCC_EUI64)
    lines = missing_signer_lines(report)
    assert len(lines) == len(missing)  # one line per User and version
    assert any(SUPPLIER_2 in line and "DUIS 5.4" in line for line in lines)


def test_a_suspended_user_is_not_listed(shared_dir: Path) -> None:
    store = load_certstore([shared_dir / "pki" / "dccboxed"])
    versions = VersionRegistry.build(("5.4",), {})
    users = default_users()
    supplier_2 = next(u for u in users if u.user_id == SUPPLIER_2)
    suspended = msgspec.structs.replace(supplier_2, status="suspended")
    others = [u for u in users if u.user_id != SUPPLIER_2]
    registry = UserRegistry([*others, suspended])
    # Its requests get E3 whatever it signs with: the report still shows its signers.
    assert (SUPPLIER_2, "5.4") not in unusable(store, registry, versions, AT)
    row = next(
        u for u in signing_readiness(store, registry, versions, AT) if u.user_id == SUPPLIER_2
    )
    assert not row.versions[0].usable and not row.missing_signer


def test_without_its_xml_signing_certificate_the_dcc_is_listed(shared_dir: Path) -> None:
    store = load_certstore([shared_dir / "pki" / "dccboxed"])
    versions = VersionRegistry.build(("5.4",), {})
    users = default_users()
    late = dt.datetime(2118, 6, 1, tzinfo=dt.UTC)  # the OU 89 certificate ends in 2118
    # Not originating: the DCC's entry has no User Role and sends nothing.
    assert not [key for key in unusable(store, users, versions, late) if key[0] == DCC_EUI64]
    assert not [
        key for key in unusable(store, users, versions, AT, DCC_EUI64) if key[0] == DCC_EUI64
    ]
    rows = unusable(store, users, versions, late, DCC_EUI64)
    assert [key for key in rows if key[0] == DCC_EUI64] == [(DCC_EUI64, ALL_VERSIONS)]
    dcc = rows[DCC_EUI64, ALL_VERSIONS]
    assert dcc.allowed_role_codes == ("89",)
    assert "expired" in (dcc.problem or "")
    report = signing_readiness(store, users, versions, late, DCC_EUI64)
    assert any(
        DCC_EUI64 in line and "DCC-originated requests (OU 89)" in line
        for line in missing_signer_lines(report)
    )


async def test_status_and_start_up_name_the_users_who_cannot_sign(
    tmp_path: Path, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duisgw.signers")
    config = dccboxed_config(tmp_path, shared_dir)
    async with running_gateway(config, [shared_dir / "pki" / "dccboxed"]) as gw:
        status = (await gw.admin.get("/admin/status")).json()
        missing = (await gw.admin.get("/admin/trust/signers?missing=true")).json()
    assert missing == status["users_without_signer"]  # the console's list is the same
    listed = {
        (u["user_id"], v["version"])
        for u in status["users_without_signer"]
        for v in u["versions"]
        if not v["usable"]
    }
    assert (SUPPLIER_2, "5.4") in listed and (LOAD_CONTROLLER, "5.1") in listed
    assert all(user != DCC_EUI64 for user, _ in listed)
    logged = [r.getMessage() for r in caplog.records if r.name == "duisgw.signers"]
    assert len(logged) == len(listed)  # one line per problem
    assert any(SUPPLIER_2 in line and "DUIS 5.4" in line for line in logged)


async def test_the_embedded_default_lets_every_user_sign(tmp_path: Path) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        status = (await gw.admin.get("/admin/status")).json()
    assert status["users_without_signer"] == []
