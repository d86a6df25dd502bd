"""`duisgw serve --log-format json|text`: how log records reach stderr.

text (the default on a terminal): `time LEVEL logger message`, as the gateway always
wrote. json (the default when stderr is not a terminal: under systemd, in a
container, piped to a file): one JSON object per line, for a log pipeline:

    {"time": "2026-12-02T09:15:02.123Z", "level": "info", "logger": "duisgw.pipeline",
     "event": "refused", "request_id": "90-B3-...:1764", "stage": "signature",
     "reason": "digest_mismatch", "detail": "..."}

`time` is RFC 3339 in UTC with milliseconds; `event` is the event name of a structured
record (gateway/core/log_fields.py) or the message of any other; the record's fields follow
as keys of their own (a field named like one of the five keys above is written as
`field_<name>`); `exception` holds a traceback when there is one.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Final, Literal, TextIO, get_args

import msgspec

from gateway.core.log_fields import FIELDS_ATTR, record_event, record_fields

LogFormat = Literal["json", "text"]
LOG_FORMATS: Final[tuple[str, ...]] = get_args(LogFormat)
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
RESERVED_KEYS: Final = frozenset({"time", "level", "logger", "event", "exception"})

_encoder = msgspec.json.Encoder(enc_hook=str)  # paths, enums, exceptions: their text


def default_log_format(stream: TextIO) -> LogFormat:
    """text on a terminal, json otherwise (journald, containers, files)."""
    try:
        return "text" if stream.isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


def rfc3339_utc(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": rfc3339_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record_event(record),
        }
        for name, value in record_fields(record).items():
            if value is not None:
                entry[f"field_{name}" if name in RESERVED_KEYS else name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return _encoder.encode(entry).decode()


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: LogFormat, level: int, stream: TextIO | None = None) -> None:
    """One handler on the root logger, in `log_format`, unless one is there already
    (a test runner's, or an embedding program's)."""
    root = logging.getLogger()
    if root.handlers:
        return
    root.setLevel(level)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)


def json_line(level: str, logger: str, event: str, **fields: object) -> str:
    """A record-shaped JSON line for what is written before logging can be used
    (the one-line start-up failures)."""
    record = logging.LogRecord(logger, logging.getLevelName(level.upper()), "", 0, event, (), None)
    setattr(record, FIELDS_ATTR, fields)
    return JsonFormatter().format(record)
