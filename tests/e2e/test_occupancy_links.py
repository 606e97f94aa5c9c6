"""The occupancy grid on a phone: a hardware port whose device link dropped carries a compact marker."""

from __future__ import annotations

import os

from sqlalchemy import select

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.accounts.services import create_user
from chargeshed.extensions import db
from chargeshed.ports import telemetry
from chargeshed.ports.telemetry import Reading
from chargeshed.sites.models import Port


def test_the_grid_marks_a_relay_box_that_lost_its_link(app, live_server, phone, make_site, clock, tick):
    page, problems = phone
    site = make_site(sheds=(8,))
    ports = {p.number: p for p in db.session.execute(select(Port).order_by(Port.number)).scalars()}
    for number in (1, 2, 3, 4):
        telemetry.bind(ports[number], f"shelly:shellypro4pm-b1/{number - 1}")
    telemetry.record_link("shelly:shellypro4pm-b1", True, clock.now)
    for number in (1, 2, 3, 4):
        telemetry.record_reading(ports[number].id, Reading(at=clock.now, state="Available", watts=0, relay_on=False))
    create_user("grid-manager", "secret-pass", ROLE_SITE_MANAGER, display_name="经理", site_id=site.id)
    db.session.commit()
    tick()
    clock.advance(minutes=1)
    telemetry.record_link("shelly:shellypro4pm-b1", False, clock.now)
    db.session.commit()
    tick()

    page.goto(f"{live_server}/login")
    page.locator("input[name=login]").fill("grid-manager")
    page.locator("input[name=password]").fill("secret-pass")
    page.locator("form button").first.click()
    page.wait_for_url("**/manage**")
    page.goto(f"{live_server}/manage/sites/{site.id}")
    markers = page.locator('[data-link="down"]')
    assert markers.count() == 4
    assert markers.first.inner_text() == "⌁ 断线 18:00"
    box = markers.first.bounding_box()
    cell = page.locator(f'[data-port="{ports[1].id}"]').bounding_box()
    assert box["x"] + box["width"] <= cell["x"] + cell["width"]  # fits in its cell
    page.screenshot(path=os.environ.get("GRID_SHOT", "/tmp/occupancy-links.png"), full_page=True)
    assert problems.messages == []


def test_the_grid_marks_the_ports_of_a_faulted_station(app, live_server, phone, make_site, clock, tick):
    from chargeshed.ports import registry

    page, problems = phone
    site = make_site(sheds=(8,))
    ports = {p.number: p for p in db.session.execute(select(Port).order_by(Port.number)).scalars()}
    registry.add_charger("CP-8", 4)
    for number in (1, 2, 3, 4):
        telemetry.bind(ports[number], f"ocpp:CP-8/{number}")
    telemetry.record_link("ocpp:CP-8", True, clock.now, state="Faulted")  # StatusNotification, connector 0
    for number in (1, 2, 3, 4):
        telemetry.record_reading(ports[number].id, Reading(at=clock.now, state="Available", watts=0, relay_on=False))
    create_user("grid-manager", "secret-pass", ROLE_SITE_MANAGER, display_name="经理", site_id=site.id)
    db.session.commit()
    tick()

    page.goto(f"{live_server}/login")
    page.locator("input[name=login]").fill("grid-manager")
    page.locator("input[name=password]").fill("secret-pass")
    page.locator("form button").first.click()
    page.wait_for_url("**/manage**")
    page.goto(f"{live_server}/manage/sites/{site.id}")
    markers = page.locator('[data-station="Faulted"]')
    assert markers.count() == 4
    assert markers.first.inner_text() == "充电桩故障"
    for number in (1, 4):
        box = markers.nth(number - 1).bounding_box()
        cell = page.locator(f'[data-port="{ports[number].id}"]').bounding_box()
        assert box["x"] + box["width"] <= cell["x"] + cell["width"]  # fits in its cell
    assert page.locator(f'[data-port="{ports[5].id}"] [data-station]').count() == 0
    page.screenshot(path=os.environ.get("GRID_STATION_SHOT", "/tmp/occupancy-station.png"), full_page=True)
    assert problems.messages == []
