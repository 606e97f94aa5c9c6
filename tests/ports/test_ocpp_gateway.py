"""OCPP stations through the running gateway, end to end: a station built on the ocpp library's client
side talks over a real socket to the gateway (OCPP adapter, telemetry writer, outbox delivery); the
resident uses the web pages; the supervisor ticks on the fake clock. Money is checked in the ledger."""

from __future__ import annotations

import asyncio
import json

import pytest
from ocpp.exceptions import PropertyConstraintViolationError
from sqlalchemy import func, select
from websockets.exceptions import InvalidStatus

from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.ports import registry, telemetry
from chargeshed.ports.models import PortCommand
from chargeshed.ports.ocpp_models import OcppTransaction
from chargeshed.sites.models import Port
from tests.ports.ocpp_gateway import RunningGateway
from tests.ports.ocpp_station import NoProfileStation, station_connected

METER_START = 10_000


@pytest.fixture
def shed(app, make_site, make_resident, login, client):
    """A shed whose first two ports are connectors 1 and 2 of station CP-1; a signed-in resident with ¥10."""
    site = make_site(sheds=(4,))
    ports = db.session.execute(select(Port).order_by(Port.id)).scalars().all()
    added = registry.add_charger("CP-1", 2)
    telemetry.bind(ports[0], "ocpp:CP-1/1")
    telemetry.bind(ports[1], "ocpp:CP-1/2")
    db.session.commit()
    resident = make_resident(balance_fen=1000)
    login(resident)
    return {"site": site, "code": ports[0].code, "port_id": ports[0].id, "key": added.key, "user_id": resident.id}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def in_thread(app, fn, *args):
    """Run `fn` in an app context of its own, in a thread (the station's loop keeps answering)."""

    def work():
        with app.app_context():
            try:
                return fn(*args)
            finally:
                db.session.remove()

    return asyncio.to_thread(work)


def _tick(now):
    from chargeshed.charging.supervisor import tick

    return tick(now)


def session_row(session_id: int) -> ChargeSession:
    db.session.expire_all()
    return db.session.get(ChargeSession, session_id)


def wallet(user_id: int) -> int:
    db.session.expire_all()
    return ledger.wallet_balance(user_id)


async def start_from_the_page(app, client, code: str) -> int:
    """The resident taps Start on the port page; returns the new session id."""
    response = await asyncio.to_thread(client.post, f"/p/{code}/start")
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[-1])


async def booted(station, *connectors):
    await station.boot()
    await station.status(0, "Available")
    for connector in connectors:
        await station.status(connector, "Available")


def energy(minute: int) -> int:
    """The station's register: 180 W for 70 minutes, then a 4 W trickle (full)."""
    return METER_START + (180 * min(minute, 70) + 4 * max(0, minute - 70)) // 60


def test_scan_remote_start_meter_values_auto_stop_full_billed_from_the_station_meter(app, client, clock, shed):
    with RunningGateway(app, clock) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1, 2)
                await gateway.flush()
                await in_thread(app, _tick, clock.now)

                session_id = await start_from_the_page(app, client, shed["code"])
                assert await station.next_asked("RemoteStartTransaction") == {
                    "id_tag": f"S{session_id}",
                    "connector_id": 1,
                }
                # With AuthorizeRemoteTxRequests=true the station asks first: only our reference passes.
                assert (await station.authorize(f"S{session_id}")).id_tag_info["status"] == "Accepted"
                assert (await station.authorize("04A2B3C4D5")).id_tag_info["status"] == "Invalid"
                await station.status(1, "Charging")
                started = await station.start_transaction(1, f"S{session_id}", METER_START)
                assert started.id_tag_info["status"] == "Accepted"
                transaction = started.transaction_id
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                assert session_row(session_id).state == "charging"

                minute = 0
                while session_row(session_id).state == "charging":
                    minute += 1
                    assert minute < 100, "never ended"
                    clock.advance(minutes=1)
                    watts = 180 if minute <= 70 else 4
                    await station.meter(1, transaction, wh=energy(minute), w=watts)
                    await gateway.flush()
                    await in_thread(app, _tick, clock.now)

                stop = await station.next_asked("RemoteStopTransaction")
                assert stop == {"transaction_id": transaction}
                await station.stop_transaction(transaction, energy(minute), "Remote")
                await station.status(1, "Finishing")
                await gateway.flush()
                return session_id, minute

        session_id, minute = run(scenario())
    session = session_row(session_id)
    assert session.end_reason == "full"
    # Billed from the station's own meter: meterStop − meterStart, tier from its MeterValues (180 W).
    assert session.energy_wh == energy(minute) - METER_START == 210
    assert session.tier_watts <= 200
    charged_units = -(-session.charged_seconds(session.ended_at) // 3600)
    assert session.cost_fen == charged_units * 25 == 50
    assert wallet(shed["user_id"]) == 1000 - 50
    stored = db.session.execute(select(OcppTransaction)).scalar_one()
    assert (stored.meter_start_wh, stored.meter_stop_wh, stored.stop_reason) == (METER_START, energy(minute), "remote")


def test_remote_start_carries_the_device_side_cap_as_a_tx_profile(app, client, clock, shed):
    with RunningGateway(app, clock) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1)
                session_id = await start_from_the_page(app, client, shed["code"])
                await station.next_asked("RemoteStartTransaction")
                return session_id, station.profiles

        session_id, profiles = run(scenario())
    # The station stops delivering energy by itself at the tariff's longest charge (12 h), even if
    # it never hears from us again: 0 A from then until its transaction ends (no duration to run out).
    assert profiles == [
        {
            "charging_profile_id": session_id,
            "stack_level": 0,
            "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Relative",
            "charging_schedule": {
                "charging_rate_unit": "A",
                "charging_schedule_period": [
                    {"start_period": 0, "limit": 32.0},
                    {"start_period": 12 * 3600, "limit": 0.0},
                ],
            },
        }
    ]


def test_a_station_without_charging_profiles_starts_without_the_cap_and_is_remembered(
    app, client, runner, clock, shed, caplog
):
    with RunningGateway(app, clock) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-1", shed["key"], station_cls=NoProfileStation) as station:
                station.clock = clock
                await booted(station, 1)
                first = await start_from_the_page(app, client, shed["code"])
                # Rejected with the TxProfile, sent again at once without it, accepted: the charge starts.
                await station.next_asked("RemoteStartTransaction")
                await station.next_asked("RemoteStartTransaction")
                started = await station.start_transaction(1, f"S{first}", METER_START)
                assert started.id_tag_info["status"] == "Accepted"
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                assert session_row(first).state == "charging"
                clock.advance(minutes=10)
                assert (await asyncio.to_thread(client.post, f"/s/{first}/stop")).status_code in (200, 302)
                await station.next_asked("RemoteStopTransaction")
                await station.stop_transaction(started.transaction_id, METER_START + 30, "Remote")
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                assert session_row(first).state == "ended"
                # The next start goes without a profile on the first try.
                second = await start_from_the_page(app, client, shed["code"])
                assert await station.next_asked("RemoteStartTransaction") == {"id_tag": f"S{second}", "connector_id": 1}
                await station.start_transaction(1, f"S{second}", METER_START + 30)
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                assert session_row(second).state == "charging"
                return station.profiles

        profiles = run(scenario())
    assert [profile is not None for profile in profiles] == [True, False, False]
    assert "CP-1 answered a RemoteStartTransaction with a chargingProfile Rejected" in caplog.text
    listed = json.loads(runner.invoke(args=["chargers", "list", "--format", "json"]).output)
    assert [(c["charge_point_id"], c["device_cap"]) for c in listed] == [("CP-1", False)]
    assert "no device-side cap" in runner.invoke(args=["chargers", "list"]).output


def test_a_station_that_refused_profiles_gets_the_cap_again_after_a_boot_or_when_it_takes_one(
    app, client, runner, clock, shed, monkeypatch
):
    """The refusal is a finding about the station's firmware: a BootNotification (new firmware takes
    effect at a boot) forgets it; so does a profile taken when asked again after a while."""
    from chargeshed.ports import ocpp, ocpp_store

    def device_cap() -> bool:
        (listed,) = json.loads(runner.invoke(args=["chargers", "list", "--format", "json"]).output)
        return listed["device_cap"]

    async def charge(station) -> None:
        session_id = await start_from_the_page(app, client, shed["code"])
        await station.next_asked("RemoteStartTransaction")
        started = await station.start_transaction(1, f"S{session_id}", METER_START)
        await gateway.flush()
        assert (await asyncio.to_thread(client.post, f"/s/{session_id}/stop")).status_code in (200, 302)
        await station.next_asked("RemoteStopTransaction")
        await station.stop_transaction(started.transaction_id, METER_START, "Remote")
        await gateway.flush()
        await in_thread(app, _tick, clock.now)

    def refused_again() -> None:
        ocpp_store.profiles_refused("CP-1", clock.now)
        db.session.commit()

    refused_again()  # found on the old firmware
    assert device_cap() is False
    with RunningGateway(app, clock) as gateway:

        async def scenario():
            # Updated firmware: the station boots, and its next start carries the TxProfile again.
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1)
                await gateway.flush()
                assert await in_thread(app, device_cap) is True
                await in_thread(app, _tick, clock.now)
                await charge(station)
                rebooted = station.profiles

            # Refused again later; reconnected without a boot, it is started without a profile…
            await in_thread(app, refused_again)
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await station.status(1, "Available")
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                await charge(station)
                # …until it is asked again (a day later), takes the profile and the refusal is forgotten.
                monkeypatch.setattr(ocpp, "PROFILE_RETRY_SECONDS", 0)
                await charge(station)
                await gateway.flush()
                return rebooted, station.profiles

        rebooted, reconnected = run(scenario())
    assert [profile is not None for profile in rebooted] == [True]
    assert [profile is not None for profile in reconnected] == [False, True]
    assert device_cap() is True


def test_ports_of_a_station_that_reports_itself_faulted_or_unavailable_are_not_offered(app, client, clock, shed):
    """Connector 0 Faulted or Unavailable while each connector still says Available: the site page
    does not count its ports free, the port page offers no start and a start is refused with the
    reason (no hold, no RemoteStart). Back Available, the ports are free and start again."""
    code, site_url = shed["code"], f"/site/{shed['site'].id}"

    async def page(url: str) -> str:
        return (await asyncio.to_thread(client.get, url)).get_data(as_text=True)

    with RunningGateway(app, clock) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1, 2)
                for state, shown in (("Faulted", "fault"), ("Unavailable", "maintenance")):
                    clock.advance(minutes=1)
                    await station.status(0, state)
                    await gateway.flush()
                    await in_thread(app, _tick, clock.now)
                    assert f'data-state="{shown}"' in await page(f"/p/{code}")
                    assert 'data-testid="start"' not in await page(f"/p/{code}")
                    site = await page(site_url)
                    assert 'data-testid="free-count">2<' in site and 'data-testid="out-count">2<' in site
                    refused = await asyncio.to_thread(client.post, f"/p/{code}/start")
                    assert refused.status_code == 302 and refused.headers["Location"].endswith(f"/p/{code}")

                clock.advance(minutes=1)
                await station.status(0, "Available")
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                assert 'data-state="free"' in await page(f"/p/{code}")
                assert 'data-testid="free-count">4<' in await page(site_url)
                session_id = await start_from_the_page(app, client, code)
                assert (await station.next_asked("RemoteStartTransaction"))["id_tag"] == f"S{session_id}"

        run(scenario())
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(ChargeSession)) == 1
    assert db.session.scalar(select(func.count()).select_from(PortCommand)) == 1
    assert wallet(shed["user_id"]) == 1000 - session_row(1).hold_fen


def test_the_resident_stops_and_the_station_gets_remote_stop_for_its_transaction(app, client, clock, shed):
    with RunningGateway(app, clock) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1)
                session_id = await start_from_the_page(app, client, shed["code"])
                await station.next_asked("RemoteStartTransaction")
                started = await station.start_transaction(1, f"S{session_id}", METER_START)
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                clock.advance(minutes=20)
                await station.meter(1, started.transaction_id, wh=METER_START + 60, w=180)
                await gateway.flush()
                await in_thread(app, _tick, clock.now)

                response = await asyncio.to_thread(client.post, f"/s/{session_id}/stop")
                assert response.status_code in (200, 302)
                assert await station.next_asked("RemoteStopTransaction") == {"transaction_id": started.transaction_id}
                await station.stop_transaction(started.transaction_id, METER_START + 61, "Remote")
                await gateway.flush()
                return session_id

        session_id = run(scenario())
    session = session_row(session_id)
    assert (session.state, session.end_reason, session.energy_wh) == ("ended", "user_stop", 60)
    assert session.cost_fen == 25 and wallet(shed["user_id"]) == 975


def test_a_stop_queued_while_offline_is_settled_by_its_own_time_and_meter(app, client, clock, shed):
    with RunningGateway(app, clock) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1)
                session_id = await start_from_the_page(app, client, shed["code"])
                await station.next_asked("RemoteStartTransaction")
                started = await station.start_transaction(1, f"S{session_id}", METER_START)
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                t0 = clock.now
            # The link drops; the station keeps charging and queues what it measures, then the bike
            # is unplugged. Two minutes later it is back and delivers its queue in order.
            clock.advance(minutes=2)
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                queued = [
                    await station.meter(
                        1,
                        started.transaction_id,
                        wh=METER_START + 3,
                        w=180,
                        at=t0.replace(second=0) + (clock.now - t0) / 2,
                    ),
                    await station.stop_transaction(
                        started.transaction_id, METER_START + 5, "EVDisconnected", at=t0 + (clock.now - t0) * 3 / 4
                    ),
                ]
                assert all(answer is not None for answer in queued)  # answered, never with an error
                await station.status(1, "Available")
                await gateway.flush()
                await in_thread(app, _tick, clock.now)
                return session_id, t0 + (clock.now - t0) * 3 / 4

        session_id, stopped_at = run(scenario())
    session = session_row(session_id)
    assert (session.end_reason, session.energy_wh, session.ended_at) == ("unplugged", 5, stopped_at)
    assert session.cost_fen == 25  # one started hour at the lowest tier (5 Wh is billable)
    assert wallet(shed["user_id"]) == 975


def test_a_repeated_start_transaction_after_a_reconnect_is_one_transaction(app, client, clock, shed):
    with RunningGateway(app, clock) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1)
                session_id = await start_from_the_page(app, client, shed["code"])
                await station.next_asked("RemoteStartTransaction")
                first = await station.start_transaction(1, f"S{session_id}", METER_START, at=clock.now)
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:  # reply lost: resent
                station.clock = clock
                again = await station.start_transaction(1, f"S{session_id}", METER_START, at=clock.now)
                await gateway.flush()
            return session_id, first, again

        session_id, first, again = run(scenario())
    assert again.transaction_id == first.transaction_id and again.id_tag_info["status"] == "Accepted"
    assert db.session.execute(select(func.count(OcppTransaction.id))).scalar_one() == 1


def test_a_station_silent_after_remote_start_fails_the_start_in_60_s_and_releases_the_hold(app, client, clock, shed):
    with RunningGateway(app, clock, call_timeout=1) as gateway:

        async def scenario():
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1)
                await gateway.flush()
                station.silent = True
                session_id = await start_from_the_page(app, client, shed["code"])
                await station.next_asked("RemoteStartTransaction")
                assert wallet(shed["user_id"]) == 1000 - 300  # the hold
                clock.advance(seconds=61)
                await in_thread(app, _tick, clock.now)
                return session_id

        session_id = run(scenario())
    session = session_row(session_id)
    assert (session.state, session.end_reason, session.cost_fen) == ("failed", "start_failed", 0)
    assert wallet(shed["user_id"]) == 1000


def test_wrong_key_and_unknown_station_are_refused_and_a_stranger_id_tag_moves_no_money(app, clock, shed, caplog):
    with RunningGateway(app, clock) as gateway:

        async def scenario():
            for cp_id, key in (("CP-1", "0" * 32), ("CP-9", shed["key"])):
                with pytest.raises(InvalidStatus) as refused:
                    async with station_connected(gateway.port, cp_id, key):
                        pass
                assert refused.value.response.status_code == 401
            async with station_connected(gateway.port, "CP-1", shed["key"]) as station:
                station.clock = clock
                await booted(station, 1)
                stranger = await station.start_transaction(2, "S999", 500)
                assert stranger.id_tag_info["status"] == "Invalid"
                await station.meter(2, stranger.transaction_id, wh=600, w=200)
                await station.stop_transaction(stranger.transaction_id, 700, "Local")
                await station.stop_transaction(987654, 700, "Local")
                with pytest.raises(PropertyConstraintViolationError):
                    await station.start_transaction(3, "S1", 0)
                await gateway.flush()

        run(scenario())
    assert wallet(shed["user_id"]) == 1000
    assert db.session.execute(select(func.count(ChargeSession.id))).scalar_one() == 0
    assert db.session.execute(select(func.count(PortCommand.id))).scalar_one() == 0
    assert "transaction 987654 we never issued" in caplog.text
    assert "unknown connector 3" in caplog.text
