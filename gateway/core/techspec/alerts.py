"""The DCC alert telling a supplier that SM WAN reached a hub it left without (§1.1).

DUIS gives no DCCAlertCode or alert body whose meaning we could check for "SM WAN is now
available at this hub", so, as with the DUISVersionMismatch alert, the codes are the
operator's to set: the alert carries a `CommsHubAlert` (the hub's Device ID, the hub alert
code and the time coverage arrived) under the configured DCCAlertCode. Until both are set
the case still records the arrival, and the Install and Leave report shows the alert as
not sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from gateway.core.techspec.install_leave import WanAvailableAlert
from mmc import responses
from mmc.catalogue import Catalogue

HexCode = Annotated[str, msgspec.Meta(pattern=r"^([0-9A-Fa-f]{2}){1,4}$")]  # xs:hexBinary
DccAlertCode = Annotated[str, msgspec.Meta(pattern=r"^N[0-9]{1,3}$")]  # sr:DCCAlertCode's N-codes


class WanAlertCodes(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dcc_alert_code: DccAlertCode | None = None  # an sr:DCCAlertCode value, e.g. "N42"
    hub_alert_code: HexCode | None = None  # sr:CommsHubAlert/AlertCode

    @property
    def configured(self) -> bool:
        return self.dcc_alert_code is not None and self.hub_alert_code is not None


class AlertCodeError(ValueError):
    """The configured DCCAlertCode is not one the version's schema allows."""


def check_alert_code(catalogue: Catalogue, codes: WanAlertCodes) -> None:
    """AlertCodeError unless the configured DCCAlertCode (if any) is defined in the
    catalogue's version (checked at start-up for every version served)."""
    code = codes.dcc_alert_code
    if code is not None and code not in catalogue.value_sets.get("DCCAlertCode", frozenset()):
        raise AlertCodeError(f"DCCAlertCode {code!r} is not defined in DUIS {catalogue.version}")


def wan_available_alert(
    catalogue: Catalogue, alert: WanAvailableAlert, codes: WanAlertCodes, now: dt.datetime
) -> bytes:
    """The unsigned sr:Response carrying the alert, valid under the catalogue's version."""
    if codes.dcc_alert_code is None or codes.hub_alert_code is None:
        raise AlertCodeError("the SM WAN available alert has no configured codes")
    check_alert_code(catalogue, codes)
    content = (
        "<sr:CommsHubAlert>"
        f"<sr:CommsHubDeviceID>{alert.hub_id}</sr:CommsHubDeviceID>"
        f"<sr:AlertCode>{codes.hub_alert_code.upper()}</sr:AlertCode>"
        f"<sr:TimeStamp>{responses.timestamp(alert.available_at)}</sr:TimeStamp>"
        "</sr:CommsHubAlert>"
    )
    return responses.dcc_alert(catalogue, codes.dcc_alert_code, content, now)
