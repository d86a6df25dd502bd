"""What the trust store and the User registry add up to, now: a pure report.

Two views over the live snapshots, with no I/O (the admin listener shows them,
and a start-up report can print them):

- `certificate_rows`: every Organisation certificate with its identity, validity
  and trust, and whether it is usable today.
- `signing_readiness`: for every User and every DUIS version served today, the
  certificate it would sign a request with under that version's signer rule
  (`Catalogue.signer_role_codes`), or why it has none. A User listed without a
  usable certificate for a version gets every request of that version refused
  with 403 `certificate: ...`.

The decision is `check_signing_certificate`, the same check the pipeline makes
on every request, so the report cannot disagree with what requests will meet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from gateway.core.certstore import (
    CertificateError,
    CertStore,
    KeyUsageName,
    OrgCertificate,
    Trust,
    check_signing_certificate,
)
from gateway.core.registry import User, UserRegistry
from gateway.core.versions import VersionRegistry

# Subject OU role codes of SMKI Organisation certificates.
ROLE_NAMES: Final = {
    "01": "recovery",
    "02": "supplier",
    "03": "network operator",
    "04": "access control broker",
    "05": "transitional CoS",
    "06": "WAN provider",
    "07": "issuing CA",
    "08": "load controller",
    "7F": "other user",
    "87": "User XML signing",
    "89": "DCC XML signing",
}

Validity = Literal["valid", "expired", "not_yet_valid", "revoked"]


class CertificateRow(msgspec.Struct, frozen=True, kw_only=True):
    subject_eui64: str
    role_code: str
    role_name: str
    key_usage: KeyUsageName
    serial: str  # decimal text: SMKI serials are up to 128 bits, beyond a JSON number
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    trust: Trust  # "pinned" (listed by the operator) or "chained" (to an anchor)
    revoked: bool
    validity: Validity
    file: str  # the file name only: no directory layout is shown


class SignerChoice(msgspec.Struct, frozen=True, kw_only=True):
    """One User under one DUIS version: the certificate it can sign with, or why not."""

    version: str
    allowed_role_codes: tuple[str, ...]
    usable: bool
    serial: str | None = None  # of the certificate that would verify, longest-lived first
    role_code: str | None = None
    not_after: dt.datetime | None = None
    problem: str | None = None  # when not usable: what is missing or wrong


class UserSigning(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    party: str
    status: str
    roles: tuple[str, ...]
    versions: tuple[SignerChoice, ...]
    # It may send requests (it has a DUIS role) and some served version has no usable
    # signer for it: every request of that version would be refused.
    missing_signer: bool


def _user_signing(
    user: User, served: list[tuple[str, frozenset[str]]], store: CertStore, at: dt.datetime
) -> UserSigning:
    choices = tuple(signer_choice(store, user.user_id, v, allowed, at) for v, allowed in served)
    return UserSigning(
        user_id=user.user_id,
        party=user.party,
        status=user.status,
        roles=tuple(sorted(user.roles)),
        versions=choices,
        missing_signer=bool(user.roles) and not all(choice.usable for choice in choices),
    )


def validity(cert: OrgCertificate, store: CertStore, at: dt.datetime) -> Validity:
    if store.is_revoked(cert):
        return "revoked"
    if at < cert.not_before:
        return "not_yet_valid"
    if at > cert.not_after:
        return "expired"
    return "valid"


def certificate_rows(store: CertStore, at: dt.datetime) -> list[CertificateRow]:
    """Every certificate in the store, by subject EUI-64, role, usage, then expiry."""
    rows = [
        CertificateRow(
            subject_eui64=cert.eui64,
            role_code=cert.role_code,
            role_name=ROLE_NAMES.get(cert.role_code, "unknown"),
            key_usage=cert.key_usage,
            serial=str(cert.serial),
            issuer=cert.issuer,
            not_before=cert.not_before,
            not_after=cert.not_after,
            trust=cert.trust,
            revoked=store.is_revoked(cert),
            validity=validity(cert, store, at),
            file=cert.path.name,
        )
        for cert in store
    ]
    rows.sort(key=lambda r: (r.subject_eui64, r.role_code, r.key_usage, r.not_after))
    return rows


def signer_choice(
    store: CertStore, user_id: str, version: str, allowed: frozenset[str], at: dt.datetime
) -> SignerChoice:
    """The certificate `user_id` can sign a request of `version` with at `at`, or why not."""
    problems: list[str] = []
    for role in sorted(allowed):
        for cert in store.find(user_id, role, "digitalSignature"):
            try:
                check_signing_certificate(
                    cert, at=at, signer_eui64=user_id, allowed_role_codes=allowed, store=store
                )
            except CertificateError as exc:
                problems.append(f"serial {cert.serial} (OU {cert.role_code}): {exc}")
                continue
            return SignerChoice(
                version=version,
                allowed_role_codes=tuple(sorted(allowed)),
                usable=True,
                serial=str(cert.serial),
                role_code=cert.role_code,
                not_after=cert.not_after,
            )
    if not problems:
        wanted = " or ".join(f"OU {r}" for r in sorted(allowed))
        problems.append(f"no digitalSignature certificate with {wanted} for {user_id}")
    return SignerChoice(
        version=version,
        allowed_role_codes=tuple(sorted(allowed)),
        usable=False,
        problem="; ".join(problems),
    )


def signing_readiness(
    store: CertStore, registry: UserRegistry, versions: VersionRegistry, at: dt.datetime
) -> list[UserSigning]:
    """Every User, with its signer for each version served at `at`, by User ID."""
    served = []
    for version in versions.served(at.date()):
        route = versions.route(version, at)
        if route is not None:
            served.append((version, route.catalogue.signer_role_codes))
    return [_user_signing(u, served, store, at) for u in sorted(registry, key=lambda u: u.user_id)]


def users_without_signer(report: Iterable[UserSigning]) -> list[UserSigning]:
    """The Users some served version would refuse every request from.

    A User with no DUIS role (the DCC's own ID) sends no requests and is never listed.
    """
    return [user for user in report if user.missing_signer]
