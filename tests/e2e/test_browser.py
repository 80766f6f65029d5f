"""A person in Chromium: log in, rent a machine from the form, watch it reach running."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API keeps an event loop on this thread; the ORM calls the live server
    # makes happen in its own thread, so Django's async guard has nothing to protect here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_user_logs_in_creates_an_instance_and_sees_it_running(
    live_server, user, celery_worker, browser_page
):
    page = browser_page
    page.goto(f"{live_server.url}/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "correct horse battery")
    page.click("button:has-text('Log in')")

    page.click("text=New instance")
    page.fill("input[name=label]", "browser-box")
    page.fill("input[name=gpu_name]", "RTX 4090")
    page.click("button:has-text('Rent machine')")

    page.goto(f"{live_server.url}/")
    row = page.locator("tr", has_text="browser-box")
    # The row polls itself every 2 s until the instance settles.
    expect(row.locator(".badge")).to_have_text("running", timeout=60_000)
    expect(row.locator("button:has-text('Pause')")).to_be_visible()
