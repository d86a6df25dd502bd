"""Who can sign: Users without a usable signing certificate, at start-up and in /admin/status."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from gateway.core.signers import users_without_signer
from gateway.core.versions import VersionRegistry
from gateway.devkit.estate import DCC_EUI64, default_users
from gateway.stores.certfiles import load_certstore
from tests.harness import dccboxed_config, default_config, running_gateway

VERSIONS = ("5.0", "5.1", "5.3", "5.4")
AT = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)  # after every Z1 role certificate expired
SUPPLIER_1 = "90-B3-D5-1F-30-01-00-00"
NETWORK = "90-B3-D5-1F-30-02-00-00"
SUPPLIER_2 = "90-B3-D5-1F-30-03-00-00"
LOAD_CONTROLLER = "90-B3-D5-1F-30-01-00-08"


def test_the_dcc_test_pki_leaves_these_users_unable_to_sign(shared_dir: Path) -> None:
    store = load_certstore([shared_dir / "pki" / "dccboxed"])
    versions = VersionRegistry.build(VERSIONS, {})
    missing = users_without_signer(store, default_users(), versions, AT, DCC_EUI64)
    found = {(m.user_id, m.version) for m in missing}
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
    assert all(m.user_id != DCC_EUI64 for m in missing)
    [expired] = [m for m in missing if (m.user_id, m.version) == (SUPPLIER_2, "5.0")]
    assert expired.allowed_role_codes == ("02", "03", "7F")
    assert "expired" in expired.problem
    [none] = [m for m in missing if (m.user_id, m.version) == (SUPPLIER_2, "5.4")]
    assert none.problem == "no digitalSignature certificate for this EUI-64"
    assert SUPPLIER_2 in none.message and "DUIS 5.4" in none.message


def test_without_its_xml_signing_certificate_the_dcc_is_listed(shared_dir: Path) -> None:
    store = load_certstore([shared_dir / "pki" / "dccboxed"])
    versions = VersionRegistry.build(("5.4",), {})
    users = default_users()
    assert not [m for m in users_without_signer(store, users, versions, AT) if m.version == "*"]
    late = dt.datetime(2118, 6, 1, tzinfo=dt.UTC)  # the OU 89 certificate ends in 2118
    [dcc] = [
        m for m in users_without_signer(store, users, versions, late, DCC_EUI64) if m.version == "*"
    ]
    assert dcc.user_id == DCC_EUI64 and dcc.allowed_role_codes == ("89",)
    assert "expired" in dcc.problem


async def test_status_and_start_up_name_the_users_who_cannot_sign(
    tmp_path: Path, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duisgw.signers")
    config = dccboxed_config(tmp_path, shared_dir)
    async with running_gateway(config, [shared_dir / "pki" / "dccboxed"]) as gw:
        status = (await gw.admin.get("/admin/status")).json()
    listed = {(m["user_id"], m["version"]) for m in status["users_without_signer"]}
    assert (SUPPLIER_2, "5.4") in listed and (LOAD_CONTROLLER, "5.1") in listed
    assert all(user != DCC_EUI64 for user, _ in listed)
    logged = [r.getMessage() for r in caplog.records if r.name == "duisgw.signers"]
    assert len(logged) == len(listed)  # one line per problem
    assert any(SUPPLIER_2 in line and "DUIS 5.4" in line for line in logged)


async def test_the_embedded_default_lets_every_user_sign(tmp_path: Path) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        status = (await gw.admin.get("/admin/status")).json()
    assert status["users_without_signer"] == []
