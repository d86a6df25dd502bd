"""The operator console in a real headless browser (Debian's chromium, driven by Playwright).

Each test starts a gateway on trio, as every test does, and hands the browser its steps
(`browser.call`): quarantine a request by a threshold, find it and release it in the
console and see the User's answer arrive; edit a threshold in the console and see it
enforced, live on the overview; markup in what the page shows stays text; without the
token only the prompt shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from bench.browser import BrowserThread
from gateway.devkit.estate import DCC_EUI64 as DCC
from tests.console_harness import (
    HOLD_AFTER_ONE,
    SUPPLIER,
    TOML,
    expect,
    hold_one,
    inbox_answer,
    login,
)
from tests.harness import default_config, running_gateway
from tests.receiver import Receiver
from tests.test_console_api import dead_letters_after_a_read
from tests.test_lifecycle_e2e import config_with_receiver

HOSTILE = '<img src=x onerror="window.__pwned=1">'


async def test_without_a_token_only_the_prompt_shows(
    browser: BrowserThread, tmp_path: Path
) -> None:
    config = default_config(tmp_path)
    async with running_gateway(config, [tmp_path / "pki"]) as gw, browser.page() as page:

        def steps() -> None:
            admin_calls: list[str] = []
            errors: list[str] = []  # a policy violation or a script error shows here
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: admin_calls.append(r.url) if "/admin/" in r.url else None)
            page.goto(gw.admin_url + "/console/")
            expect(page.get_by_label("Admin token")).to_be_focused()
            for hidden in (
                "#nav",
                "#page-overview",
                "#page-quarantine",
                "#page-thresholds",
                "#page-deliveries",
                "#page-trust",
            ):
                expect(page.locator(hidden)).to_be_hidden()
            assert admin_calls == []  # nothing is asked of the gateway without a token

            page.get_by_label("Admin token").fill("not-" + "x" * 40)
            page.get_by_role("button", name="Open the console").click()
            expect(page.locator("#login-message")).to_have_text(
                "The gateway refused the token: the bearer token is not this gateway's"
            )
            expect(page.locator("#nav")).to_be_hidden()
            assert page.evaluate("sessionStorage.length") == 0  # a refused token is not kept

            page.get_by_label("Admin token").fill(gw.admin_token)
            page.keyboard.press("Enter")
            expect(page.locator("#page-overview")).to_be_visible()
            expect(page.locator("#card-quarantine .value")).to_have_text("0")
            assert gw.admin_token not in page.url
            assert page.context.cookies() == []  # the token is a header, never a cookie

            page.get_by_role("button", name="Forget token").click()
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#page-overview")).to_be_hidden()
            assert page.evaluate("sessionStorage.length") == 0
            login(page, gw)  # every page renders under the policy without an error
            for name in ("Quarantine", "Thresholds", "Deliveries", "Trust and registry"):
                page.get_by_role("link", name=name).click()
                expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
            refused = "the server responded with a status of 401"  # the wrong token, above
            assert [e for e in errors if refused not in e] == []

        await browser.call(steps)


async def test_a_held_request_is_found_released_and_answered(
    browser: BrowserThread, tmp_path: Path, shared_dir: Path
) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        put = await gw.admin.put("/admin/thresholds", content=HOLD_AFTER_ONE.encode(), headers=TOML)
        assert put.status_code == 200  # a low limit, set through the API
        request_id = await hold_one(gw, shared_dir)
        async with browser.page() as page:

            def find_and_release() -> None:
                login(page, gw)
                page.get_by_role("link", name="Quarantine").click()
                page.locator("#q-user").fill(SUPPLIER)
                page.locator("#q-srv").fill("4.1.1")
                page.get_by_role("button", name="Show").click()
                row = page.locator("#quarantine-list tbody tr").filter(has_text=request_id)
                expect(row).to_have_count(1)
                row.get_by_role("button").click()
                expect(page.locator("#detail-header")).to_contain_text(request_id)
                expect(page.locator("#detail-thresholds")).to_contain_text("user_quarantine")
                xml = page.locator("#detail-xml")
                expect(xml).to_contain_text("<sr:Request")  # the signed XML, as text
                assert xml.locator("*").count() == 0
                page.get_by_role("button", name="Release…").click()
                dialog = page.locator("#confirm")
                expect(dialog).to_be_visible()
                dialog.get_by_label("Reason (kept in the audit trail)").fill("campaign agreed")
                dialog.get_by_role("button", name="Release", exact=True).click()
                expect(page.locator("#quarantine-status")).to_contain_text("answered I99")
                expect(page.locator("#detail-title")).to_contain_text("(released)")
                expect(page.locator("#detail-decisions")).to_contain_text("campaign agreed")

            await browser.call(find_and_release)
        answer = await inbox_answer(gw, request_id)  # the User's answer arrives
        assert answer["response_code"] == "I0"


async def test_a_threshold_edited_in_the_console_is_enforced(
    browser: BrowserThread, tmp_path: Path, shared_dir: Path
) -> None:
    config = default_config(tmp_path)
    async with running_gateway(config, [tmp_path / "pki"]) as gw, browser.page() as page:

        def add_a_rule_with_a_bad_limit() -> None:
            login(page, gw)
            page.get_by_role("link", name="Thresholds").click()
            expect(page.locator("#thresholds-audit")).to_be_visible()
            page.get_by_role("button", name="Add a rule").click()
            page.get_by_label("User ID, rule 1").fill(SUPPLIER)
            page.get_by_label("SRV, rule 1").fill("4.1.1")
            page.get_by_label("Window (s), rule 1").fill("3600")
            page.get_by_label("Limit, rule 1").fill("one")
            page.get_by_label("Kind, rule 1").select_option("user_quarantine")
            page.get_by_role("button", name="Save rules").click()
            expect(page.locator("#thresholds-error")).to_have_text(
                "Not saved. The gateway says: 400: "
                "Expected `int`, got `str` - at `$.rules[0].limit`"
            )

        await browser.call(add_a_rule_with_a_bad_limit)
        assert (await gw.admin.get("/admin/thresholds")).json()["rules"] == []

        def fix_it_then_watch_the_overview() -> None:
            page.get_by_label("Limit, rule 1").fill("1")
            page.get_by_role("button", name="Save rules").click()
            expect(page.locator("#thresholds-status")).to_have_text("Saved: 1 rules in force.")
            expect(page.locator("#thresholds-audit")).to_contain_text("set at run time")
            page.get_by_role("link", name="Overview").click()
            expect(page.locator("#card-quarantine .value")).to_have_text("0")
            page.evaluate("window.__sameDocument = true")

        await browser.call(fix_it_then_watch_the_overview)
        [rule] = (await gw.admin.get("/admin/thresholds")).json()["rules"]
        assert (rule["user_id"], rule["limit"], rule["kind"]) == (
            SUPPLIER,
            1,
            "user_quarantine",
        )
        await hold_one(gw, shared_dir)  # the second read is held by the edited rule

        def the_overview_shows_it_without_a_reload() -> None:
            expect(page.locator("#card-quarantine .value")).to_have_text("1")
            expect(page.locator("#overview-requests")).to_contain_text("I99")
            assert page.evaluate("window.__sameDocument") is True

        await browser.call(the_overview_shows_it_without_a_reload)


async def test_markup_in_what_the_page_shows_stays_text(
    browser: BrowserThread, tmp_path: Path, shared_dir: Path
) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        rules = f"# {HOSTILE}\n{HOLD_AFTER_ONE}".encode()
        assert (
            await gw.admin.put("/admin/thresholds", content=rules, headers=TOML)
        ).status_code == 200
        await hold_one(gw, shared_dir)
        [held] = (await gw.admin.get("/admin/quarantine")).json()
        reason = f"{HOSTILE}<script>window.__pwned=2</script>"
        deleted = await gw.admin.post(
            f"/admin/quarantine/{held['event_ref']}/delete", json={"reason": reason}
        )
        assert deleted.status_code == 200
        async with browser.page() as page:

            def look_everywhere() -> None:
                login(page, gw)
                page.get_by_role("link", name="Quarantine").click()
                # A hostile User ID in the filter: the gateway refuses it, naming it, as text.
                page.locator("#q-user").fill(HOSTILE)
                page.get_by_role("button", name="Show").click()
                expect(page.locator("#quarantine-error")).to_contain_text(f"not '{HOSTILE}'")
                page.locator("#q-user").fill("")
                page.locator("#q-state").select_option("deleted")
                page.get_by_role("button", name="Show").click()
                page.locator("#quarantine-list tbody tr").first.get_by_role("button").click()
                expect(page.locator("#detail-decisions")).to_contain_text(reason)
                page.get_by_role("link", name="Thresholds").click()
                page.locator("#thresholds-audit summary").first.click()
                expect(page.locator("#thresholds-audit pre").first).to_contain_text(f"# {HOSTILE}")
                assert page.evaluate("window.__pwned === undefined")
                assert page.locator("img").count() == 0
                assert page.locator("script").count() == 1  # the page's own module

            await browser.call(look_everywhere)


async def test_dead_letters_are_retried_and_missing_signers_shown(
    browser: BrowserThread, tmp_path: Path, shared_dir: Path
) -> None:
    gone = Receiver(status_for=lambda seen: 410)  # a 4xx: a dead letter at once
    async with trio.open_nursery() as nursery:
        port = await nursery.start(gone.serve)
        async with running_gateway(config_with_receiver(tmp_path, port), [tmp_path / "pki"]) as gw:
            dead = await dead_letters_after_a_read(gw, shared_dir)
            message_id = dead[0]["message_id"]
            async with browser.page() as page:

                def retry_then_trust() -> None:
                    login(page, gw)
                    page.get_by_role("link", name="Deliveries").click()
                    expect(page.locator("#deliveries-users")).to_contain_text(SUPPLIER)
                    page.get_by_role("button", name=f"Retry {message_id}").click()
                    expect(page.locator("#deliveries-status")).to_have_text(
                        f"Retrying {message_id}: it is pending again."
                    )
                    page.get_by_role("link", name="Trust and registry").click()
                    signers = page.locator("#trust-signers tbody tr").filter(
                        has_text="load-controller"
                    )
                    # DUIS 5.0: its OU 7F role certificate (its own OU 08 may not sign).
                    expect(signers).to_contain_text("OU 7F until")
                    dcc = page.locator("#trust-signers tbody tr").filter(has_text=DCC)
                    expect(dcc).to_contain_text("DCC-originated requests: OU 89 until")
                    expect(page.locator("#trust-certificates")).to_contain_text("User XML signing")
                    page.get_by_role("button", name="Reload trust and registry").click()
                    expect(page.locator("#trust-status")).to_contain_text("reloaded")

                await browser.call(retry_then_trust)
            assert len(gone.attempts) >= 2  # the retried letter went out again
            with trio.fail_after(30):  # dead again (410), then discarded from the page
                while not (await gw.admin.get("/admin/outbox/dead-letters")).json():
                    await trio.sleep(0.1)
            async with browser.page() as page:

                def discard() -> None:
                    login(page, gw)
                    page.get_by_role("link", name="Deliveries").click()
                    page.get_by_role("button", name=f"Discard {message_id}").click()
                    page.get_by_label("Reason").fill("endpoint retired")
                    page.locator("#confirm-ok").click()
                    expect(page.locator("#deliveries-status")).to_have_text(
                        f"Discarded {message_id}."
                    )
                    expect(page.locator("#deliveries-dead")).to_contain_text("No dead letters.")

                await browser.call(discard)
            assert (await gw.admin.get("/admin/outbox/dead-letters")).json() == []
        nursery.cancel_scope.cancel()


async def test_the_overview_p99_is_the_interval_s_interpolated_in_its_bucket(
    browser: BrowserThread, tmp_path: Path
) -> None:
    config = default_config(tmp_path)
    async with running_gateway(config, [tmp_path / "pki"]) as gw, browser.page() as page:

        def compute() -> list[Any]:
            page.goto(gw.admin_url + "/console/")
            # Before: 100 answered under 1 ms. Then 100 more: 90 under 1 ms, 8 by 2 ms,
            # 2 by 5 ms. The interval's p99 (rank 99) lies in (2 ms, 5 ms]: 2 + 3 * 1/2.
            before = [
                {"le": 0.001, "count": 100},
                {"le": 0.002, "count": 100},
                {"le": 0.005, "count": 100},
                {"le": None, "count": 100},
            ]
            after = [
                {"le": 0.001, "count": 190},
                {"le": 0.002, "count": 198},
                {"le": 0.005, "count": 200},
                {"le": None, "count": 200},
            ]
            slow = [dict(b) for b in after]
            slow[-1]["count"] = 300  # 100 slower than the last bound: only "more than" is known
            return list(
                page.evaluate(
                    """async ([before, after, slow]) => {
                        const { intervalQuantile } = await import("./overview.js");
                        return [
                            intervalQuantile(after, before),
                            intervalQuantile(before, before),
                            intervalQuantile(slow, before),
                        ];
                    }""",
                    [before, after, slow],
                )
            )

        interpolated, idle, beyond = await browser.call(compute)
        assert abs(interpolated["seconds"] - 0.0035) < 1e-12
        assert idle is None  # no request in the interval: no p99 to show
        assert beyond == {"over": 0.005}
