"""The DUIS services the Technical Specification and Install and Leave rules answer.

Dispatch (gateway/edge/dispatch.py) asks here first; None means "not ours, answer as
before". The answers themselves are decided in the core (gateway/core/techspec/) by the
service (gateway/edge/techspec_service.py), over the tables in force and the inventory
of the request's snapshot:

    12.1   Request WAN Matrix            the coverage database, in the version's shape
    12.2   Device Pre-notification       the stated version may be installed (I0 / E11)
    8.14.2 CH Status Update - No SM WAN  reactive or proactive Install and Leave (I0 / E11)
    11.1   Update Firmware               DSPUpdateFirmwareWarning naming the devices the
                                         image is not applied to; it proceeds for the rest
    8.1.1  Commission Device (CV 4)      installation validity before the Pre-Command

Until the operator loads tables, 12.2 and 8.1.1 pass and 11.1 keeps the inventory's own
checks (gateway/core/dcc_services.py). A body that lacks what the rules read (possible
only without `duis.xsd_dir`) is acknowledged with E11, as a request no command can be
built for: dispatch raises no HTTP refusal, so a released quarantined request is told
the same way.
"""

from __future__ import annotations

import logging
from typing import Final

from gateway.core.dcc_services import ServiceAnswer
from gateway.core.outcome import Acknowledge, Verified
from gateway.core.registry import Inventory
from gateway.core.techspec.bodies import BodyFactError
from gateway.core.techspec.tables import Tables
from gateway.edge.techspec_service import TechspecService
from mmc import responses

log = logging.getLogger("duisgw.techspec")

NON_DEVICE_SRVS: Final = frozenset({"12.1", "12.2", "8.14.2", "11.1"})
COMMISSION_DEVICE: Final = "8.1.1"
MALFORMED_BODY_CODE: Final = "E11"


class TechspecDispatch:
    def __init__(self, service: TechspecService) -> None:
        self._service = service

    @property
    def tables(self) -> Tables | None:
        """The tables in force (8.2 Read Inventory shows the versions they give)."""
        return self._service.tables

    async def non_device(self, request: Verified, inventory: Inventory) -> ServiceAnswer | None:
        variant = request.srv.variant
        if variant not in NON_DEVICE_SRVS:
            return None
        service = self._service
        try:
            if variant == "12.1":
                matrix = service.wan_matrix(request.route.catalogue, request.body)
                return ServiceAnswer(matrix.code, matrix.content)
            if variant == "12.2":
                notice = service.pre_notification(request.body)
                if not notice.allowed:
                    _log_refused(request, "; ".join(map(str, notice.refusals)))
                return ServiceAnswer(notice.code)
            if variant == "8.14.2":
                originator = request.header.request_id.originator
                install = await service.no_wan_install(
                    originator, request.body, inventory, duis_version=request.route.version
                )
                return ServiceAnswer(install.code)
            return self._firmware(request, inventory)
        except BodyFactError as exc:
            raise Acknowledge("dispatch", MALFORMED_BODY_CODE, f"SRV {variant}: {exc}") from None

    def commissioning(self, request: Verified, inventory: Inventory) -> ServiceAnswer | None:
        """8.1.1 at CV 4: the refusal to answer with, or None to issue the Pre-Command."""
        if request.srv.variant != COMMISSION_DEVICE:
            return None
        answer = self._service.commissioning(inventory, request.header.request_id.target)
        if answer.allowed:
            return None
        _log_refused(request, "; ".join(map(str, answer.refusals)))
        return ServiceAnswer(answer.code)

    def _firmware(self, request: Verified, inventory: Inventory) -> ServiceAnswer | None:
        decision = self._service.firmware(inventory, request.body)
        if decision is None:
            return None  # no tables: the inventory's own checks answer
        for refusal in decision.refused:
            log.info(
                "request_id=%s 11.1 not applied to %s (%s): %s",
                request.header.request_id,
                refusal.device_id,
                refusal.warning_list,
                refusal.detail,
            )
        log.info(
            "request_id=%s 11.1 proceeds for %d of %d devices",
            request.header.request_id,
            len(decision.proceed),
            len(decision.proceed) + len(decision.refused),
        )
        lists = decision.warning_lists()
        return ServiceAnswer("I0", responses.firmware_warning(lists) if lists else "")


def _log_refused(request: Verified, reasons: str) -> None:
    log.info(
        "request_id=%s srv=%s refused by the version rules: %s",
        request.header.request_id,
        request.srv.variant,
        reasons,
    )
