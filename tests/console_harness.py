"""What the operator console's browser tests share: signing in, a held request, its answer.

The browser itself is the session's `browser` fixture (tests/conftest.py, bench/browser.py);
these steps run on its thread (`login`) or on trio beside the gateway (`hold_one`,
`inbox_answer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.harness import Gateway, response_code

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, under CI, fails) with the reason
    expect = None

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
HOLD_AFTER_ONE = f"""
[[rules]]
user_id = "{SUPPLIER}"
srv = "4.1.1"
window_seconds = 3600
limit = 1
kind = "user_quarantine"
"""
TOML = {"content-type": "application/toml"}
ANSWER_TIMEOUT_SECONDS = 20.0


def login(page: Any, gw: Gateway) -> None:
    page.goto(gw.admin_url + "/console/")
    page.get_by_label("Admin token").fill(gw.admin_token)
    page.get_by_role("button", name="Open the console").click()
    expect(page.locator("#page-overview")).to_be_visible()


async def hold_one(gw: Gateway, shared: Path) -> str:
    """Send two reads under a limit of one: the second is held; its RequestID."""
    read = (shared / ECS17B).read_bytes()
    for _ in range(2):
        assert response_code((await gw.send(read)).content) == "I99"
    [held] = (await gw.admin.get("/admin/quarantine")).json()
    return str(held["request_id"])


async def inbox_answer(gw: Gateway, request_id: str) -> dict[str, Any]:
    """The Service Response for `request_id` once it reached the User's (dev) inbox."""
    with trio.fail_after(ANSWER_TIMEOUT_SECONDS):
        while True:
            inbox = (await gw.admin.get(f"/inbox?user_id={SUPPLIER}")).json()
            for message in inbox:
                if message["request_id"] == request_id and message["kind"] == "response":
                    return dict(message)
            await trio.sleep(0.05)
