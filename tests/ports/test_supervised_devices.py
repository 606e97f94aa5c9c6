"""A real device's pushed telemetry drives the supervisor: confirmation, metered billing, offline alerts."""

from datetime import timedelta

from sqlalchemy import select

from chargeshed.charging import sessions as svc
from chargeshed.charging.supervisor import tick
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.ports import outbox, telemetry
from chargeshed.ports.models import Alert
from chargeshed.ports.telemetry import Reading
from chargeshed.sites.models import Port

TARGET = "shelly:shed-a/0"


def _port(make_site) -> Port:
    make_site()
    port = db.session.execute(select(Port).where(Port.code == "T11001")).scalar_one()
    telemetry.bind(port, TARGET)
    db.session.commit()
    return port


def _push(clock, **values):
    telemetry.record_reading(TARGET, Reading(at=clock.now, **values))
    db.session.commit()


def test_a_relay_charge_is_confirmed_and_billed_from_the_device_meter_across_a_reboot(
    app, make_site, make_resident, clock
):
    port = _port(make_site)
    user = make_resident(balance_fen=1000)
    telemetry.record_link("shelly:shed-a", True, clock.now)
    _push(clock, state="Available", watts=0, meter_wh=52_000, relay_on=False)
    session = svc.start_session(user.id, port)
    (command,) = outbox.claim(clock.now, gateway_id="gw", schemes=("shelly",))
    assert (command.kind, command.session_ref, command.cap_seconds) == ("start", f"S{session.id}", 12 * 3600)
    # The relay acknowledges: the adapter reports the device-side start with the meter it read.
    outbox.mark_done(command.id, clock.now)
    telemetry.record_session_event(TARGET, telemetry.STARTED, clock.now, command.session_ref, meter_wh=52_000)
    _push(clock, state="Charging", watts=180, relay_on=True)
    assert tick(clock.now).confirmed == 1
    last = 0
    for minute, meter in [(30, 52_090), (60, 52_180), (61, 3), (90, 90)]:  # rebooted at minute 61
        clock.advance(minutes=minute - last)
        last = minute
        _push(clock, state="Charging", watts=180, meter_wh=meter, relay_on=True)
        tick(clock.now)
    db.session.refresh(session)
    assert session.energy_wh == 180 + 3 + 87  # never negative, never counted twice
    svc.end_session(session, svc.USER_STOP, clock.now)
    assert session.cost_fen == 50 and ledger.wallet_balance(user.id) == 950  # 2 started hours, ≤ 200 W


def test_a_station_that_goes_offline_raises_the_debounced_alert(app, make_site, clock):
    port = _port(make_site)
    telemetry.record_link("shelly:shed-a", True, clock.now)
    _push(clock, state="Available", watts=0, relay_on=False)
    tick(clock.now)
    telemetry.record_link("shelly:shed-a", False, clock.now + timedelta(seconds=10))
    db.session.commit()
    for _ in range(3):
        clock.advance(minutes=1)
        tick(clock.now)
    assert db.session.execute(select(Alert)).first() is None and db.session.get(Port, port.id).ocpp_state != "Offline"
    clock.advance(minutes=1)
    tick(clock.now)
    db.session.expire_all()
    alert = db.session.execute(select(Alert)).scalar_one()
    assert alert.kind == "offline" and db.session.get(Port, port.id).ocpp_state == "Offline"
    # Back online: the port reads again and the alert clears.
    clock.advance(minutes=1)
    telemetry.record_link("shelly:shed-a", True, clock.now)
    _push(clock, state="Available", watts=0, relay_on=False)
    tick(clock.now)
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).cleared_at == clock.now
    assert db.session.get(Port, port.id).ocpp_state == "Available"
