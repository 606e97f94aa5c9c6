"""Finding a port on a phone: the site's live free-port page, and typing a damaged sticker's code."""

from __future__ import annotations

import os

import pytest

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.sites.models import Port
from tests.e2e.test_charge_page import shots_dir

pytestmark = pytest.mark.browser


def test_free_port_page_updates_itself_and_a_typed_code_opens_the_port(
    live_server, phone, make_site, make_resident, driver, clock, tick, tmp_path
):
    from playwright.sync_api import expect

    page, problems = phone
    shots = shots_dir(tmp_path)
    make_site(sheds=(4, 3))
    user_id = make_resident(balance_fen=1000).id
    db.session.remove()

    page.goto(f"{live_server}/p/T11001")
    page.get_by_test_id("site-link").click()
    shed = page.locator('[data-shed="1号车棚"]')
    expect(shed.get_by_test_id("free-count")).to_have_text("4")
    page.screenshot(path=os.path.join(shots, "site-free-ports.png"), full_page=True)

    charging.start_session(user_id, db.session.query(Port).filter_by(code="T11001").one())
    db.session.commit()
    db.session.remove()
    expect(shed.get_by_test_id("free-count")).to_have_text("3", timeout=15_000)  # the page polls by itself
    expect(shed.get_by_test_id("busy-count")).to_have_text("1")

    page.goto(f"{live_server}/")
    page.get_by_test_id("code-input").fill("t12 003")
    page.get_by_test_id("code-go").click()
    expect(page).to_have_url(f"{live_server}/p/T12003")
    expect(page.locator("h1.shed")).to_have_text("2号车棚")

    page.goto(f"{live_server}/p/XXXXXX")
    page.get_by_test_id("code-input").fill("t11004")
    page.screenshot(path=os.path.join(shots, "not-found-code-box.png"), full_page=True)
    page.get_by_test_id("code-go").click()
    expect(page).to_have_url(f"{live_server}/p/T11004")
    assert [m for m in problems.messages if "404" not in m] == []  # the 404 page itself is expected
