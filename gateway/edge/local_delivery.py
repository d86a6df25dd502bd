"""Commands for local delivery, and the responses Users bring back (SRV 8.13): the I/O.

The decisions are gateway/core/local_commands.py; here they meet the store and the
outbox:

- `issue` (CV 2, 6): the command is kept in the local command store (durable, shared
  by every worker) before its LocalCommand goes back in a signed I0;
- `local_copy` (CV 3, 7): the signed I99 carrying the command; the life cycle has
  journaled the SM WAN send and its Service Response follows as for CV 1;
- `return_response` (8.13): the device's response is checked against the command
  issued; the signed Service Response for the ORIGINAL request (its version, its SRV,
  I0 with the device's GBCS) is stored for the User's Receive Response URL, under
  `<original RequestID>:local-response`, and only then is the command taken from the
  store and the 8.13 answered I0. A crash in between leaves the command open: the
  User's retry stores nothing twice (same message id) and takes it then.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.core.answers import Answers
from gateway.core.device import DeviceCommand
from gateway.core.local_commands import (
    NO_OPEN_LOCAL_COMMAND,
    check_returned,
    issued_record,
    returned_response,
)
from gateway.core.outcome import Acknowledge, Outcome, Verified
from gateway.core.versions import VersionRegistry
from gateway.stores.device_certfiles import DeviceSigningKeys
from gateway.stores.local_commands import LocalCommandStore
from mmc import responses
from mmc.identifiers import RequestId
from parse_correlate.integrity import Authentication

log = logging.getLogger("duisgw.local")

# Stores a signed document for a User's Receive Response URL (gateway/edge/lifecycle.py).
Deliver = Callable[[str, str, bytes, str], Awaitable[None]]


def local_response_message_id(request_id: RequestId) -> str:
    return f"{request_id}:local-response"


class LocalDelivery:
    def __init__(
        self,
        answers: Answers,
        store: LocalCommandStore,
        versions: VersionRegistry,
        deliver: Deliver,
        device_keys: DeviceSigningKeys,
        command_ttl_seconds: float,
    ) -> None:
        self._answers = answers
        self._store = store
        self._versions = versions
        self._deliver = deliver
        self._device_keys = device_keys
        self._ttl = command_ttl_seconds

    async def issue(self, request: Verified, command: DeviceCommand) -> Outcome:
        """CV 2/6: remember the command (durable), then hand it over in a signed I0."""
        record = issued_record(request, command.gbcs, self._answers.now(), self._ttl)
        await self._store.put(record)
        log.info(
            "request_id=%s srv=%s: command issued for local delivery (open until %s)",
            record.request_id,
            record.srv_variant,
            record.expires_at.isoformat(),
        )
        return self._answers.local_command(request, command.gbcs)

    def local_copy(self, request: Verified, command: DeviceCommand) -> Outcome:
        """CV 3/7: the local copy of the command the life cycle sends over the SM WAN."""
        return self._answers.local_copy(request, command.gbcs)

    async def return_response(self, request: Verified) -> Outcome:
        """8.13: the Service Response for the original request; I0 for the 8.13 itself."""
        now = self._answers.now()
        returned = returned_response(request)
        issued = await self._store.get(returned.key, now)
        device = returned.message.header.originator
        checked = check_returned(returned, issued, now, self._device_keys.get(device))
        assert issued is not None  # check_returned refused a missing one
        if checked.authentication is Authentication.NOT_AUTHENTICATED:
            log.info(
                "request_id=%s: the response from %s is not signed, or no certificate of"
                " the device is held: its signature is not checked",
                returned.key,
                device,
            )
        route = self._versions.route(issued.version, now)
        catalogue = (route or request.route).catalogue
        srv = catalogue.srvs[issued.srv_variant]
        document = self._answers.response_document(
            catalogue, returned.key, srv, "I0", responses.gbcs_payload(returned.response)
        )
        await self._deliver(
            returned.key.originator, local_response_message_id(returned.key), document, "response"
        )
        if await self._store.take(returned.key, now) is None:
            # Another 8.13 for the same command finished first; the User has its answer.
            raise Acknowledge(
                "dispatch", NO_OPEN_LOCAL_COMMAND, f"{returned.key} was returned already"
            )
        log.info(
            "request_id=%s: local command answered (%s) via %s; Service Response stored",
            returned.key,
            checked.authentication,
            request.header.request_id,
        )
        return self._answers.response(request, "I0")
