"""A device's own protection trips mid-charge (Shelly overpower / overtemp, Tasmota MaxPower): the charge
ends for overload or overheat, residents and managers read it in words, the safety incident and the
staff's fault alert follow, through the real broker and the gateway."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.accounts.services import create_user
from chargeshed.charging.models import ENDED
from chargeshed.charging.supervisor import tick
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger
from chargeshed.ports import shelly, tasmota
from chargeshed.ports.models import Alert
from chargeshed.safety.incidents import sync_incidents
from chargeshed.safety.models import Incident
from chargeshed.sites.models import Port, Site
from tests.ports.emulators.base import unique, wait_for
from tests.ports.emulators.shelly import ShellyEmulator
from tests.ports.emulators.tasmota import TasmotaEmulator
from tests.ports.test_mqtt_gateway import _bound_port, _charge, _commands_done, _session, _start, _stored


def _charging(make_site, make_resident, clock, mqtt_gateway, device, target: str, watts: float):
    port = _bound_port(make_site, target)
    gateway = mqtt_gateway()
    if isinstance(device, TasmotaEmulator):
        device.sensor()
    wait_for(lambda: _stored(port.id).link_online, what="online")
    resident, session_id = _start(make_resident, port, clock)
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    gateway.flush()
    tick(clock.now)
    if isinstance(device, TasmotaEmulator):
        device.plug(1, watts)
    else:
        device.plug(0, watts)
    _charge(clock, device, gateway, port.id, 10)
    return port, gateway, resident, session_id


def _pages(client, port: Port, session_id: int, resident) -> tuple[str, str, str, str]:
    """The resident's port and charge pages, the manager's port page and grid (zh_CN, the default)."""
    site = db.session.execute(select(Site)).scalars().first()
    resident_port = client.get(f"/p/{port.code}").get_data(as_text=True)
    assert client.post("/login", data={"login": resident.login, "password": "secret-pass"}).status_code == 302
    charge = client.get(f"/s/{session_id}").get_data(as_text=True)
    client.post("/logout")
    manager = create_user(unique("mgr"), "secret-pass", ROLE_SITE_MANAGER, display_name="经理", site_id=site.id)
    db.session.commit()
    assert client.post("/login", data={"login": manager.login, "password": "secret-pass"}).status_code == 302
    manager_port = client.get(f"/manage/ports/{port.id}").get_data(as_text=True)
    grid = client.get(f"/manage/sites/{site.id}").get_data(as_text=True)
    return resident_port, charge, manager_port, grid


def _after_trip(clock, gateway, port_id: int, fault: str) -> None:
    wait_for(lambda: _stored(port_id).fault == fault, what=f"the {fault} stored")
    gateway.flush()
    tick(clock.now)


def test_shelly_overpower_ends_the_charge_as_overload_in_words_with_incident_and_alert(
    app, client, make_site, make_resident, clock, mqtt_gateway, devices
):
    device = ShellyEmulator(unique("shellyplusplugs"), channels=1, model="shellyplusplugs").connect()
    devices.append(device)
    port, gateway, resident, session_id = _charging(
        make_site, make_resident, clock, mqtt_gateway, device, shelly.target(device.prefix, 0), 300.0
    )
    device.overpower(0)
    _after_trip(clock, gateway, port.id, "overload")
    session = _session(session_id)
    assert (session.state, session.end_reason) == (ENDED, "overload")
    assert db.session.get(Port, port.id).fault == "overload"

    resident_port, charge, manager_port, grid = _pages(client, port, session_id, resident)
    assert 'data-testid="port-fault">过载断电<' in resident_port
    assert "功率过大，已断电" in charge
    assert 'data-testid="port-fault">过载断电<' in manager_port
    assert "<small>过载断电</small>" in grid

    sync_incidents(clock.now)
    db.session.commit()
    [incident] = db.session.execute(select(Incident)).scalars().all()
    assert (incident.kind, incident.occurrences) == ("overload", 1)  # one cut-off, counted once
    clock.advance(minutes=3)
    device.advance(0)
    wait_for(lambda: _stored(port.id).reading_at == clock.now, what="a later report")
    gateway.flush()
    tick(clock.now)
    [alert] = db.session.execute(select(Alert).where(Alert.port_id == port.id)).scalars().all()
    assert (alert.kind, alert.detail) == ("fault", "overload")
    assert check_ledger() == []


def test_shelly_overtemp_ends_the_charge_as_overheat_in_words_with_its_own_incident(
    app, client, make_site, make_resident, clock, mqtt_gateway, devices
):
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    port, gateway, resident, session_id = _charging(
        make_site, make_resident, clock, mqtt_gateway, device, shelly.target(device.prefix, 0), 250.0
    )
    device.protection(0, "overtemp")
    _after_trip(clock, gateway, port.id, "overheat")
    assert _session(session_id).end_reason == "overheat"
    assert _stored(port.id).temperature_c == 96.0

    resident_port, charge, manager_port, _grid = _pages(client, port, session_id, resident)
    assert 'data-testid="port-fault">过温<' in resident_port and 'data-testid="port-fault">过温<' in manager_port
    assert "过温，已断电" in charge
    sync_incidents(clock.now)
    db.session.commit()
    [incident] = db.session.execute(select(Incident)).scalars().all()
    assert incident.kind == "overheat"


def test_tasmota_max_power_ends_the_charge_as_overload(
    app, client, make_site, make_resident, clock, mqtt_gateway, devices
):
    plug = TasmotaEmulator(unique("sonoff-pow")).connect()
    devices.append(plug)
    port, gateway, _resident, session_id = _charging(
        make_site, make_resident, clock, mqtt_gateway, plug, tasmota.target(plug.topic), 200.0
    )
    plug.max_power_reached(1)
    _after_trip(clock, gateway, port.id, "overload")
    assert _session(session_id).end_reason == "overload"
    sync_incidents(clock.now)
    db.session.commit()
    [incident] = db.session.execute(select(Incident)).scalars().all()
    assert (incident.kind, incident.occurrences) == ("overload", 1)
