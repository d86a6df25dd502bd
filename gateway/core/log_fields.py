"""Structured log events: a stable event name and its fields, on any logger.

`log_event(log, logging.INFO, "refused", request_id=..., reason=...)` logs the text
`refused request_id=... reason=...` (the form the gateway's text logs always had),
and carries the event name and the fields on the record, so the JSON formatter
(gateway/edge/log_format.py) writes them as separate keys. A template gives text logs
another wording: `log_event(log, INFO, "HTTP refusal", "HTTP refusal %(status)d from
%(peer)s", status=413, peer=...)`.

Fields hold identifiers and reasons (RequestID, certificate serial, stage, peer
address), never message content or key material.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

# Attribute names on the LogRecord; prefixed so they never collide with logging's own.
EVENT_ATTR: Final = "duisgw_event"
FIELDS_ATTR: Final = "duisgw_fields"
MISSING_TEXT: Final = "-"  # how a None field reads in a text log line


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    template: str | None = None,
    /,
    *,
    exc_info: bool = False,
    **fields: object,
) -> None:
    """Log `event` with `fields`: text from `template` (default `event k=v ...`)."""
    if not logger.isEnabledFor(level):
        return
    if template is None:
        template = event + "".join(f" {name}=%({name})s" for name in fields)
    extra = {EVENT_ATTR: event, FIELDS_ATTR: fields}
    text_values = {k: MISSING_TEXT if v is None else v for k, v in fields.items()}
    if text_values:
        # A single mapping argument: logging formats `template % text_values` lazily.
        logger.log(level, template, text_values, extra=extra, exc_info=exc_info, stacklevel=2)
    else:
        logger.log(level, template, extra=extra, exc_info=exc_info, stacklevel=2)


def record_event(record: logging.LogRecord) -> str:
    """The event name of a structured record; the formatted message of any other."""
    event = getattr(record, EVENT_ATTR, None)
    return event if isinstance(event, str) else record.getMessage()


def record_fields(record: logging.LogRecord) -> Mapping[str, object]:
    """The fields a structured record carries (empty for any other record)."""
    fields = getattr(record, FIELDS_ATTR, None)
    return fields if isinstance(fields, Mapping) else {}
