"""A device that went offline mid-charge comes back: what its meter counted meanwhile is billed, once.

Through the real broker (Shelly and Tasmota emulators, the gateway's MQTT adapters) and through the
OCPP gateway (a station built on the ocpp library delivering its queued StopTransaction)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from chargeshed.charging import late_meter
from chargeshed.charging import sessions as svc
from chargeshed.charging.models import ENDED, SessionEvent
from chargeshed.charging.supervisor import tick
from chargeshed.charging.tariff import default_tariff
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.money.models import LedgerTxn
from chargeshed.ports import registry, shelly, tasmota, telemetry
from chargeshed.sites.models import Port
from tests.ports.emulators.base import unique, wait_for
from tests.ports.emulators.shelly import ShellyEmulator
from tests.ports.emulators.tasmota import TasmotaEmulator
from tests.ports.ocpp_gateway import RunningGateway
from tests.ports.ocpp_station import station_connected
from tests.ports.test_mqtt_gateway import _bound_port, _charge, _commands_done, _session, _start, _stored
from tests.ports.test_ocpp_gateway import booted, in_thread, run, session_row


def _late_txns(session_id: int) -> int:
    db.session.expire_all()
    return db.session.execute(
        select(func.count()).select_from(LedgerTxn).where(LedgerTxn.ref == late_meter.txn_ref(session_id))
    ).scalar_one()


def _events(session_id: int) -> list[str]:
    db.session.expire_all()
    return (
        db.session.execute(
            select(SessionEvent.detail).where(
                SessionEvent.session_id == session_id, SessionEvent.kind == late_meter.EVENT
            )
        )
        .scalars()
        .all()
    )


def _ended(session_id: int) -> tuple:
    session = _session(session_id)
    return session.end_reason, session.energy_wh, session.cost_fen


def _offline_for(clock, device, port_id: int, session_id: int, minutes: int) -> None:
    """The device is gone: the clock runs on (the supervisor ticking), the device charges on by itself."""
    wait_for(lambda: _stored(port_id).link_online is False, what="the last will stored")
    for _ in range(minutes // 3):
        clock.advance(minutes=3)
        device.advance(180)
        tick(clock.now)
    session = _session(session_id)
    assert (session.state, session.end_reason) == (ENDED, svc.OFFLINE)


def test_a_shelly_back_from_offline_bills_what_it_metered_while_away_once(
    app, client, login, make_site, make_resident, clock, mqtt_gateway, devices
):
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    device.switches[0].energy_wh = 1234.0
    port = _bound_port(make_site, shelly.target(device.prefix, 0))
    gateway = mqtt_gateway()
    wait_for(lambda: _stored(port.id).link_online, what="online")
    resident, session_id = _start(make_resident, port, clock)
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    gateway.flush()
    tick(clock.now)
    device.plug(0, 180.0)
    _charge(clock, device, gateway, port.id, 30)
    assert _session(session_id).energy_wh == 90

    device.go_offline()
    _offline_for(clock, device, port.id, session_id, 60)  # 60 more minutes at 180 W on the device
    session = _session(session_id)
    assert (session.energy_wh, session.cost_fen) == (90, 25)  # ended at what was measured: 1 hour
    assert wallet_balance(resident.id) == 975

    device.come_back()  # toggle_after (12 h) has not run out: the relay is still on
    wait_for(lambda: _stored(port.id).link_online, what="back online")
    clock.advance(minutes=1)
    device.advance(60)
    # The stop queued at the offline end goes out now; the meter is read at the stop.
    wait_for(lambda: _commands_done(port.id) and not device.switches[0].output, what="the stop delivered")
    gateway.flush()
    report = tick(clock.now)
    assert report.late_settled == 1
    session = _session(session_id)
    assert session.energy_wh == 90 + 183  # every Wh the channel counted for the session
    # 91 minutes charged at 180 W (tier 1, 25 fen an hour): two started hours.
    assert session.cost_fen == 50
    assert wallet_balance(resident.id) == 950
    assert _late_txns(session_id) == 1
    assert _events(session_id) == ["+183 Wh metered offline, +25 fen"]
    login(resident)
    statement = client.get("/wallet/statement").get_data(as_text=True)
    line = statement.split('data-kind="late_meter"', 1)[1].split("</tr>", 1)[0]
    assert "充电补扣：端口离线期间计量的电量" in line and "−¥0.25" in line and f"/s/{session_id}" in line

    device.report()  # the device says it all again: nothing more is billed
    clock.advance(minutes=1)
    gateway.flush()
    assert tick(clock.now).late_settled == 0
    assert _session(session_id).cost_fen == 50 and wallet_balance(resident.id) == 950
    assert _late_txns(session_id) == 1
    assert check_ledger() == []


def test_a_tasmota_whose_pulse_time_ended_the_charge_offline_bills_up_to_its_cap(
    app, make_site, make_resident, clock, mqtt_gateway, devices
):
    plug = TasmotaEmulator(unique("sonoff-pow")).connect()
    devices.append(plug)
    terms = default_tariff()
    make_site(tariff=type(terms)(**{**terms.__dict__, "max_minutes": 120}))
    port = db.session.execute(select(Port).order_by(Port.id)).scalars().first()
    telemetry.bind(port, tasmota.target(plug.topic))
    db.session.commit()
    gateway = mqtt_gateway()
    plug.sensor()
    wait_for(lambda: _stored(port.id).link_online, what="online")
    resident, session_id = _start(make_resident, port, clock)
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    assert plug.switching[0] == ("PulseTime1", str(7200 + 100))  # the device-side cap: 2 hours
    gateway.flush()
    tick(clock.now)
    plug.plug(1, 180.0)
    _charge(clock, plug, gateway, port.id, 30)

    plug.go_offline()
    _offline_for(clock, plug, port.id, session_id, 150)  # PulseTime opens the relay at 2 hours
    assert not plug.relays[0].on
    assert _session(session_id).cost_fen == 25

    plug.come_back()
    wait_for(lambda: _stored(port.id).link_online, what="back online")
    clock.advance(minutes=1)
    wait_for(lambda: _commands_done(port.id), what="the queued stop acknowledged")
    gateway.flush()
    assert tick(clock.now).late_settled == 1
    session = _session(session_id)
    assert session.energy_wh == 360  # 30 minutes + 90 minutes to the cap, at 180 W
    assert session.cost_fen == 50  # two hours, never past the cap
    assert wallet_balance(resident.id) == 950
    plug.sensor()
    clock.advance(minutes=1)
    gateway.flush()
    tick(clock.now)
    assert _late_txns(session_id) == 1 and wallet_balance(resident.id) == 950
    assert check_ledger() == []


def test_a_late_meter_beyond_the_wallet_charges_what_it_holds_and_says_so(
    app, make_site, make_resident, clock, mqtt_gateway, devices
):
    device = ShellyEmulator(unique("shellyplusplugs"), channels=1, model="shellyplusplugs").connect()
    devices.append(device)
    port = _bound_port(make_site, shelly.target(device.prefix, 0))
    gateway = mqtt_gateway()
    wait_for(lambda: _stored(port.id).link_online, what="online")
    resident = make_resident(balance_fen=310)
    session_id = svc.start_session(resident.id, db.session.get(Port, port.id), now=clock.now).id
    db.session.commit()
    wait_for(lambda: _commands_done(port.id), what="the start acknowledged")
    gateway.flush()
    tick(clock.now)
    device.plug(0, 180.0)
    _charge(clock, device, gateway, port.id, 30)
    device.go_offline()
    _offline_for(clock, device, port.id, session_id, 120)
    assert wallet_balance(resident.id) == 310 - 25
    # The resident spends the rest meanwhile: 15 fen are left when the device comes back.
    ledger.post(
        "test:spend",
        "test",
        [ledger.Leg(ledger.wallet_account(resident.id), -270), ledger.Leg(ledger.external_account("test"), 270)],
    )
    db.session.commit()

    device.come_back()
    wait_for(lambda: _stored(port.id).link_online, what="back online")
    clock.advance(minutes=1)
    wait_for(lambda: _commands_done(port.id), what="the stop delivered")
    gateway.flush()
    tick(clock.now)
    assert wallet_balance(resident.id) == 0
    assert _session(session_id).cost_fen == 25 + 15
    [detail] = _events(session_id)
    assert detail.endswith("+15 fen (35 fen not covered by the wallet)")
    assert check_ledger() == []


METER_START = 20_000


def test_an_ocpp_station_back_with_its_queued_stop_bills_the_offline_window_by_its_own_meter(
    app, client, clock, make_site, make_resident, login
):
    make_site(sheds=(2,))
    port = db.session.execute(select(Port).order_by(Port.id)).scalars().first()
    key = registry.add_charger("CP-9", 1).key
    telemetry.bind(port, "ocpp:CP-9/1")
    db.session.commit()
    resident = make_resident(balance_fen=1000)
    login(resident)
    code, user_id = port.code, resident.id

    def tick_at(now):
        return tick(now)

    with RunningGateway(app, clock) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-9", key) as station:
                station.clock = clock
                await booted(station, 1)
                response = await asyncio.to_thread(client.post, f"/p/{code}/start")
                session_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[-1])
                await station.next_asked("RemoteStartTransaction")
                started = await station.start_transaction(1, f"S{session_id}", METER_START)
                await gateway.flush()
                await in_thread(app, tick_at, clock.now)
                t0 = clock.now
                clock.advance(minutes=30)
                await station.meter(1, started.transaction_id, wh=METER_START + 90, w=180)
                await gateway.flush()
                await in_thread(app, tick_at, clock.now)
            # The link drops: the supervisor gives up after the debounce, the station charges on.
            for _ in range(20):
                clock.advance(minutes=3)
                await in_thread(app, tick_at, clock.now)
            ended = await in_thread(app, lambda: _ended(session_id))
            assert ended == ("offline", 90, 25)
            async with station_connected(gateway.port, "CP-9", key) as station:
                station.clock = clock
                await station.boot()
                for minute in (45, 60, 75):
                    await station.meter(
                        1, started.transaction_id, wh=METER_START + 3 * minute, w=180, at=t0 + timedelta(minutes=minute)
                    )
                await station.stop_transaction(
                    started.transaction_id, METER_START + 270, "Local", at=t0 + timedelta(minutes=90)
                )
                await station.status(1, "Available")
                await gateway.flush()
                first = await in_thread(app, tick_at, clock.now)
                # The station re-sends its stop (it never saw our answer): billed once.
                await station.stop_transaction(
                    started.transaction_id, METER_START + 270, "Local", at=t0 + timedelta(minutes=90)
                )
                await gateway.flush()
                clock.advance(minutes=1)
                second = await in_thread(app, tick_at, clock.now)
                return session_id, first.late_settled, second.late_settled

        session_id, first, second = run(scenario())
    assert (first, second) == (1, 0)
    session = session_row(session_id)
    assert session.energy_wh == 270  # meterStop − meterStart
    assert session.cost_fen == 50  # 90 minutes by the station's own stop time: two started hours
    assert wallet_balance(user_id) == 950
    assert _late_txns(session_id) == 1
    assert check_ledger() == []
