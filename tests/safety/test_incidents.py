"""Incidents from port events: overload cut-offs, stuck relays and faults; one open per shed and kind."""

from sqlalchemy import select

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.ports.models import PortEvent
from chargeshed.safety.incidents import close_incident, sync_incidents
from chargeshed.safety.models import Incident
from chargeshed.sites.models import Port


def _port(code: str) -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


def _charge(user, code, driver, clock, tick, profile):
    """Plug a simulated bike, start a charge and let the supervisor run for a few minutes."""
    driver.plug(code, profile)
    tick()  # the port has been heard from just now
    session = charging.start_session(user.id, _port(code))
    for _ in range(4):
        tick()
        clock.advance(minutes=1)
    db.session.refresh(session)
    return session


def _incidents():
    return list(db.session.execute(select(Incident).order_by(Incident.id)).scalars())


def test_overload_cutoff_opens_an_incident_once_and_repeats_are_added_to_it(
    app, make_site, make_resident, driver, clock, tick
):
    make_site(sheds=(4, 2))
    user = make_resident(balance_fen=5000)
    first = _charge(user, "T11001", driver, clock, tick, "overload")
    assert (first.state, first.end_reason) == ("ended", "overload")

    report = sync_incidents(clock.now)
    db.session.commit()
    (incident,) = _incidents()
    assert report.opened == [incident.id]
    assert (incident.kind, incident.state, incident.shed_id, incident.occurrences) == (
        "overload",
        "open",
        first.shed_id,
        1,
    )
    assert incident.occurrences_log[0].session_id == first.id

    again = sync_incidents(clock.now)  # idempotent
    db.session.commit()
    assert (again.opened, again.added) == ([], 0)
    assert _incidents()[0].occurrences == 1

    clock.advance(minutes=10)
    second = _charge(user, "T11002", driver, clock, tick, "overload")
    assert second.end_reason == "overload"
    sync_incidents(clock.now)
    db.session.commit()
    (incident,) = _incidents()  # same shed, same kind: added to the open one
    assert incident.occurrences == 2 and incident.last_seen_at == second.ended_at

    other_shed = _charge(user, "T12001", driver, clock, tick, "overload")
    sync_incidents(clock.now)
    db.session.commit()
    incidents = _incidents()
    assert len(incidents) == 2 and incidents[1].shed_id == other_shed.shed_id


def test_a_new_overload_after_close_opens_a_new_incident(
    app, make_site, make_resident, make_staff, driver, clock, tick
):
    site = make_site()
    user = make_resident(balance_fen=5000)
    manager = make_staff("site_manager", site)
    _charge(user, "T11001", driver, clock, tick, "overload")
    sync_incidents(clock.now)
    db.session.commit()
    close_incident(_incidents()[0], manager.id, "Charger of bike checked, owner told to replace it")
    db.session.commit()
    clock.advance(hours=1)
    _charge(user, "T11002", driver, clock, tick, "overload")
    sync_incidents(clock.now)
    db.session.commit()
    closed, fresh = _incidents()
    assert (closed.state, closed.occurrences, closed.closed_by_id) == ("closed", 1, manager.id)
    assert (fresh.state, fresh.occurrences) == ("open", 1)


def test_stuck_relay_after_the_charge_ended_opens_an_incident(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=5000)
    session = _charge(user, "T11001", driver, clock, tick, "stuck_relay")
    assert session.state == "charging"
    charging.end_session(session, charging.USER_STOP)
    for _ in range(3):
        tick()
        clock.advance(minutes=1)
    events = db.session.execute(select(PortEvent.kind, PortEvent.detail)).all()
    assert ("fault", "stuck_relay") in events
    sync_incidents(clock.now)
    db.session.commit()
    (incident,) = _incidents()
    assert incident.kind == "stuck_relay" and incident.occurrences_log[0].port_id == _port("T11001").id


def test_port_fault_opens_a_port_fault_incident_not_an_overload(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=5000)
    session = _charge(user, "T11001", driver, clock, tick, "fault")
    assert session.end_reason == "port_fault"
    sync_incidents(clock.now)
    db.session.commit()
    (incident,) = _incidents()
    assert incident.kind == "port_fault" and incident.occurrences_log[0].detail == "ground_fault"


def test_a_normal_charge_opens_nothing(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=5000)
    session = _charge(user, "T11001", driver, clock, tick, "lithium")
    charging.end_session(session, charging.USER_STOP)
    tick()
    assert sync_incidents(clock.now).added == 0 and _incidents() == []


def test_sync_reads_from_its_last_run_with_an_overlap_for_late_writes(app, make_site, clock):
    from datetime import timedelta

    make_site()
    port = _port("T11001")
    sync_incidents(clock.now)
    db.session.commit()
    clock.advance(minutes=30)
    sync_incidents(clock.now)
    db.session.commit()
    last_run = clock.now
    # Two fault events committed late: one a moment before the last run, one long before it.
    db.session.add_all(
        [
            PortEvent(port_id=port.id, at=last_run - timedelta(minutes=2), kind="fault", detail="ground_fault"),
            PortEvent(port_id=port.id, at=last_run - timedelta(hours=3), kind="fault", detail="relay_welded"),
        ]
    )
    db.session.commit()
    clock.advance(minutes=1)
    report = sync_incidents(clock.now)
    db.session.commit()
    assert report.added == 1
    (incident,) = _incidents()
    assert [o.detail for o in incident.occurrences_log] == ["ground_fault"]
    assert sync_incidents(clock.now).added == 0


def test_incidents_page_lists_and_closes_for_the_site_only(
    client, make_site, make_resident, make_staff, login, driver, clock, tick
):
    site = make_site()
    other = make_site()
    user = make_resident(balance_fen=5000)
    _charge(user, "T11001", driver, clock, tick, "overload")
    sync_incidents(clock.now)
    db.session.commit()
    incident = _incidents()[0]
    login(make_staff("patrol", other))
    assert 'data-testid="incident"' not in client.get("/safety/incidents").get_data(as_text=True)
    assert (
        client.post(f"/safety/incidents/{incident.id}/close", data={f"i{incident.id}-resolution": "x"}).status_code
        == 404
    )
    client.post("/logout")
    login(make_staff("patrol", site))
    page = client.get("/safety/incidents").get_data(as_text=True)
    assert 'data-kind="overload"' in page and "1号车棚" in page
    empty = client.post(f"/safety/incidents/{incident.id}/close", data={f"i{incident.id}-resolution": " "})
    assert empty.status_code == 400 and "Say what was checked or repaired." in empty.get_data(as_text=True)
    assert _incidents()[0].state == "open"
    done = client.post(f"/safety/incidents/{incident.id}/close", data={f"i{incident.id}-resolution": "Socket replaced"})
    assert done.status_code == 303
    db.session.rollback()  # what the page stored was committed, not merely flushed
    db.session.refresh(incident)
    assert (incident.state, incident.resolution) == ("closed", "Socket replaced")
