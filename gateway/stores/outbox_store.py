"""What delivery, the life cycle and the admin API need from an outbox, whichever backend
holds it: `Outbox` (SQLite, one node: gateway/stores/outbox.py) or `RedisOutbox` (Redis
Streams, every node: gateway/stores/outbox_redis.py).

The synchronous reads (`pending_count`, `users_with_pending`, `dead_letter_count`) answer
from memory without I/O: on SQLite the whole outbox, on Redis the partitions this node
delivers (`pending_count()` with no User and `dead_letter_count` there: the deployment's,
refreshed about once a second).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from gateway.stores.outbox import MAX_LIST_ROWS, OutboundMessage
from gateway.stores.outbox_sqlite import StoredMessage


class OutboxStore(Protocol):
    def pending_count(self, user_id: str | None = None) -> int: ...

    def dead_letter_count(self) -> int: ...

    def users_with_pending(self) -> list[str]: ...

    def watch(self, callback: Callable[[str], None]) -> AbstractContextManager[None]: ...

    async def put(self, message: OutboundMessage) -> None: ...

    async def mark_delivered(self, message_id: str) -> None: ...

    async def record_failure(self, message_id: str, error: str) -> None: ...

    async def dead_letter(self, message_id: str, error: str) -> None: ...

    async def retry_dead_letter(self, message_id: str) -> None: ...

    async def discard_dead_letter(self, message_id: str) -> None: ...

    async def purge_delivered(self, retention_seconds: float) -> int: ...

    async def next_pending(self, user_id: str) -> StoredMessage | None: ...

    async def get(self, message_id: str) -> StoredMessage | None: ...

    async def pending(
        self, user_id: str | None = None, *, after_id: int = 0, limit: int = MAX_LIST_ROWS
    ) -> list[StoredMessage]: ...

    async def dead_letters(
        self, user_id: str | None = None, *, after_id: int = 0, limit: int = MAX_LIST_ROWS
    ) -> list[StoredMessage]: ...
