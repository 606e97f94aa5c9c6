"""Back office: the port page shows the device link and lets a manager rewire the port; the stations page."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.ports import telemetry
from chargeshed.ports.models import Charger
from chargeshed.sites.models import Port
from tests.conftest import START
from tests.manage.conftest import PASSWORD


def _login(client, user):
    with client.application.app_context():
        assert client.post("/login", data={"login": user.login, "password": PASSWORD}).status_code == 302


def _get(client, url):
    with client.application.app_context():
        return client.get(url)


def _post(client, url, data):
    with client.application.app_context():
        return client.post(url, data=data)


def test_a_manager_rewires_a_port_and_sees_its_link(app, client, tenants):
    a, _b, _admin, _resident = tenants
    port = a.ports[0]
    _login(client, a.users["site_manager"])
    page = _get(client, f"/manage/ports/{port.id}").get_data(as_text=True)
    assert 'data-testid="hardware-target">sim<' in page and 'data-online="no"' in page
    bad = _post(client, f"/manage/ports/{port.id}/hardware", {"target": "shelly:box"})
    assert bad.status_code == 302
    assert "Not a hardware target" in _get(client, f"/manage/ports/{port.id}").get_data(as_text=True)
    done = _post(client, f"/manage/ports/{port.id}/hardware", {"target": " shelly:box-1/2 "})
    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.get(Port, port.id).hardware_target == "shelly:box-1/2"
    telemetry.record_link("shelly:box-1", True, START)
    db.session.commit()
    page = _get(client, f"/manage/ports/{port.id}").get_data(as_text=True)
    assert "is now wired to shelly:box-1/2" in page and 'data-online="yes"' in page
    log = _get(client, "/manage/audit").get_data(as_text=True)  # the staff log names who rewired it
    assert 'data-action="port_binding"' in log and "sim → shelly:box-1/2" in log


def test_operator_staff_see_the_port_link_but_cannot_rewire(app, client, tenants):
    a, _b, _admin, _resident = tenants
    _login(client, a.users["operator_staff"])
    page = _get(client, f"/manage/ports/{a.ports[0].id}").get_data(as_text=True)
    assert 'data-testid="hardware"' in page and "/hardware" not in page.split('data-testid="hardware"')[1]
    assert _post(client, f"/manage/ports/{a.ports[0].id}/hardware", {"target": "sim"}).status_code == 403


def test_stations_page_registers_a_station_and_shows_its_key_once(app, client, tenants):
    a, b, admin, _resident = tenants
    _login(client, a.users["operator_staff"])
    answer = _post(client, "/manage/chargers", {"charge_point_id": "CP-0042", "connectors": "4"})
    body = answer.get_data(as_text=True)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    key = body.split("<code>")[1].split("</code>")[0]
    charger = db.session.execute(select(Charger)).scalar_one()
    assert charger.operator_id == a.operator_id and len(key) == 32 and key not in charger.key_hash
    again = _get(client, "/manage/chargers").get_data(as_text=True)
    assert "CP-0042" in again and key not in again
    duplicate = _post(client, "/manage/chargers", {"charge_point_id": "CP-0042", "connectors": "1"})
    assert duplicate.status_code == 400 and "registered already" in duplicate.get_data(as_text=True)
    # Tenant B's operator does not see A's station; A's manager sees it once a port of A is wired to it.
    other = app.test_client()
    other.set_cookie("lang", "en")
    _login(other, b.users["operator_staff"])
    assert "CP-0042" not in _get(other, "/manage/chargers").get_data(as_text=True)
    manager = app.test_client()
    manager.set_cookie("lang", "en")
    _login(manager, a.users["site_manager"])
    assert "CP-0042" not in _get(manager, "/manage/chargers").get_data(as_text=True)
    telemetry.bind(db.session.get(Port, a.ports[1].id), "ocpp:CP-0042/1")
    telemetry.record_link("ocpp:CP-0042", True, START, state="Available")
    db.session.commit()
    page = _get(manager, "/manage/chargers").get_data(as_text=True)
    assert "CP-0042" in page and a.ports[1].code in page and 'data-online="yes"' in page
    assert _post(manager, "/manage/chargers", {"charge_point_id": "CP-9", "connectors": "1"}).status_code == 403


def test_a_station_that_refuses_charging_profiles_says_no_device_side_cap(app, client, tenants):
    from chargeshed.ports import ocpp_store, registry

    a, _b, _admin, _resident = tenants
    added = registry.add_charger("CP-7", 2, operator_id=a.operator_id)
    telemetry.bind(db.session.get(Port, a.ports[0].id), "ocpp:CP-7/1")
    telemetry.record_link("ocpp:CP-7", True, START, state="Available")
    db.session.commit()
    _login(client, a.users["site_manager"])
    assert 'data-testid="no-device-cap"' not in _get(client, "/manage/chargers").get_data(as_text=True)
    assert 'data-testid="no-device-cap"' not in _get(client, f"/manage/ports/{a.ports[0].id}").get_data(as_text=True)
    ocpp_store.profiles_refused("CP-7", START)
    db.session.commit()
    assert added.charger.device_cap is False
    stations = _get(client, "/manage/chargers").get_data(as_text=True)
    assert 'data-testid="no-device-cap"' in stations and "no device-side cap" in stations
    port_page = _get(client, f"/manage/ports/{a.ports[0].id}").get_data(as_text=True)
    assert 'data-testid="no-device-cap">no device-side cap<' in port_page


def test_a_stations_own_state_reads_in_words_on_the_stations_and_port_pages(app, client, tenants):
    from chargeshed.ports import registry

    a, _b, _admin, _resident = tenants
    registry.add_charger("CP-8", 2, operator_id=a.operator_id)
    telemetry.bind(db.session.get(Port, a.ports[0].id), "ocpp:CP-8/1")
    telemetry.record_link("ocpp:CP-8", True, START, state="Faulted")
    db.session.commit()
    _login(client, a.users["site_manager"])
    for url in ("/manage/chargers", f"/manage/ports/{a.ports[0].id}"):
        page = _get(client, url).get_data(as_text=True)
        assert "Station fault" in page and ">Faulted<" not in page, url
    telemetry.record_link("ocpp:CP-8", True, START, state="Available")
    db.session.commit()
    assert "Station working" in _get(client, "/manage/chargers").get_data(as_text=True)
