"""The storefront the way a shopper uses it, in Chromium driven by Playwright.

    python storefront_browser.py BASE_URL SCREENSHOT_DIR

Buys with the approving card and watches the order reach `fulfilled` on its page without
a reload; buys with the declining card and sees `cancelled`; finds both in "my orders".
Saves screenshots (desktop and phone-sized) into SCREENSHOT_DIR. Exits non-zero, with the
reason, at the first expectation that fails. The browser is Debian's (CHROMIUM, default
/usr/bin/chromium): Playwright's own download is not used.
"""

import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

# Long enough for a few gateway round trips on a loaded machine; an order that takes
# longer than this has a real problem.
ORDER_DEADLINE_MS = 60_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def buy(page, base, card, name):
    """From the storefront: one product into the cart, check out with `card`; returns on
    the order's page."""
    page.goto(f"{base}/")
    expect(page.get_by_test_id("product").first).to_be_visible()
    page.get_by_test_id("add-to-cart").first.click()
    page.get_by_test_id("checkout").click()
    page.locator('input[name="email"]').fill("ada@example.com")
    page.locator('input[name="name"]').fill(name)
    page.get_by_test_id("card").select_option(card)
    page.get_by_test_id("place-order").click()
    page.wait_for_url(re.compile(r"/track/[0-9a-f-]+#token="))


def watch_status(page):
    """Records every status word the page shows from now on, and every navigation."""
    page.evaluate(
        """() => {
            const status = document.querySelector('[data-testid="order-status"]');
            window.seenStatuses = [status.textContent];
            new MutationObserver(() => {
                if (window.seenStatuses.at(-1) !== status.textContent) {
                    window.seenStatuses.push(status.textContent);
                }
            }).observe(status, { childList: true, characterData: true, subtree: true });
        }"""
    )


def main():
    base, shots = sys.argv[1].rstrip("/"), sys.argv[2]
    os.makedirs(shots, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        foreign, failures, streams = [], [], []
        page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(base) else None)
        page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/events") else None)
        reads = []
        page.on("request", lambda r: reads.append(r.url) if re.search(r"/orders/[0-9a-f-]{36}$", r.url) else None)
        page.on("pageerror", lambda error: failures.append(str(error)))
        page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        page.goto(f"{base}/")
        expect(page.get_by_test_id("product").first).to_be_visible()
        page.screenshot(path=f"{shots}/storefront.png", full_page=True)

        # The approving card: the order page follows it to `fulfilled` by itself.
        buy(page, base, "tok_visa", "Ada Lovelace")
        reads_on_landing = len(reads)
        watch_status(page)
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
        page.screenshot(path=f"{shots}/order-in-progress.png", full_page=True)
        status = page.get_by_test_id("order-status")
        expect(status).to_have_text("fulfilled", timeout=ORDER_DEADLINE_MS)
        timeline = page.get_by_test_id("timeline").locator("li")
        expect(timeline).to_have_count(5)  # placed, paid, reserved, shipped, fulfilled
        # Each worker's step shows how long the order waited for it and how long it ran;
        # the charge's run holds the provider's answer (300 ms median in this test).
        times = timeline.locator(".step-times")
        expect(times).to_have_count(4)
        spans = [
            (float(t.get_attribute("data-waited-ms")), float(t.get_attribute("data-ran-ms")))
            for t in times.all()
        ]
        assert all(waited >= 0 and ran >= 0 for waited, ran in spans), spans
        assert spans[0][1] >= 50, f"the charge ran {spans[0][1]} ms, less than the provider took"
        expect(times.first).to_contain_text("waited")
        expect(times.first).to_contain_text("ran")
        expect(page.locator("#email-note")).to_contain_text("order confirmation")
        seen = page.evaluate("window.seenStatuses")
        assert not navigations, f"the order page reloaded: {navigations}"
        assert any(url.endswith("/events") for url in streams), "the page never opened its event stream"
        # The page read the order once and then only listened: it did not fall back to
        # polling (which would also have reached `fulfilled`).
        assert len(reads) - reads_on_landing <= 1, f"the order page polled: {reads}"
        print(f"approved order, statuses seen live: {seen}")
        page.screenshot(path=f"{shots}/order-fulfilled.png", full_page=True)

        # The declining card: cancelled, and the page says why.
        buy(page, base, "tok_chargeDeclined", "Charles Babbage")
        expect(status).to_have_text("cancelled", timeout=ORDER_DEADLINE_MS)
        expect(page.locator("#outcome")).to_contain_text("declined")
        expect(page.locator("#email-note")).to_contain_text("cancellation notice", timeout=ORDER_DEADLINE_MS)
        page.screenshot(path=f"{shots}/order-cancelled.png", full_page=True)

        # Both orders in "my orders", each with its final status.
        page.goto(f"{base}/")
        mine = page.get_by_test_id("my-order-status")
        expect(mine).to_have_count(2)
        expect(mine.nth(0)).to_have_text("cancelled", timeout=ORDER_DEADLINE_MS)
        expect(mine.nth(1)).to_have_text("fulfilled", timeout=ORDER_DEADLINE_MS)
        page.screenshot(path=f"{shots}/my-orders.png", full_page=True)

        # A phone-sized screen.
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.goto(f"{base}/")
        expect(phone.get_by_test_id("product").first).to_be_visible()
        phone.screenshot(path=f"{shots}/storefront-phone.png", full_page=True)

        assert not foreign, f"pages loaded from another host: {foreign}"
        assert not failures, f"errors in the page: {failures}"
        browser.close()
    print("storefront: ok")


if __name__ == "__main__":
    main()
