"""In Chromium, with real CSRF and the CSP: review and issue a statement through htmx, then download it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import skip_or_fail
from tests.e2e.conftest import (  # noqa: F401  (fixtures: the deployed-like app and its server)
    CHROMIUM,
    CHROMIUM_ARGS,
    PageProblems,
    app,
    compiled_catalogues,
    live_server,
)
from tests.settlement.conftest import local

pytestmark = pytest.mark.browser


def _review_issue_download(base_url: str, login: str, statement_path: str) -> dict:
    """Drive Chromium through review, issue and download; returns what the page showed.

    Runs in a thread of its own with its own Playwright, so it never meets a browser that
    another test module keeps open in the main thread.
    """
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800}, locale="zh-CN", accept_downloads=True
            )
            context.set_default_timeout(10_000)
            page = context.new_page()
            problems = PageProblems(page)
            page.goto(f"{base_url}/login?next=/operator/")
            page.fill("input[name=login]", login)
            page.fill("input[name=password]", "secret-pass")
            page.click("form button.primary")
            page.click(f"a[href='{statement_path}']")
            page.wait_for_selector("#statement-actions[data-status='draft']")
            page.click("[data-testid=review]")
            page.wait_for_selector("#statement-actions[data-status='reviewed']")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("[data-testid=issue]")
            seen["number"] = page.wait_for_selector("[data-testid=statement-number]").inner_text()
            seen["issue_buttons"] = page.locator("[data-testid=issue]").count()
            meta = page.locator("dl.meta").inner_text()  # before any reload: the swap updated it
            seen["meta_agrees"] = "ST-1-1-0001" in meta and "未出具" not in meta and "草稿" not in meta
            with page.expect_download() as download:
                page.click("a[href$='statement.pdf']")
            seen["file"] = download.value.suggested_filename
            page.reload()
            seen["gross"] = page.locator("[data-testid=gross]").get_attribute("data-fen")
            seen["problems"] = problems.messages
        finally:
            browser.close()
    return seen


def test_operator_reviews_issues_and_downloads_in_the_browser(
    app,  # noqa: F811
    live_server,  # noqa: F811
    make_site,
    make_resident,
    make_staff,
    ports,
    charge,
    agree,
    at,
):
    at(2026, 9, 1)
    site = make_site()
    agree(site, price=60)
    charge(make_resident(balance_fen=5000), ports(site)[1][0], local(2026, 10, 8, 20), minutes=200, watts=300)
    staff = make_staff("operator_staff", operator_id=site.sheds[0].operator_id)
    at(2026, 11, 3)
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            seen = pool.submit(
                _review_issue_download, live_server, staff.login, f"/operator/1/{site.id}/statements/2026-10"
            ).result(timeout=120)
        except Exception as error:  # Chromium missing or unable to start
            if "Executable doesn't exist" in str(error) or "Failed to launch" in str(error):
                skip_or_fail(f"Chromium could not start: {error}")
            raise
    assert seen == {
        "number": "ST-1-1-0001",
        "issue_buttons": 0,
        "meta_agrees": True,
        "file": "ST-1-1-0001_2026-10.pdf",
        "gross": "200",
        "problems": [],
    }
