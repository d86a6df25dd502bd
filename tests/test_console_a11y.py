"""The operator console is accessible: names, keyboard, a laptop screen (issue 19).

Against a real gateway's console in headless Chromium (the session's `browser` fixture):

- every view (sign-in, overview, quarantine list, one held request and its release
  confirmation, thresholds with a rule added, deliveries with a dead letter, trust and
  registry) passes a small audit run in the page (tests/a11y_audit.js, no dependency):
  every form control, button and link has an accessible name, images have alt, one h1
  shown, <html lang>, unique ids, every id a label or ARIA relation names exists; each
  violation is reported with a selector;
- an operator signs in, opens a held request and releases it with a reason by keyboard
  alone (Tab, Shift+Tab, Enter, Space, Escape; text typed where text is asked for), the
  focused element showing an outline or shadow after every key; Escape leaves the
  confirmation without acting; the admin API then says the request is released;
- at 1366x768 no view scrolls sideways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bench.browser import BrowserThread
from tests.console_harness import HOLD_AFTER_ONE, SUPPLIER, TOML, expect, hold_one, login
from tests.harness import Gateway, default_config, running_gateway
from tests.receiver import Receiver
from tests.test_lifecycle_e2e import config_with_receiver

AUDIT_JS = (Path(__file__).parent / "a11y_audit.js").read_text()
LAPTOP = {"width": 1366, "height": 768}
KEY_PRESSES_TO_REACH = 30  # Tab presses allowed to reach one control
SETTLE_TIMEOUT_SECONDS = 20.0

# After each key: what has the focus, and does it show (a non-none outline or box-shadow)?
FOCUS_JS = """() => {
  const e = document.activeElement;
  const style = getComputedStyle(e);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  const name = e.getAttribute("aria-label") || e.textContent.trim().slice(0, 40);
  return {
    what: `${e.localName}${e.id ? "#" + e.id : ""} "${name}"`,
    shows: outline || style.boxShadow !== "none",
  };
}"""
OVERFLOW_JS = """() => {
  const s = document.scrollingElement;
  const wide = [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > s.clientWidth + 0.5)
    .slice(0, 5)
    .map((e) => `${e.localName}${e.id ? "#" + e.id : ""}${e.className ? "." + e.className : ""}`);
  return { scrollWidth: s.scrollWidth, clientWidth: s.clientWidth, wide };
}"""


def audit(page: Any, view: str) -> tuple[list[str], dict[str, int]]:
    """The audit's violations on the page as shown, each `view: rule selector: detail`,
    and how many form controls, buttons and links it looked at."""
    found = page.evaluate(AUDIT_JS)
    violations = [
        f"{view}: {v['rule']} {v['selector']}: {v['detail']}" for v in found["violations"]
    ]
    return violations, found["checked"]


def sideways_scroll(page: Any, view: str) -> list[str]:
    """`view` and what sticks out if the document scrolls horizontally, else nothing."""
    seen = page.evaluate(OVERFLOW_JS)
    if seen["scrollWidth"] <= seen["clientWidth"]:
        return []
    return [f"{view}: {seen['scrollWidth']} px wide in {seen['clientWidth']} px; {seen['wide']}"]


@asynccontextmanager
async def a_busy_gateway(tmp_path: Path, shared_dir: Path) -> AsyncIterator[Gateway]:
    """A gateway with something on every page: a held request, a threshold rule, and a
    dead letter (the User's endpoint answers 410)."""
    gone = Receiver(status_for=lambda seen: 410)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(gone.serve)
        async with running_gateway(config_with_receiver(tmp_path, port), [tmp_path / "pki"]) as gw:
            put = await gw.admin.put(
                "/admin/thresholds", content=HOLD_AFTER_ONE.encode(), headers=TOML
            )
            assert put.status_code == 200
            await hold_one(gw, shared_dir)  # the first read's answer becomes a dead letter
            with trio.fail_after(SETTLE_TIMEOUT_SECONDS):
                while not (await gw.admin.get("/admin/outbox/dead-letters")).json():
                    await trio.sleep(0.02)
            yield gw
        nursery.cancel_scope.cancel()


def every_view(page: Any, gw: Gateway, check: Callable[[str], None]) -> None:
    """Show each view of the console in turn, with its content loaded, and `check` it.
    What the audit judges (names, roles) is not used to find what is clicked."""
    page.goto(gw.admin_url + "/console/")
    expect(page.locator("#token")).to_be_focused()
    check("sign-in")
    login(page, gw)
    expect(page.locator("#card-quarantine .value")).to_have_text("1")
    check("overview")
    page.locator("#nav a[href='#quarantine']").click()
    opener = page.locator("#quarantine-list tbody tr td:first-child > *")
    expect(opener).to_have_count(1)
    check("quarantine list")
    opener.click()
    expect(page.locator("#detail-xml")).to_contain_text("<sr:Request")
    check("quarantine request")
    page.locator("#detail-release").click()
    expect(page.locator("#confirm")).to_be_visible()
    check("release confirmation")
    page.keyboard.press("Escape")
    expect(page.locator("#confirm")).to_be_hidden()
    page.locator("#nav a[href='#thresholds']").click()
    rules = page.locator("#thresholds-rules tbody tr")
    expect(rules.locator("input[name=user_id]")).to_have_value(SUPPLIER)
    expect(page.locator("#thresholds-audit table")).to_be_visible()
    check("thresholds")
    page.locator("#thresholds-add").click()
    expect(rules).to_have_count(2)
    check("thresholds, a rule added")
    page.locator("#nav a[href='#deliveries']").click()
    expect(page.locator("#deliveries-dead tbody tr").first).to_be_visible()
    check("deliveries")
    page.locator("#nav a[href='#trust']").click()
    expect(page.locator("#trust-certificates table")).to_be_visible()
    expect(page.locator("#trust-signers table")).to_be_visible()
    check("trust and registry")


async def test_every_view_names_its_controls_and_has_one_h1_a_lang_and_unique_ids(
    browser: BrowserThread, tmp_path: Path, shared_dir: Path
) -> None:
    async with a_busy_gateway(tmp_path, shared_dir) as gw, browser.page() as page:
        violations: list[str] = []
        checked: dict[str, dict[str, int]] = {}

        def audit_each() -> None:
            def check(view: str) -> None:
                found, checked[view] = audit(page, view)
                violations.extend(found)

            every_view(page, gw, check)

        await browser.call(audit_each)
        assert violations == [], "\n".join(["accessibility audit:", *violations])
        assert all(seen["buttons"] > 0 for seen in checked.values()), checked  # not vacuous
        added = checked["thresholds, a rule added"]["controls"] - checked["thresholds"]["controls"]
        assert added == 5, checked  # the new rule's four fields and its kind were looked at


async def test_no_view_scrolls_sideways_on_a_laptop_screen(
    browser: BrowserThread, tmp_path: Path, shared_dir: Path
) -> None:
    async with a_busy_gateway(tmp_path, shared_dir) as gw, browser.page() as page:
        overflowing: list[str] = []

        def look_at_each() -> None:
            page.set_viewport_size(LAPTOP)
            every_view(page, gw, lambda view: overflowing.extend(sideways_scroll(page, view)))

        await browser.call(look_at_each)
        assert overflowing == [], "\n".join(["scrolls sideways at 1366x768:", *overflowing])


class Keyboard:
    """Only key presses; after each, the focused element must show that it has the focus."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.walk: list[str] = []  # what had the focus after each key, for a failure's message

    def press(self, key: str, settled: Callable[[], None] | None = None) -> None:
        """Press `key`; once `settled()` (a wait for what the key sets off) has returned,
        the focus must show."""
        assert key in ("Tab", "Shift+Tab", "Enter", " ", "Escape")
        self.page.keyboard.press(key)
        if settled is not None:
            settled()
        self.focus_shows(f"after {key!r}")

    def type(self, text: str) -> None:
        """Text where the page asks for it: a typed character each, into the focused field."""
        self.page.keyboard.type(text)
        self.focus_shows("after typing")

    def focus_shows(self, when: str) -> None:
        focus = self.page.evaluate(FOCUS_JS)
        self.walk.append(f"{when}: {focus['what']}")
        assert focus["shows"], f"the focus does not show {when}: {self.walk}"

    def tab_to(self, target: Any, key: str = "Tab") -> None:
        """Press Tab (or Shift+Tab) until `target` (a locator) has the focus."""
        for _ in range(KEY_PRESSES_TO_REACH):
            self.press(key)
            if target.evaluate("e => e === document.activeElement"):
                return
        raise AssertionError(f"{target} not reached by {key}: {self.walk}")


async def test_an_operator_releases_a_held_request_by_keyboard_alone(
    browser: BrowserThread, tmp_path: Path, shared_dir: Path
) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        put = await gw.admin.put("/admin/thresholds", content=HOLD_AFTER_ONE.encode(), headers=TOML)
        assert put.status_code == 200
        await hold_one(gw, shared_dir)
        [held] = (await gw.admin.get("/admin/quarantine")).json()
        ref = held["event_ref"]
        async with browser.page() as page:
            keys = Keyboard(page)
            dialog = page.locator("#confirm")
            release = page.get_by_role("button", name="Release…")

            def open_it_and_change_my_mind() -> None:
                page.goto(gw.admin_url + "/console/")
                expect(page.get_by_label("Admin token")).to_be_focused()
                keys.type(gw.admin_token)
                keys.press("Enter", expect(page.locator("#page-overview")).to_be_visible)
                keys.tab_to(page.get_by_role("link", name="Quarantine"), "Shift+Tab")
                keys.press("Enter", expect(page.locator("#page-quarantine")).to_be_visible)
                opener = page.get_by_role("button", name=f"Open quarantined request {ref}")
                expect(opener).to_be_visible()
                keys.tab_to(opener)
                keys.press("Enter", expect(page.locator("#detail-title")).to_be_focused)
                expect(page.locator("#detail-xml")).to_contain_text("<sr:Request")
                keys.tab_to(release)
                reason = dialog.get_by_label("Reason (kept in the audit trail)")
                keys.press(" ", expect(reason).to_be_focused)
                expect(dialog).to_be_visible()
                keys.type("not yet")
                keys.press("Escape", expect(release).to_be_focused)  # closed; nothing done
                expect(dialog).to_be_hidden()
                expect(page.locator("#quarantine-status")).to_be_empty()

            await browser.call(open_it_and_change_my_mind)
            unchanged = (await gw.admin.get(f"/admin/quarantine/{ref}")).json()
            assert (unchanged["state"], unchanged["decisions"]) == ("held", [])

            def release_it() -> None:
                reason = dialog.get_by_label("Reason (kept in the audit trail)")
                keys.press("Enter", expect(reason).to_be_focused)
                expect(dialog).to_be_visible()
                expect(reason).to_have_value("")  # the abandoned reason is not kept
                keys.type("campaign agreed")
                keys.tab_to(dialog.get_by_role("button", name="Release", exact=True))
                title = page.locator("#detail-title")
                keys.press("Enter", lambda: expect(title).to_contain_text("(released)"))
                expect(dialog).to_be_hidden()
                expect(title).to_be_focused()

            await browser.call(release_it)
        with trio.fail_after(SETTLE_TIMEOUT_SECONDS):
            while (item := (await gw.admin.get(f"/admin/quarantine/{ref}")).json())[
                "state"
            ] != "released":
                await trio.sleep(0.05)
        [decision] = item["decisions"]
        assert (decision["action"], decision["reason"]) == ("release", "campaign agreed")
