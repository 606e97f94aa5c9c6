"""Charging through MQTT relays end to end: session services, outbox, the gateway with the Shelly and
Tasmota adapters on the real Mosquitto, emulated devices, the telemetry store, the supervisor, billing."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.charging import sessions as svc
from chargeshed.charging.models import CHARGING, ENDED, ChargeSession
from chargeshed.charging.supervisor import tick
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.ports import shelly, tasmota, telemetry
from chargeshed.ports.models import DONE, PortCommand, PortTelemetry
from chargeshed.sites.models import Port
from tests.ports.emulators.base import unique, wait_for
from tests.ports.emulators.shelly import ShellyEmulator
from tests.ports.emulators.tasmota import TasmotaEmulator


def _bound_port(make_site, target: str) -> Port:
    make_site()
    port = db.session.execute(select(Port).order_by(Port.id)).scalars().first()
    telemetry.bind(port, target)
    db.session.commit()
    return port


def _stored(port_id: int) -> PortTelemetry:
    db.session.expire_all()
    return db.session.get(PortTelemetry, port_id)


def _session(session_id: int) -> ChargeSession:
    db.session.expire_all()
    return db.session.get(ChargeSession, session_id)


def _commands_done(port_id: int) -> bool:
    db.session.expire_all()
    statuses = db.session.execute(select(PortCommand.status).where(PortCommand.port_id == port_id)).scalars().all()
    return bool(statuses) and all(status == DONE for status in statuses)


def _charge(clock, device, gateway, port_id: int, minutes: int, step: int = 5):
    """Let `minutes` pass on the device and the clock, the supervisor ticking every `step` minutes."""
    for _ in range(minutes // step):
        clock.advance(minutes=step)
        device.advance(step * 60)
        wait_for(lambda: _stored(port_id).reading_at == clock.now, what="the device's report stored")
        tick(clock.now)


def _start(make_resident, port: Port, clock):
    resident = make_resident(balance_fen=1000)
    session = svc.start_session(resident.id, db.session.get(Port, port.id), now=clock.now)
    db.session.commit()
    return resident, session.id


def test_shelly_channel_charges_until_full_and_is_billed_from_its_meter(
    app, make_site, make_resident, clock, mqtt_gateway, devices
):
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    device.switches[2].energy_wh = 7321.0  # the channel's counter has been running for months
    port = _bound_port(make_site, shelly.target(device.prefix, 2))
    gateway = mqtt_gateway()
    wait_for(lambda: _stored(port.id).link_online and _stored(port.id).state == "Available", what="online")

    resident, session_id = _start(make_resident, port, clock)
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    switch_set = device.calls()[-1]
    assert switch_set["method"] == "Switch.Set"
    assert switch_set["params"] == {"id": 2, "on": True, "toggle_after": 12 * 3600}  # the device-side cap
    assert device.switches[2].output is True
    gateway.flush()
    assert tick(clock.now).confirmed == 1
    assert _session(session_id).state == CHARGING

    device.plug(2, 240.0)
    _charge(clock, device, gateway, port.id, 120)
    assert _stored(port.id).watts == 240
    assert _session(session_id).energy_wh == 480

    device.plug(2, 3.0)  # the charger tapers to a trickle: full after 10 minutes below the threshold
    _charge(clock, device, gateway, port.id, 30)
    session = _session(session_id)
    assert (session.state, session.end_reason) == (ENDED, svc.FULL)
    wait_for(lambda: _commands_done(port.id) and device.switches[2].output is False, what="the relay opened")
    assert device.calls()[-1]["params"] == {"id": 2, "on": False}
    assert 480 <= session.energy_wh <= 482  # what the meter counted for this session, not its 7321 Wh past
    assert 0 < session.cost_fen <= session.hold_fen
    assert wallet_balance(resident.id) == 1000 - session.cost_fen
    assert check_ledger() == []


def test_tasmota_plug_charges_with_pulse_time_and_is_billed_from_its_meter(
    app, make_site, make_resident, clock, mqtt_gateway, devices
):
    plug = TasmotaEmulator(unique("sonoff-pow")).connect()
    devices.append(plug)
    plug.relays[0].total_wh = 6294.0
    port = _bound_port(make_site, tasmota.target(plug.topic))
    gateway = mqtt_gateway()
    plug.sensor()
    wait_for(lambda: _stored(port.id).meter_wh == 6294, what="the first SENSOR")

    resident, session_id = _start(make_resident, port, clock)
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    assert plug.switching == [("PulseTime1", str(12 * 3600 + 100)), ("POWER1", "ON")]
    gateway.flush()
    assert tick(clock.now).confirmed == 1

    plug.plug(1, 180.0)
    _charge(clock, plug, gateway, port.id, 60)
    plug.plug(1, 2.0)
    _charge(clock, plug, gateway, port.id, 30)
    session = _session(session_id)
    assert (session.state, session.end_reason) == (ENDED, svc.FULL)
    wait_for(lambda: _commands_done(port.id) and not plug.relays[0].on, what="the relay opened")
    assert plug.switching[-1] == ("POWER1", "OFF")
    assert 180 <= session.energy_wh <= 182
    assert wallet_balance(resident.id) == 1000 - session.cost_fen
    assert check_ledger() == []


def test_a_reboot_mid_charge_neither_bills_negative_nor_twice(
    app, make_site, make_resident, clock, mqtt_gateway, devices
):
    device = ShellyEmulator(unique("shellyplusplugs"), channels=1, model="shellyplusplugs").connect()
    devices.append(device)
    device.switches[0].energy_wh = 5000.0
    port = _bound_port(make_site, shelly.target(device.prefix, 0))
    gateway = mqtt_gateway()
    wait_for(lambda: _stored(port.id).link_online, what="online")
    _resident, session_id = _start(make_resident, port, clock)
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    gateway.flush()
    tick(clock.now)
    device.plug(0, 240.0)
    _charge(clock, device, gateway, port.id, 60)
    assert _session(session_id).energy_wh == 240

    device.reboot(restore_output=True)  # power blip: the counter restarts at 0, the relay comes back on
    wait_for(lambda: _stored(port.id).meter_wh == 0, what="the counter reset reported")
    _charge(clock, device, gateway, port.id, 30)
    session = _session(session_id)
    assert session.state == CHARGING
    assert session.energy_wh == 360  # 240 before the reboot + 120 after


def test_a_relay_that_never_comes_back_ends_offline_at_what_was_measured(
    app, make_site, make_resident, clock, mqtt_gateway, devices
):
    plug = TasmotaEmulator(unique("sonoff-pow")).connect()
    devices.append(plug)
    port = _bound_port(make_site, tasmota.target(plug.topic))
    gateway = mqtt_gateway()
    plug.sensor()
    wait_for(lambda: _stored(port.id).link_online, what="online")
    resident, session_id = _start(make_resident, port, clock)
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    gateway.flush()
    tick(clock.now)
    plug.plug(1, 200.0)
    _charge(clock, plug, gateway, port.id, 30)
    assert _session(session_id).energy_wh == 100

    plug.go_offline()  # LWT Offline from the broker; PulseTime still ends the charge on the device
    wait_for(lambda: _stored(port.id).link_online is False, what="the LWT stored")
    for _ in range(3):
        clock.advance(minutes=3)
        tick(clock.now)
    session = _session(session_id)
    assert (session.state, session.end_reason) == (ENDED, svc.OFFLINE)
    assert session.energy_wh == 100
    assert wallet_balance(resident.id) == 1000 - session.cost_fen
    assert check_ledger() == []


def test_a_relay_back_within_the_debounce_bills_what_it_metered_while_away(
    app, make_site, make_resident, clock, mqtt_gateway, devices
):
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    port = _bound_port(make_site, shelly.target(device.prefix, 1))
    gateway = mqtt_gateway()
    wait_for(lambda: _stored(port.id).link_online, what="online")
    _resident, session_id = _start(make_resident, port, clock)
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    gateway.flush()
    tick(clock.now)
    device.plug(1, 200.0)
    _charge(clock, device, gateway, port.id, 30)

    device.go_offline()
    wait_for(lambda: _stored(port.id).link_online is False, what="the last will stored")
    clock.advance(minutes=2)
    device.advance(120)
    tick(clock.now)
    assert _session(session_id).state == CHARGING  # not yet given up on
    device.come_back()
    clock.advance(minutes=1)
    device.advance(60)
    wait_for(lambda: _stored(port.id).link_online, what="back online")
    # The status it announced on coming back and its next report race through the broker: wait for the latter.
    wait_for(lambda: _stored(port.id).meter_wh == 110, what="the report after coming back stored")
    gateway.flush()
    tick(clock.now)
    assert _session(session_id).energy_wh == 110  # 30 min before, 3 min while away and since
