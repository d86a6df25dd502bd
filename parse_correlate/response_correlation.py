"""Does this device response answer that request? Correlation before decoding (sans-IO).

A device answers a command with the same message code and the command's originator
counter, from the command's recipient (the device) to its originator (GBCS 4.3.1). When
the DCC sent the command on the User's behalf (future-dated or DCC-scheduled commands,
unknown remote party), the response goes to the DCC and names the User as the
supplementary remote party, with the User's counter beside it (GBCS 4.3.1.4). The SRV
then decides which use cases may answer: the use-case table lists each use case's SRVs.

The request side is either the DUIS request (RequestID originator:target:counter and
the SRV; the gateway uses the RequestID counter as the command's originator counter) or
the GBCS command itself (its header, and exactly its message code).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from mmc.identifiers import Eui64, RequestId
from parse_correlate.decode.usecases import use_case_for, use_cases_for_srv
from parse_correlate.gbcs import Cra, GbcsMessage
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_codes import message_code_name


class Mismatch(enum.StrEnum):
    """Stable reasons: logs, metrics and the gateway's DUIS answer map from these."""

    NOT_A_RESPONSE = "not_a_response"
    ORIGINATOR = "originator"
    RECIPIENT = "recipient"
    COUNTER = "counter"
    MESSAGE_CODE = "message_code"


class RequestFacts(NamedTuple):
    user: Eui64  # who sent the request: the response goes back to them
    device: Eui64  # the request's target
    counter: int  # the command's originator counter (the RequestID counter)
    srv: str | None = None  # the Service Reference Variant, when known
    message_code: int | None = None  # exactly, when correlating with the GBCS command


class CorrelationCheck(NamedTuple):
    name: str
    ok: bool
    detail: str


class ResponseMismatchError(GbcsError):
    """The response does not answer the request it was paired with."""

    def __init__(self, failed: list[CorrelationCheck]) -> None:
        super().__init__(
            "the response does not answer the request: "
            + "; ".join(f"{check.name}: {check.detail}" for check in failed)
        )
        self.reasons = [Mismatch(check.name) for check in failed]


def facts_from_request_id(request_id: RequestId, srv: str | None) -> RequestFacts:
    return RequestFacts(request_id.originator, request_id.target, request_id.counter, srv)


def facts_from_command(command: GbcsMessage) -> RequestFacts:
    header = command.header
    if header.cra is not Cra.COMMAND:
        raise GbcsError("the request side must be a GBCS command (CRA flag 1)")
    return RequestFacts(
        header.originator,
        header.recipient,
        header.originator_counter,
        None,
        header.message_code,
    )


def _describe(code: int) -> str:
    name = message_code_name(code)
    return f"0x{code:04X}" + (f" ({name})" if name else "")


def check_response(response: GbcsMessage, facts: RequestFacts) -> list[CorrelationCheck]:
    """Every check, passed or not (for reports); see `correlate_response`."""
    header = response.header
    checks = [
        CorrelationCheck(
            Mismatch.NOT_A_RESPONSE,
            header.cra is Cra.RESPONSE,
            f"CRA flag {header.cra.name.lower()}",
        ),
        CorrelationCheck(
            Mismatch.ORIGINATOR,
            header.originator == facts.device,
            f"from {header.originator}, request target {facts.device}",
        ),
    ]
    on_behalf = header.supplementary_remote_party
    to_user = header.recipient == facts.user or on_behalf == facts.user
    via = f" (via {header.recipient})" if on_behalf == facts.user else ""
    checks.append(
        CorrelationCheck(
            Mismatch.RECIPIENT,
            to_user,
            f"to {on_behalf or header.recipient}{via}, request from {facts.user}",
        )
    )
    counters = {header.originator_counter}
    if on_behalf is not None and header.supplementary_remote_party_counter is not None:
        counters.add(header.supplementary_remote_party_counter)
    checks.append(
        CorrelationCheck(
            Mismatch.COUNTER,
            facts.counter in counters,
            f"counter {'/'.join(str(c) for c in sorted(counters))}, request {facts.counter}",
        )
    )
    checks.append(_message_code_check(header.message_code, facts))
    return checks


def _message_code_check(code: int, facts: RequestFacts) -> CorrelationCheck:
    found = _describe(code)
    if facts.message_code is not None:
        wanted = _describe(facts.message_code)
        return CorrelationCheck(
            Mismatch.MESSAGE_CODE, code == facts.message_code, f"{found}, command {wanted}"
        )
    if facts.srv is None:
        return CorrelationCheck(Mismatch.MESSAGE_CODE, True, f"{found} (no SRV to check)")
    use_case = use_case_for(code)
    allowed = use_cases_for_srv(facts.srv)
    if not allowed:
        return CorrelationCheck(
            Mismatch.MESSAGE_CODE, True, f"{found} (no use case known for SRV {facts.srv})"
        )
    ok = use_case is not None and facts.srv in use_case.srvs
    names = ", ".join(u.name for u in allowed)
    return CorrelationCheck(
        Mismatch.MESSAGE_CODE, ok, f"{found}, SRV {facts.srv} is answered by {names}"
    )


def correlate_response(response: GbcsMessage, facts: RequestFacts) -> list[CorrelationCheck]:
    """The checks, all passed; ResponseMismatchError naming every failed one otherwise."""
    checks = check_response(response, facts)
    failed = [check for check in checks if not check.ok]
    if failed:
        raise ResponseMismatchError(failed)
    return checks
