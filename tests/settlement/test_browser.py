"""In Chromium, with real CSRF and the CSP: review and issue a statement through htmx, then download it."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (  # noqa: F401  (fixtures: the deployed-like app, server and browser)
    PageProblems,
    app,
    browser,
    compiled_catalogues,
    live_server,
)
from tests.settlement.conftest import local

pytestmark = pytest.mark.browser


def test_operator_reviews_issues_and_downloads_in_the_browser(
        app, live_server, browser, make_site, make_resident, make_staff, ports, charge, agree, at):  # noqa: F811
    at(2026, 9, 1)
    site = make_site()
    agree(site, price=60)
    charge(make_resident(balance_fen=5000), ports(site)[1][0], local(2026, 10, 8, 20), minutes=200, watts=300)
    staff = make_staff("operator_staff", operator_id=site.sheds[0].operator_id)
    at(2026, 11, 3)

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                  accept_downloads=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems = PageProblems(page)
    try:
        page.goto(f"{live_server}/login?next=/operator/")
        page.fill("input[name=login]", staff.login)
        page.fill("input[name=password]", "secret-pass")
        page.click("form button.primary")
        page.click(f"a[href='/operator/1/{site.id}/statements/2026-10']")
        page.wait_for_selector("#statement-actions[data-status='draft']")
        page.click("[data-testid=review]")
        page.wait_for_selector("#statement-actions[data-status='reviewed']")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("[data-testid=issue]")
        number = page.wait_for_selector("[data-testid=statement-number]")
        assert number.inner_text() == "ST-1-1-0001"
        assert page.locator("[data-testid=issue]").count() == 0
        with page.expect_download() as download:
            page.click("a[href$='statement.pdf']")
        assert download.value.suggested_filename == "ST-1-1-0001_2026-10.pdf"
        page.reload()
        assert page.locator("[data-testid=gross]").get_attribute("data-fen") == "200"
        assert problems.messages == []
    finally:
        context.close()
