"""Live occupancy: states from simulated ports, counts per shed, and the cheap unchanged poll."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.charging.sessions import start_session
from chargeshed.extensions import db
from chargeshed.ports.sim import Bike
from chargeshed.sites.models import Port

HX = {"HX-Request": "true"}
CELL = re.compile(r'<a class="cell st-(\w+)"[^>]*data-port="(\d+)" data-state="(\w+)"[^>]*>(.*?)</a>', re.S)


def cells(html: str) -> dict[int, tuple[str, str]]:
    """port id -> (state, visible text) of every cell in the grid."""
    found = {}
    for css_state, port_id, state, inner in CELL.findall(html):
        assert css_state == state
        found[int(port_id)] = (state, " ".join(re.sub(r"<[^>]+>", " ", inner).split()))
    return found


def counts(html: str, shed_id: int) -> dict[str, int]:
    block = html.split(f'data-shed="{shed_id}"', 1)[1]
    return {k: int(v) for k, v in re.findall(r'data-count="(\w+)">(\d+)<', block)[:4]}


@pytest.fixture
def scene(app, client, make_site, make_resident, make_staff, login, driver, clock, tick):
    """Six ports, one shed: after an hour they are free, charging, full, fault, offline and maintenance."""
    site = make_site(sheds=(6,))
    ports = {p.number: p for p in db.session.execute(select(Port).order_by(Port.number)).scalars()}
    tick()  # every port answers once
    resident = make_resident(balance_fen=2000)
    driver.plug("T11002", bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    driver.plug("T11003", bike=Bike("lithium", cc_watts=200, cc_minutes=20, taper_minutes=5))
    start_session(resident.id, ports[2])
    start_session(resident.id, ports[3])
    manager = make_staff(ROLE_SITE_MANAGER, site=site)
    login(manager)
    assert client.post(f"/manage/ports/{ports[6].id}/maintenance", data={"mode": "on"}).status_code == 302
    for minute in range(1, 61):
        clock.advance(minutes=1)
        if minute == 50:
            driver.set_fault("T11004", "ground_fault")
            driver.set_offline("T11005")
        tick()
    return site, ports


def test_grid_shows_every_state_in_colour_and_words_with_counts(client, scene):
    site, ports = scene
    page = client.get(f"/manage/sites/{site.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    grid = cells(html)
    states = {number: grid[port.id][0] for number, port in ports.items()}
    assert states == {1: "free", 2: "charging", 3: "occupied", 4: "fault", 5: "offline", 6: "maintenance"}
    assert grid[ports[1].id][1] == "1 ✓ Free"
    # Confirmed on the first tick after the start, a minute in.
    assert grid[ports[2].id][1] == "2 ⚡ Charging 250 W · 0 h 59 min"
    assert "Stopped, bike plugged in" in grid[ports[3].id][1]
    assert "Fault ground fault" in grid[ports[4].id][1]
    assert "Offline since" in grid[ports[5].id][1]
    assert "Maintenance" in grid[ports[6].id][1]
    assert counts(html, ports[1].shed_id) == {"free": 1, "charging": 1, "occupied": 1, "out_of_service": 3}


def test_port_page_shows_the_charge_and_the_events(client, scene):
    _site, ports = scene
    html = client.get(f"/manage/ports/{ports[2].id}").get_data(as_text=True)
    assert 'data-state="charging"' in html and "250 W" in html and "Stop this charge as staff" in html
    events = client.get(f"/manage/ports/{ports[5].id}").get_data(as_text=True)
    assert "Went offline" in events
    faulty = client.get(f"/manage/ports/{ports[4].id}").get_data(as_text=True)
    assert "ground_fault" in faulty and 'data-state="fault"' in faulty


def test_unchanged_poll_is_a_304_without_rendering(client, scene, monkeypatch, clock):
    site, _ports = scene
    url = f"/manage/sites/{site.id}/grid"
    first = client.get(url, headers=HX)
    assert first.status_code == 200 and first.headers["ETag"]
    assert 'data-testid="occupancy"' in first.get_data(as_text=True)
    assert "<html" not in first.get_data(as_text=True)  # the partial alone

    import chargeshed.web.manage as manage_views

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered although nothing changed")

    monkeypatch.setattr(manage_views, "render_page_or_partial", no_rendering)
    monkeypatch.setattr(manage_views, "_grid_context", no_rendering)
    again = client.get(url, headers={**HX, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == first.headers["ETag"]


def test_poll_answers_200_again_when_something_changed(client, scene, driver, clock, tick):
    site, ports = scene
    url = f"/manage/sites/{site.id}/grid"
    etag = client.get(url, headers=HX).headers["ETag"]
    driver.set_fault("T11004", None)
    tick()
    changed = client.get(url, headers={**HX, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert cells(changed.get_data(as_text=True))[ports[4].id][0] == "free"


def test_charging_time_keeps_the_poll_fresh_each_minute_but_not_within_it(client, scene, clock):
    site, _ports = scene
    url = f"/manage/sites/{site.id}/grid"
    etag = client.get(url, headers=HX).headers["ETag"]
    clock.advance(seconds=1)
    same_minute = client.get(url, headers={**HX, "If-None-Match": etag})
    clock.advance(minutes=1)
    next_minute = client.get(url, headers={**HX, "If-None-Match": etag})
    assert (same_minute.status_code, next_minute.status_code) == (304, 200)


def test_quiet_site_stays_304_until_silence_means_offline(client, make_site, make_staff, login, clock, tick):
    site = make_site(sheds=(2,))
    tick()
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    url = f"/manage/sites/{site.id}/grid"
    etag = client.get(url, headers=HX).headers["ETag"]
    clock.advance(minutes=2)
    assert client.get(url, headers={**HX, "If-None-Match": etag}).status_code == 304
    clock.advance(minutes=3)  # no reading for 5 minutes: the ports count as offline now
    later = client.get(url, headers={**HX, "If-None-Match": etag})
    assert later.status_code == 200
    assert {state for state, _ in cells(later.get_data(as_text=True)).values()} == {"offline"}


def test_operator_staff_sees_only_their_operators_sheds_at_a_site(client, make_site, make_staff, login):
    from chargeshed.accounts.models import ROLE_OPERATOR_STAFF
    from chargeshed.sites.models import Operator, Shed

    site = make_site(sheds=(2, 2))
    sheds = db.session.execute(select(Shed).order_by(Shed.id)).scalars().all()
    other = Operator(name="另一家运营公司")
    db.session.add(other)
    db.session.flush()
    sheds[1].operator_id = other.id
    db.session.commit()
    login(make_staff(ROLE_OPERATOR_STAFF, operator_id=sheds[0].operator_id))
    html = client.get(f"/manage/sites/{site.id}").get_data(as_text=True)
    assert sheds[0].name in html and sheds[1].name not in html
    assert client.get(f"/manage/ports/{sheds[1].ports[0].id}").status_code == 404


def test_a_hardware_port_whose_link_drops_is_marked_at_once_and_the_poll_sees_it(
    client, make_site, make_staff, login, clock, tick
):
    from chargeshed.ports import telemetry
    from chargeshed.ports.telemetry import Reading

    site = make_site(sheds=(3,))
    ports = {p.number: p for p in db.session.execute(select(Port).order_by(Port.number)).scalars()}
    telemetry.bind(ports[1], "shelly:shellypro4pm-a1/0")
    telemetry.bind(ports[2], "shelly:shellypro4pm-a1/1")
    telemetry.record_link("shelly:shellypro4pm-a1", True, clock.now)
    for number in (1, 2):
        telemetry.record_reading(ports[number].id, Reading(at=clock.now, state="Available", watts=0, relay_on=False))
    db.session.commit()
    tick()
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    url = f"/manage/sites/{site.id}/grid"
    first = client.get(url, headers=HX)
    assert 'data-link="down"' not in first.get_data(as_text=True)

    clock.advance(minutes=1)
    telemetry.record_link("shelly:shellypro4pm-a1", False, clock.now)  # the relay box's last will
    db.session.commit()
    tick()
    dropped = client.get(url, headers={**HX, "If-None-Match": first.headers["ETag"]})
    assert dropped.status_code == 200  # the site's version changed with the link
    grid = cells(dropped.get_data(as_text=True))
    # Still "free" (the offline debounce has not passed) but marked, with the time last heard.
    assert grid[ports[1].id] == ("free", "1 ✓ Free ⌁ No link 18:00")
    assert grid[ports[2].id][1].endswith("No link 18:00")
    assert "No link" not in grid[ports[3].id][1]  # a simulator port has no link to lose

    clock.advance(minutes=1)
    telemetry.record_link("shelly:shellypro4pm-a1", True, clock.now)
    db.session.commit()
    tick()
    back = client.get(url, headers={**HX, "If-None-Match": dropped.headers["ETag"]})
    assert back.status_code == 200 and 'data-link="down"' not in back.get_data(as_text=True)


def test_ports_of_an_ocpp_station_that_is_faulted_or_disabled_are_marked_and_the_poll_sees_it(
    client, make_site, make_staff, login, clock, tick
):
    from chargeshed.ports import registry, telemetry
    from chargeshed.ports.telemetry import Reading

    site = make_site(sheds=(3,))
    ports = {p.number: p for p in db.session.execute(select(Port).order_by(Port.number)).scalars()}
    registry.add_charger("CP-5", 2)
    telemetry.bind(ports[1], "ocpp:CP-5/1")
    telemetry.bind(ports[2], "ocpp:CP-5/2")
    telemetry.record_link("ocpp:CP-5", True, clock.now, state="Available")
    for number in (1, 2):
        telemetry.record_reading(ports[number].id, Reading(at=clock.now, state="Available", watts=0, relay_on=False))
    db.session.commit()
    tick()
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    url = f"/manage/sites/{site.id}/grid"
    first = client.get(url, headers=HX)
    assert "data-station" not in first.get_data(as_text=True)
    assert client.get(url, headers={**HX, "If-None-Match": first.headers["ETag"]}).status_code == 304

    etag = first.headers["ETag"]
    for state, shown, words in (
        ("Faulted", "fault", "Station fault"),
        ("Unavailable", "maintenance", "Station disabled"),
    ):
        clock.advance(minutes=1)
        telemetry.record_link("ocpp:CP-5", True, clock.now, state=state)  # StatusNotification, connector 0
        db.session.commit()
        tick()
        changed = client.get(url, headers={**HX, "If-None-Match": etag})
        assert changed.status_code == 200  # the site's version changed with the station's state
        etag = changed.headers["ETag"]
        html = changed.get_data(as_text=True)
        grid = cells(html)
        assert grid[ports[1].id][0] == shown  # not free, whatever each connector says
        assert grid[ports[1].id][1].startswith("1 ")
        assert grid[ports[2].id][1].endswith(words)
        assert "Station" not in grid[ports[3].id][1]  # a simulator port belongs to no station
        assert html.count(f'data-station="{state}"') == 2

    # Offline, the link marker speaks for the station; back and Available, no marker.
    clock.advance(minutes=1)
    telemetry.record_link("ocpp:CP-5", False, clock.now)
    db.session.commit()
    tick()
    offline = client.get(url, headers={**HX, "If-None-Match": etag})
    assert offline.status_code == 200
    assert "data-station" not in offline.get_data(as_text=True) and 'data-link="down"' in offline.get_data(as_text=True)
    clock.advance(minutes=1)
    telemetry.record_link("ocpp:CP-5", True, clock.now, state="Available")
    db.session.commit()
    tick()
    back = client.get(url, headers={**HX, "If-None-Match": offline.headers["ETag"]})
    assert back.status_code == 200 and "data-station" not in back.get_data(as_text=True)
    assert 'data-link="down"' not in back.get_data(as_text=True)
