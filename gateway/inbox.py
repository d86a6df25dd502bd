"""The dev inbox: a Receive Response URL for the embedded default's Users.

The DCC's test environment gives Users somewhere to receive asynchronous
responses and alerts; so does the embedded default: each default User's
`response_url` points at `POST /inbox/<User ID>` on the admin listener. What
arrives is kept (the newest MAX_INBOX_MESSAGES in memory, all of them appended
to `inbox.jsonl` in the state directory) and listed by `GET /inbox` and
`duisgw inbox`. For development only: production Users run their own endpoint.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from pathlib import Path

import msgspec

MAX_INBOX_MESSAGES = 1000
_CODE = re.compile(rb"<sr:ResponseCode>([A-Z0-9]+)</sr:ResponseCode>")
_REQUEST_ID = re.compile(rb"<sr:RequestID>([^<]+)</sr:RequestID>")


class InboxMessage(msgspec.Struct, frozen=True):
    user_id: str
    message_id: str
    received_at: dt.datetime
    kind: str  # "alert" for a DCC alert, else "response"
    response_code: str | None
    request_id: str | None
    xml: str


class Inbox:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._messages: deque[InboxMessage] = deque(maxlen=MAX_INBOX_MESSAGES)
        self._encoder = msgspec.json.Encoder()

    def receive(self, user_id: str, message_id: str, body: bytes, now: dt.datetime) -> None:
        code = _CODE.search(body)
        request_id = _REQUEST_ID.search(body)
        message = InboxMessage(
            user_id=user_id,
            message_id=message_id,
            received_at=now,
            kind="alert"
            if b"DCCAlertMessage" in body or b"DeviceAlertMessage" in body
            else "response",
            response_code=code.group(1).decode() if code else None,
            request_id=request_id.group(1).decode() if request_id else None,
            xml=body.decode("utf-8", "replace"),
        )
        self._messages.append(message)
        with self._path.open("ab") as log:  # small appends on a dev-only path
            log.write(self._encoder.encode(message) + b"\n")

    def messages(self, user_id: str | None = None) -> list[InboxMessage]:
        return [m for m in self._messages if user_id is None or m.user_id == user_id]
