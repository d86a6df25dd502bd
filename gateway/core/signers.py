"""Who can sign: the registered Users with no usable signing certificate (sans-IO).

users.toml names no certificate: a User signs with whatever certificate the trust
store holds for its User ID (the EUI-64 in `x500UniqueIdentifier`) with a role code
its request's DUIS version allows (`Catalogue.signer_role_codes`: role certificates
under 5.0, the User XML-signing OU 87 from 5.1). A User without one for a served
version has every request of that version refused with 403 `certificate: ...`, so
the operator is told before the User is: a log line per problem at start-up and
after each reload, and the list in `GET /admin/status` (`users_without_signer`).

The decision is `check_signing_certificate`, the check every request meets, so the
report cannot disagree with the pipeline. Users with no User Role (the DCC's own
entry) send no User requests; when DCC-originated requests are accepted, the DCC's
EUI-64 needs its XML-signing certificate (OU 89) instead, under every version.
"""

from __future__ import annotations

import datetime as dt
import logging

import msgspec

from gateway.core.certstore import CertificateError, CertStore, check_signing_certificate
from gateway.core.registry import UserRegistry
from gateway.core.versions import VersionRegistry
from mmc.catalogue import DCC_XML_SIGNING_ROLE_CODES
from mmc.identifiers import Eui64

log = logging.getLogger("duisgw.signers")

ALL_VERSIONS = "*"  # the DCC's rule is the same under every version


class MissingSigner(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    party: str
    version: str  # a served DUIS version, or "*"
    allowed_role_codes: tuple[str, ...]
    problem: str

    @property
    def message(self) -> str:
        return (
            f"User {self.user_id} ({self.party}) has no usable signing certificate for DUIS "
            f"{self.version} (OU {'/'.join(self.allowed_role_codes)}): {self.problem}"
        )


def users_without_signer(
    store: CertStore,
    users: UserRegistry,
    versions: VersionRegistry,
    at: dt.datetime,
    dcc_originator: Eui64 | None = None,
) -> list[MissingSigner]:
    """Every (User, served version) with no certificate that would pass, by User ID."""
    served = []
    for version in versions.served(at.date()):
        route = versions.route(version, at)
        if route is not None:
            served.append((version, route.catalogue.signer_role_codes))
    missing = []
    for user in sorted(users, key=lambda u: u.user_id):
        if user.user_id == dcc_originator:
            rules = [(ALL_VERSIONS, DCC_XML_SIGNING_ROLE_CODES)]
        elif user.roles and user.status == "active":
            rules = served
        else:
            continue
        for version, allowed in rules:
            problem = _problem(store, user.user_id, allowed, at)
            if problem is not None:
                missing.append(
                    MissingSigner(
                        user_id=user.user_id,
                        party=user.party,
                        version=version,
                        allowed_role_codes=tuple(sorted(allowed)),
                        problem=problem,
                    )
                )
    return missing


def log_users_without_signer(
    store: CertStore,
    users: UserRegistry,
    versions: VersionRegistry,
    at: dt.datetime,
    dcc_originator: Eui64 | None = None,
) -> None:
    """A warning per User and version the pipeline would refuse every request of."""
    for missing in users_without_signer(store, users, versions, at, dcc_originator):
        log.warning(missing.message)


def _problem(
    store: CertStore, user_id: str, allowed: frozenset[str], at: dt.datetime
) -> str | None:
    """None if some certificate passes; else what is wrong with each one found."""
    found = []
    for role in sorted(allowed):
        for cert in store.find(user_id, role, "digitalSignature"):
            try:
                check_signing_certificate(
                    cert, at=at, signer_eui64=user_id, allowed_role_codes=allowed, store=store
                )
            except CertificateError as exc:
                found.append(f"serial {cert.serial}: {exc.reason}")
                continue
            return None
    return "; ".join(found) if found else "no digitalSignature certificate for this EUI-64"
