"""The telemetry store: readings in any order, meters that reset, links, device-side sessions."""

from datetime import timedelta

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.ports import telemetry
from chargeshed.ports.models import DeviceLink, MeterSample, PortTelemetry
from chargeshed.ports.telemetry import Reading
from chargeshed.sites.models import Port
from tests.conftest import START

TARGET = "shelly:shellypro4pm-a1/2"


def _bound(make_site, code="T11001", target=TARGET) -> Port:
    make_site()
    port = db.session.execute(select(Port).where(Port.code == code)).scalar_one()
    telemetry.bind(port, target)
    db.session.commit()
    return port


def _row(port) -> PortTelemetry:
    db.session.expire_all()
    return db.session.get(PortTelemetry, port.id)


def at(minutes: float):
    return START + timedelta(minutes=minutes)


def test_an_older_reading_never_overwrites_a_newer_one(app, make_site):
    port = _bound(make_site)
    assert telemetry.record_reading(TARGET, Reading(at=at(2), state="Charging", watts=180, meter_wh=1000))
    # Delivered late (queued by the device while it was offline): the newer reading stays.
    assert not telemetry.record_reading(TARGET, Reading(at=at(1), state="Available", watts=0, meter_wh=990))
    db.session.commit()
    row = _row(port)
    assert (row.state, row.watts, row.meter_wh, row.reading_at) == ("Charging", 180, 1000, at(2))
    assert row.link_online and row.heard_at == at(2)


def test_a_meter_that_resets_never_bills_negative_or_twice(app, make_site):
    port = _bound(make_site)
    telemetry.record_session_event(TARGET, telemetry.STARTED, at(0), "S1", meter_wh=5000)
    for minute, meter in [(10, 5030), (20, 5060), (30, 12), (40, 40), (40, 40), (35, 5100)]:
        telemetry.record_reading(TARGET, Reading(at=at(minute), meter_wh=meter, relay_on=True))
    db.session.commit()
    row = _row(port)
    # 60 Wh before the reboot, 12 counted by the restarted meter, then 28 more; the late 5100 is ignored.
    assert row.energy_wh - row.session_start_wh == 60 + 12 + 28
    samples = db.session.execute(select(MeterSample.energy_wh).order_by(MeterSample.id)).scalars().all()
    assert samples == sorted(samples) and len(samples) == 4  # one per newer reading, never decreasing


def test_partial_readings_keep_the_other_fields(app, make_site):
    port = _bound(make_site)
    telemetry.record_reading(TARGET, Reading(at=at(0), state="Charging", watts=200, relay_on=True, temperature_c=41.5))
    telemetry.record_reading(TARGET, Reading(at=at(1), watts=150))
    telemetry.record_reading(TARGET, Reading(at=at(2), fault="overtemp"))
    db.session.commit()
    row = _row(port)
    assert (row.state, row.watts, row.relay_on, row.temperature_c, row.fault) == (
        "Charging",
        150,
        True,
        41.5,
        "overtemp",
    )
    telemetry.record_reading(TARGET, Reading(at=at(3), fault=""))
    db.session.commit()
    assert _row(port).fault is None


def test_session_stop_delivered_late_bills_the_device_meter(app, make_site):
    port = _bound(make_site, target="ocpp:CP-1/1")
    telemetry.record_session_event("ocpp:CP-1/1", telemetry.STARTED, at(0), "S7", meter_wh=100)
    telemetry.record_reading("ocpp:CP-1/1", Reading(at=at(30), meter_wh=160))
    # The station queued its stop while offline and sends it later, with an earlier meter reading.
    assert telemetry.record_session_event(
        "ocpp:CP-1/1", telemetry.STOPPED, at(20), "S7", meter_wh=140, reason="unplugged", heard_at=at(45)
    )
    assert not telemetry.record_session_event("ocpp:CP-1/1", telemetry.STOPPED, at(20), "S7", meter_wh=140)
    assert not telemetry.record_session_event("ocpp:CP-1/1", telemetry.STOPPED, at(20), "S99", meter_wh=1)
    db.session.commit()
    row = _row(port)
    assert row.session_stop_wh - row.session_start_wh == 40
    assert (row.session_stopped_at, row.session_stop_reason) == (at(20), "unplugged")


def test_link_state_of_a_device_covers_all_its_ports(app, make_site):
    make_site()
    ports = db.session.execute(select(Port).order_by(Port.id)).scalars().all()
    for channel, port in enumerate(ports[:3]):
        telemetry.bind(port, f"shelly:box-1/{channel}")
    telemetry.bind(ports[3], "shelly:box-2/0")
    telemetry.record_link("shelly:box-1", True, at(1), gateway_id="gw-a")
    db.session.commit()
    online = dict(db.session.execute(select(PortTelemetry.port_id, PortTelemetry.link_online)).all())
    assert [online[p.id] for p in ports] == [True, True, True, False]
    # An old connection of gw-b closing does not take down the link gw-a holds now.
    telemetry.record_link("shelly:box-1/0", False, at(2), gateway_id="gw-b")
    db.session.commit()
    assert db.session.get(DeviceLink, "shelly:box-1").online
    telemetry.record_link("shelly:box-1", False, at(3), gateway_id="gw-a")
    db.session.commit()
    link = db.session.get(DeviceLink, "shelly:box-1")
    assert (link.online, link.gateway_id, link.heard_at, link.changed_at) == (False, None, at(1), at(3))
    assert not any(db.session.execute(select(PortTelemetry.link_online)).scalars())
