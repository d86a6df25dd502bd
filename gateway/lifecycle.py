"""The asynchronous life cycle: accepted CV 1/3/5/7 work -> device -> signed Service
Response -> outbox -> the User's Receive Response URL."""

from __future__ import annotations

import logging

import trio

from gateway.dispatch import AsyncJob
from gateway.state import GatewayState
from gateway.transport import DeviceTransport

log = logging.getLogger("duisgw.lifecycle")

ASYNC_QUEUE_SIZE = 10_000
ASYNC_WORKERS = 256


class Lifecycle:
    def __init__(self, state: GatewayState, transport: DeviceTransport) -> None:
        self._state = state
        self._transport = transport
        self._send, self._receive = trio.open_memory_channel[AsyncJob](ASYNC_QUEUE_SIZE)

    async def submit(self, job: AsyncJob) -> None:
        await self._send.send(job)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(ASYNC_WORKERS):
                nursery.start_soon(self._worker)
            task_status.started()

    async def _worker(self) -> None:
        async for job in self._receive:
            reply = await self._transport.send(job.command)
            log.info("device answered request_id=%s outcome=%s", job.command.request_id,
                     reply.outcome)
