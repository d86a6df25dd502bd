"""Which Users can sign a request the gateway will accept, per served DUIS version.

A pure function over the certificate store, the User registry and the versions'
signer rules (each version's catalogue lists the certificate OU codes that may sign
a User's request: role certificates under 5.0, the User XML-signing certificate,
OU 87, from 5.1). A User is ready for a version when one of its certificates passes
exactly the check the pipeline makes on every request
(`certstore.check_signing_certificate`) at the given time. `duisgw config check`
lists the Users who are not, and why, so an operator hears about an expired or
missing certificate before the User's requests are refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import msgspec

from gateway.certstore import CertificateError, CertStore, OrgCertificate, check_signing_certificate
from gateway.registry import User


class VersionReadiness(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    usable: bool
    # The certificate the User would sign with (the longest-lived that passes).
    serial: str | None = None
    role_code: str | None = None
    not_after: dt.datetime | None = None
    # Why none passes: the fault of the candidate that came closest, or "no certificate".
    problem: str | None = None


class UserReadiness(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    party: str
    versions: tuple[VersionReadiness, ...]

    @property
    def ready_everywhere(self) -> bool:
        return all(v.usable for v in self.versions)


# How close a refused candidate came: a certificate of the right kind that is merely
# out of date says more than a key-agreement certificate.
_CLOSENESS = {
    "revoked": 0,
    "expired": 0,
    "not_yet_valid": 0,
    "missing_policy": 1,
    "not_p256": 1,
    "eui_mismatch": 2,
    "wrong_role_for_version": 3,
    "wrong_key_usage": 4,
    "key_agreement_certificate": 4,
}


def signing_readiness(
    store: CertStore,
    users: Iterable[User],
    signer_roles: Mapping[str, frozenset[str]],
    at: dt.datetime,
) -> list[UserReadiness]:
    """One entry per User that may send requests (has a role, not withdrawn), with one
    verdict per version in `signer_roles` (version -> OU codes that may sign)."""
    by_eui: dict[str, list[OrgCertificate]] = {}
    for cert in store:
        by_eui.setdefault(cert.eui64, []).append(cert)
    readiness = []
    for user in users:
        if not user.roles or user.status == "withdrawn":
            continue
        own = sorted(by_eui.get(user.user_id, ()), key=lambda c: c.not_after, reverse=True)
        verdicts = tuple(
            _verdict(store, user.user_id, version, roles, own, at)
            for version, roles in signer_roles.items()
        )
        readiness.append(UserReadiness(user_id=user.user_id, party=user.party, versions=verdicts))
    return readiness


def _verdict(
    store: CertStore,
    user_id: str,
    version: str,
    roles: frozenset[str],
    candidates: list[OrgCertificate],
    at: dt.datetime,
) -> VersionReadiness:
    closest: CertificateError | None = None
    for cert in candidates:
        try:
            check_signing_certificate(
                cert, at=at, signer_eui64=user_id, allowed_role_codes=roles, store=store
            )
        except CertificateError as exc:
            if closest is None or _closeness(exc) < _closeness(closest):
                closest = exc
            continue
        return VersionReadiness(
            version=version,
            usable=True,
            serial=str(cert.serial),
            role_code=cert.role_code,
            not_after=cert.not_after,
        )
    allowed = ", ".join(sorted(roles))
    if closest is None:
        problem = f"no certificate for {user_id} (needs OU {allowed})"
    elif _closeness(closest) >= _closeness_of("wrong_role_for_version"):
        held = ", ".join(sorted({f"{c.role_code} {c.key_usage}" for c in candidates}))
        problem = f"no digital-signing certificate with OU {allowed} (holds: {held})"
    else:
        problem = f"{closest.reason}: {closest.detail}"
    return VersionReadiness(version=version, usable=False, problem=problem)


def _closeness(error: CertificateError) -> int:
    return _closeness_of(error.reason)


def _closeness_of(reason: str) -> int:
    return _CLOSENESS.get(reason, len(_CLOSENESS))
