"""User Roles for the SRVs whose row in the DUIS SRV matrix lists none (catalogue data).

Three of the 129 SRVs have an empty "Eligible User Roles" list in the matrix the
catalogues are derived from (../shared/duis/srv-matrix.json, equal to the DCC's own
duis-parser `duis-request-matrix.json`), in every served version:

    7.16  Limit APC Level           critical, on demand, device
    8.5   Service Opt Out           non-critical, device (CV 1 only)
    8.6   Service Opt In            non-critical, non-device (CV 8)

No public DUIS or SEC source this project holds lists who may send them (searched:
the DUIS XSDs and their comments, the matrix, the DCC's public repositories; the DUIS
text itself, SEC Appendix AD, is not among the sources). The DCC's RTDS request
templates imply a sender for each, and those are the defaults here, which the
operator may change with `[duis] extra_srv_roles` (an empty table keeps the matrix's
empty lists, so those SRVs are refused with E2):

- 7.16: the two templates (ECS47e, CV 4 to the ESME) come from the load controller
  90-B3-D5-1F-30-01-00-08, the GBCS remote party (SMKI role 08) that 6.15.1 installs
  on the ESME; DUIS has no load-controller User Role, and the default estate
  registers it as an Other User, so the default is OU.
- 8.5: the template (CS02bACBByACB, CV 1 to the ESME) comes from supplier-1, the
  import supplier: IS and GS (a supplier of either fuel).
- 8.6: the template (CV 8) comes from supplier-1: IS and GS likewise.

The roles given are added to the matrix's (which lists none), for every served
version; a variant not in a version's catalogue, or a role that is not a DUIS User
Role, is refused at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import msgspec

from mmc.catalogue import Catalogue

DUIS_USER_ROLES: Final = frozenset({"IS", "ES", "GS", "ED", "GT", "RSA", "OU"})

DEFAULT_EXTRA_SRV_ROLES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "7.16": ("OU",),
        "8.5": ("IS", "GS"),
        "8.6": ("IS", "GS"),
    }
)


class SrvRolesError(ValueError):
    """The operator's extra roles name an SRV or a role that does not exist."""


def with_extra_roles(catalogue: Catalogue, extra: Mapping[str, tuple[str, ...]]) -> Catalogue:
    """The catalogue with `extra` roles added to the SRVs it names."""
    if not extra:
        return catalogue
    srvs = dict(catalogue.srvs)
    for variant, roles in extra.items():
        srv = srvs.get(variant)
        if srv is None:
            raise SrvRolesError(
                f"duis.extra_srv_roles: no SRV {variant!r} in DUIS {catalogue.version}"
            )
        unknown = set(roles) - DUIS_USER_ROLES
        if unknown:
            raise SrvRolesError(
                f"duis.extra_srv_roles.{variant}: not DUIS User Roles: {', '.join(sorted(unknown))}"
            )
        srvs[variant] = msgspec.structs.replace(srv, roles=srv.roles | frozenset(roles))
    return msgspec.structs.replace(
        catalogue,
        srvs=srvs,
        by_body_element={srv.body_element: srv for srv in srvs.values()},
    )
