"""The dev inbox: a Receive Response URL for the embedded default's Users.

The DCC's test environment gives Users somewhere to receive asynchronous
responses and alerts; so does the embedded default. A User whose `response_url`
is the symbolic `dev-inbox` is delivered to `POST /inbox/<User ID>` on this
gateway's own admin listener, wherever `[admin]` puts it (resolved at each
delivery, so moving the admin port moves the inbox). It is mounted only when
`[dev_inbox] enabled = true` (the embedded default's config says so) and, like
every admin route, takes the admin token: the gateway's delivery sends it,
so nobody else can post a forged `I0` into a User's inbox.

What arrives is kept in memory, bounded in bytes, count and age (oldest
dropped first), and journaled to `inbox.jsonl` (0600), which is rewritten with
just the kept messages whenever it grows past `max_total_bytes` more than
them, so the file stays within about twice the cap. A restart reloads it.
For development only: production Users run their own endpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import deque
from pathlib import Path
from typing import Final

import msgspec
import trio

from gateway.core.clock import Clock
from gateway.core.config import DevInboxConfig
from gateway.edge import admin_params as check
from gateway.edge.admin_auth import media_type
from gateway.edge.admin_params import parse_query
from gateway.edge.http import HttpRequest
from gateway.stores.private_files import append_private, write_private_atomically

log = logging.getLogger("duisgw.inbox")

INBOX_FILE: Final = "inbox.jsonl"
MAX_INBOX_MESSAGES: Final = 1000
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


class MessageTooLarge(ValueError):
    """A posted message is over `max_message_bytes` (answered 413)."""


class InboxBuffer:
    """Sans-IO: the kept messages, oldest first, within the byte, count and age caps."""

    def __init__(self, config: DevInboxConfig) -> None:
        self._config = config
        self._items: deque[tuple[InboxMessage, int]] = deque()
        self.total_bytes = 0

    def add(self, message: InboxMessage, size: int, now: dt.datetime) -> None:
        self._items.append((message, size))
        self.total_bytes += size
        self.prune(now)

    def prune(self, now: dt.datetime) -> None:
        oldest = now - dt.timedelta(seconds=self._config.max_age_seconds)
        while self._items and (
            self.total_bytes > self._config.max_total_bytes
            or len(self._items) > MAX_INBOX_MESSAGES
            or self._items[0][0].received_at < oldest
        ):
            _, size = self._items.popleft()
            self.total_bytes -= size

    def messages(self) -> list[InboxMessage]:
        return [message for message, _ in self._items]


class Inbox:
    """The buffer and its journal file. Create at start-up (it reads the file)."""

    def __init__(self, path: Path, config: DevInboxConfig, now: dt.datetime) -> None:
        self._path = path
        self._config = config
        self._buffer = InboxBuffer(config)
        self._encoder = msgspec.json.Encoder()
        self._lock = trio.Lock()  # one file operation at a time
        self._load(now)
        data = self._kept_lines()  # start with a file of just the kept messages
        write_private_atomically(path, data)
        self._file_bytes = len(data)

    async def receive(self, user_id: str, message_id: str, body: bytes, now: dt.datetime) -> None:
        if len(body) > self._config.max_message_bytes:
            raise MessageTooLarge(
                f"message of {len(body)} bytes; the dev inbox takes at most "
                f"{self._config.max_message_bytes} ([dev_inbox] max_message_bytes)"
            )
        message = _message(user_id, message_id, body, now)
        line = self._encoder.encode(message) + b"\n"
        async with self._lock:  # the buffer and the file change together, in order
            self._buffer.add(message, len(line), now)
            self._file_bytes += len(line)
            if self._file_bytes > self._buffer.total_bytes + self._config.max_total_bytes:
                data = self._kept_lines()
                await trio.to_thread.run_sync(write_private_atomically, self._path, data)
                self._file_bytes = len(data)
            else:
                await trio.to_thread.run_sync(append_private, self._path, line)

    def messages(self, user_id: str | None, now: dt.datetime) -> list[InboxMessage]:
        self._buffer.prune(now)
        return [m for m in self._buffer.messages() if user_id is None or m.user_id == user_id]

    def _kept_lines(self) -> bytes:
        return b"".join(self._encoder.encode(m) + b"\n" for m in self._buffer.messages())

    def _load(self, now: dt.datetime) -> None:
        if not self._path.exists():
            return
        decoder = msgspec.json.Decoder(InboxMessage)
        skipped = 0
        with self._path.open("rb") as file:  # line by line: the buffer bounds what is kept
            for line in file:
                try:
                    message = decoder.decode(line)
                except msgspec.DecodeError:
                    skipped += 1
                    continue
                self._buffer.add(message, len(line), now)
        if skipped:
            log.info("dev inbox: %d unreadable lines of %s dropped", skipped, self._path.name)


JSON: Final = b"application/json"
TEXT: Final = b"text/plain; charset=utf-8"
XML_TYPES: Final = (b"application/xml", b"text/xml")


class InboxRoutes:
    """`/inbox` on the admin listener, mounted there by the composition root.

    POST /inbox/<User ID>   what the gateway's delivery posts (X-DUIS-Message-ID)
    GET  /inbox[?user_id=]  what arrived, oldest first (`duisgw inbox`)
    """

    def __init__(self, inbox: Inbox, clock: Clock) -> None:
        self._inbox = inbox
        self._clock = clock

    async def __call__(
        self, method: str, rest: list[str], query: str, request: HttpRequest
    ) -> tuple[int, bytes, bytes]:
        if method == "POST" and len(rest) == 1:
            parse_query(query, ())
            if media_type(request) not in XML_TYPES:
                return 415, _json({"error": "the dev inbox takes application/xml"}), JSON
            user_id = check.user_id(rest[0])
            message_id = (request.header(b"x-duis-message-id") or b"-").decode("ascii", "replace")
            try:
                await self._inbox.receive(
                    user_id, check.message_id(message_id), request.body, self._clock.now()
                )
            except MessageTooLarge as exc:
                log.info("dev inbox refused a message for %s: %s", user_id, exc)
                return 413, _json({"error": str(exc)}), JSON
            return 200, b"", TEXT
        if method == "GET" and not rest:
            params = parse_query(query, ("user_id",))
            user = check.user_id(params["user_id"]) if "user_id" in params else None
            return 200, _json(self._inbox.messages(user, self._clock.now())), JSON
        return 404, b"unknown inbox path\n", TEXT


def _json(value: object) -> bytes:
    return msgspec.json.encode(value)


def _message(user_id: str, message_id: str, body: bytes, now: dt.datetime) -> InboxMessage:
    code = _CODE.search(body)
    request_id = _REQUEST_ID.search(body)
    return InboxMessage(
        user_id=user_id,
        message_id=message_id,
        received_at=now,
        kind="alert" if b"DCCAlertMessage" in body or b"DeviceAlertMessage" in body else "response",
        response_code=code.group(1).decode() if code else None,
        request_id=request_id.group(1).decode() if request_id else None,
        xml=body.decode("utf-8", "replace"),
    )
