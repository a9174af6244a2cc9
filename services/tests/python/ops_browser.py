"""The pipeline view the way an operator uses it, in Chromium driven by Playwright.

    python ops_browser.py BASE_URL SCREENSHOT_DIR ADMIN_TOKEN PRODUCT_ID DEAD_TASKS

Expects DEAD_TASKS dead `payment.charge` tasks (the test made the provider refuse the
worker's key, then gave the worker the right one). Enters the admin token, watches the
fulfilled count move while orders flow, retries one dead task from its row and the rest
with "retry all matching" after the confirmation, and sees every one of them complete.
Exits non-zero, with the reason, at the first expectation that fails.
"""

import os
import sys

from playwright.sync_api import expect, sync_playwright

from storefront_browser import CHROMIUM_ARGS, ORDER_DEADLINE_MS


def fulfilled(page):
    return int(page.get_by_test_id("count-fulfilled").inner_text().replace(",", ""))


def main():
    base, shots, admin_token, product_id, dead = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    os.makedirs(shots, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        failures, foreign = [], []
        page.on("pageerror", lambda error: failures.append(str(error)))
        # The wrong token's 401 is expected; nothing else may fail.
        page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 and r.status != 401 else None)
        page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(base) else None)

        page.goto(f"{base}/ops")
        page.get_by_label("Admin token").fill("not-the-token")
        page.get_by_role("button", name="Open").click()
        expect(page.locator("#token-error")).to_be_visible()
        page.get_by_label("Admin token").fill(admin_token)
        page.get_by_role("button", name="Open").click()
        expect(page.get_by_test_id("count-fulfilled")).not_to_have_text("–")
        rows = page.get_by_test_id("dead-task")
        expect(rows).to_have_count(dead)
        expect(rows.first).to_contain_text("payment.charge")
        page.screenshot(path=f"{shots}/ops-dead-tasks.png", full_page=True)

        # Orders flowing: the fulfilled count follows without a reload.
        before = fulfilled(page)
        for n in range(10):
            response = page.request.post(
                f"{base}/orders",
                headers={"Idempotency-Key": f"ops-flow-{n}"},
                data={
                    "customer": {"email": "ops@example.com", "name": "Ops Flow"},
                    "items": [{"product_id": product_id, "quantity": 1}],
                    "payment": {"token": "tok_visa"},
                },
            )
            assert response.status == 202, f"order {n}: {response.status} {response.text()}"
        expect(page.get_by_test_id("count-fulfilled")).to_have_text(str(before + 10), timeout=ORDER_DEADLINE_MS)

        # One dead task retried from its row.
        rows.first.get_by_test_id("retry-task").click()
        expect(rows).to_have_count(dead - 1)
        expect(page.get_by_test_id("count-fulfilled")).to_have_text(str(before + 11), timeout=ORDER_DEADLINE_MS)

        # The rest: filtered by their error, retried together after the confirmation.
        page.get_by_label("Error contains").fill("401")
        expect(page.get_by_test_id("retry-all")).to_have_text(f"Retry all {dead - 1} matching")
        page.get_by_test_id("retry-all").click()
        expect(page.locator("#confirm-text")).to_contain_text(f"{dead - 1} dead tasks")
        page.screenshot(path=f"{shots}/ops-confirm-retry.png")
        page.get_by_test_id("confirm-retry").click()
        expect(rows).to_have_count(0)
        expect(page.get_by_test_id("count-fulfilled")).to_have_text(str(before + 10 + dead), timeout=ORDER_DEADLINE_MS)
        expect(page.locator("#kinds")).to_contain_text("payment.charge")
        page.screenshot(path=f"{shots}/ops.png", full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.goto(f"{base}/ops")
        phone.evaluate(f"sessionStorage.setItem('orderflow.adminToken', {admin_token!r})")
        phone.reload()
        expect(phone.get_by_test_id("count-fulfilled")).not_to_have_text("–")
        phone.screenshot(path=f"{shots}/ops-phone.png", full_page=True)

        assert not foreign, f"pages loaded from another host: {foreign}"
        assert not failures, f"errors in the page: {failures}"
        browser.close()
    print("ops: ok")


if __name__ == "__main__":
    main()
