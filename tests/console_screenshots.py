"""Screenshots of each operator console page: `python -m tests.console_screenshots`.

A checkout-only tool beside the tests (it drives the same in-process gateway as the
browser tests, tests/harness.py): bench is installed and must not import tests.

Starts a gateway on the embedded default (in a temporary directory, ports chosen by
the system) with some life in it: threshold rules set at run time, requests held in
quarantine, one User whose endpoint turns answers away (dead letters, then retries),
a steady trickle of traffic with a few refusals. Then Debian's chromium, driven by
Playwright, opens each page with the admin token and saves `docs/console-<page>.png`.

Needs the test extras (playwright) and `/usr/bin/chromium`; reads request templates
from ../shared (the DCC's public test data), like the README's examples.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Final

import msgspec
import trio

from bench.browser import BrowserThread, browser_unavailable
from bench.receiver import Receiver, Seen
from gateway.core.config import DeliveryConfig
from gateway.devkit.estate import DEFAULT_USERS_TOML
from tests.harness import Gateway, default_config, running_gateway, set_response_url

PAGES: Final = ("overview", "quarantine", "thresholds", "deliveries", "trust")
SUPPLIER: Final = "90-B3-D5-1F-30-01-00-00"
ECS17B: Final = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
INVENTORY: Final = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
RULES_FILE: Final = """# DCC-set: a ceiling on every User ID's total
[[rules]]
user_id = "*"
srv = "*"
window_seconds = 3600
limit = 5000
kind = "dcc_quarantine"
"""
RUN_TIME_RULES: Final = (
    RULES_FILE
    + f"""
# supplier-1's campaign cap on 4.1.1 reads
[[rules]]
user_id = "{SUPPLIER}"
srv = "4.1.1"
window_seconds = 3600
limit = 2
kind = "user_quarantine"

[[rules]]
user_id = "*"
srv = "8.2"
window_seconds = 60
limit = 600
kind = "warning"

[[attribute_limits]]
srv = "1.1.1"
attribute = "price"
min = 0
max = 100000
"""
)
REFUSED_MESSAGES: Final = 2  # the User's endpoint answers 404 to the first ones: dead letters
TRAFFIC_SECONDS: Final = 6.0
TRAFFIC_INTERVAL_SECONDS: Final = 0.05
SETTLE_SECONDS: Final = 1.0  # for deliveries in flight to land before a page is taken


def receiver_status(seen: Seen, counts: dict[str, int]) -> int:
    """404 for the first messages (dead letters at once), then 503 (kept, retried)."""
    counts["seen"] = counts.get("seen", 0) + 1
    return 404 if counts["seen"] <= REFUSED_MESSAGES else 503


async def populate(gw: Gateway, shared: Path) -> None:
    rules = await gw.admin.put(
        "/admin/thresholds",
        content=RUN_TIME_RULES.encode(),
        headers={"content-type": "application/toml"},
    )
    rules.raise_for_status()
    read = (shared / ECS17B).read_bytes()
    for _ in range(5):  # two answered, three held
        (await gw.send(read)).raise_for_status()


async def traffic(gw: Gateway, shared: Path) -> None:
    """A steady trickle: inventory reads, and now and then a request with a broken signature."""
    inventory = (shared / INVENTORY).read_bytes()
    sent = 0
    with trio.move_on_after(TRAFFIC_SECONDS):
        while True:
            await gw.send(inventory)
            sent += 1
            if sent % 10 == 0:
                await gw.post("/api/v1/serviceD", inventory)  # unsigned template: refused
            await trio.sleep(TRAFFIC_INTERVAL_SECONDS)


async def capture(browser: BrowserThread, gw: Gateway, shared: Path, out: Path) -> None:
    async with browser.page() as page:

        def login() -> None:
            page.goto(gw.admin_url + "/console/")
            page.fill("#token", gw.admin_token)
            page.click("button[type=submit]")
            page.wait_for_selector("#card-rate")

        await browser.call(login)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(traffic, gw, shared)
            await trio.sleep(TRAFFIC_SECONDS / 2)  # two refreshes into the trickle
            await browser.call(lambda: page.screenshot(path=str(out / "console-overview.png")))

        def quarantine() -> None:
            page.click("nav a[href='#quarantine']")
            page.click("#quarantine-list tbody tr:first-child button")
            page.wait_for_selector("#quarantine-detail:not([hidden])")
            page.screenshot(path=str(out / "console-quarantine.png"), full_page=True)

        def other(name: str, ready: str) -> None:
            page.click(f"nav a[href='#{name}']")
            page.wait_for_selector(ready)
            page.screenshot(path=str(out / f"console-{name}.png"), full_page=True)

        await browser.call(quarantine)
        await browser.call(other, "thresholds", "#thresholds-audit table")
        await trio.sleep(SETTLE_SECONDS)
        await browser.call(other, "deliveries", "#deliveries-dead table")
        await browser.call(other, "trust", "#trust-certificates table")


async def main(shared: Path, out: Path) -> None:
    counts: dict[str, int] = {}
    receiver = Receiver(status_for=lambda seen: receiver_status(seen, counts))
    browser = BrowserThread()
    await trio.to_thread.run_sync(browser.start)
    try:
        with tempfile.TemporaryDirectory(prefix="duisgw-console-") as scratch:
            state = Path(scratch)
            async with trio.open_nursery() as nursery:
                port = await nursery.start(receiver.serve)
                config = default_config(state)
                users = state / "users-console.toml"
                users.write_text(
                    set_response_url(
                        DEFAULT_USERS_TOML, SUPPLIER, f"http://127.0.0.1:{port}/supplier-1"
                    )
                )
                rules = state / "rules.toml"
                rules.write_text(RULES_FILE)
                config = msgspec.structs.replace(
                    config,
                    registry=msgspec.structs.replace(config.registry, users_file=str(users)),
                    thresholds=msgspec.structs.replace(config.thresholds, rules_file=str(rules)),
                    delivery=DeliveryConfig(backoff_base_seconds=30.0, max_attempts=5),
                )
                async with running_gateway(config, [state / "pki"]) as gw:
                    await populate(gw, shared)
                    await capture(browser, gw, shared, out)
                nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(browser.close)


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    missing = browser_unavailable()
    if missing is not None:
        print(f"console screenshots: {missing}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    trio.run(main, args.shared.resolve(), args.out.resolve())
    for name in PAGES:
        print(args.out / f"console-{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(run())
