"""PostgreSQL: two gateways, one station, 50 residents pressing Start at once → one RemoteStart; the
gateway holding the station goes away, the station reconnects to the other, which stops the charge."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import func, select

from chargeshed.charging import sessions
from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.ports import registry, telemetry
from chargeshed.ports.models import OPEN_STATES, PortCommand
from chargeshed.sites.models import Port
from tests.conftest import pg_wanted
from tests.ports.ocpp_gateway import RunningGateway
from tests.ports.ocpp_station import station_connected

pytestmark = pytest.mark.pg
RESIDENTS = 50


@pytest.fixture
def pg_only(db_url):
    if not pg_wanted():
        pytest.skip("PostgreSQL tests run with CHARGESHED_TEST_PG=1 (or on CI)")


@pytest.mark.parametrize("db_url", [pytest.param("pg", marks=pytest.mark.pg)], indirect=True)
def test_two_gateways_fifty_simultaneous_starts_one_remote_start(pg_only, app, make_site, make_resident):
    make_site(sheds=(2,))
    port = db.session.execute(select(Port).order_by(Port.id)).scalars().first()
    key = registry.add_charger("CP-PG", 1).key
    telemetry.bind(port, "ocpp:CP-PG/1")
    db.session.commit()
    port_id = port.id
    residents = [make_resident(balance_fen=500).id for _ in range(RESIDENTS)]

    def press_start(user_id, barrier, outcomes):
        with app.app_context():
            try:
                barrier.wait()
                port = db.session.get(Port, port_id)
                session_id = sessions.start_session(user_id, port).id
                db.session.commit()  # the unit of work of a request
                outcomes.append(session_id)
            except sessions.StartRefused as refused:
                db.session.rollback()
                outcomes.append(refused.code)
            finally:
                db.session.remove()

    def open_commands():
        with app.app_context():
            try:
                return db.session.execute(
                    select(func.count(PortCommand.id)).where(PortCommand.status.in_(OPEN_STATES))
                ).scalar_one()
            finally:
                db.session.remove()

    async def settle(*gateways):
        for _ in range(500):
            if await asyncio.to_thread(open_commands) == 0:
                break
            await asyncio.sleep(0.05)
        for gateway in gateways:
            await gateway.flush()

    with RunningGateway(app, gateway_id="gw-a") as gateway_a, RunningGateway(app, gateway_id="gw-b") as gateway_b:

        async def scenario():
            remote_starts = []
            async with station_connected(gateway_a.port, "CP-PG", key) as station:
                await station.boot()
                await station.status(1, "Available")
                await gateway_a.flush()

                barrier, outcomes = threading.Barrier(RESIDENTS), []
                threads = [
                    threading.Thread(target=press_start, args=(user_id, barrier, outcomes)) for user_id in residents
                ]
                for thread in threads:
                    thread.start()
                await asyncio.to_thread(lambda: [thread.join(60) for thread in threads])
                started = [outcome for outcome in outcomes if isinstance(outcome, int)]
                assert len(started) == 1 and outcomes.count("port_busy") == RESIDENTS - 1, outcomes
                session_id = started[0]

                remote_starts.append(await station.next_asked("RemoteStartTransaction"))
                transaction = (await station.start_transaction(1, f"S{session_id}", 1_000)).transaction_id
                await settle(gateway_a, gateway_b)
                while not station.asked.empty():
                    action, payload = station.asked.get_nowait()
                    if action == "RemoteStartTransaction":
                        remote_starts.append(payload)
            # Gateway A goes away; the station reconnects through the load balancer to gateway B.
            await asyncio.to_thread(gateway_a.stop)
            async with station_connected(gateway_b.port, "CP-PG", key) as station:
                await station.status(1, "Charging")
                await station.meter(1, transaction, wh=1_020, w=200)
                await gateway_b.flush()

                def resident_stops():
                    with app.app_context():
                        try:
                            session = db.session.get(ChargeSession, session_id)
                            assert sessions.end_session(session, sessions.USER_STOP)
                            db.session.commit()
                        finally:
                            db.session.remove()

                await asyncio.to_thread(resident_stops)
                assert await station.next_asked("RemoteStopTransaction") == {"transaction_id": transaction}
                await station.stop_transaction(transaction, 1_020, "Remote")
                await settle(gateway_b)
                while not station.asked.empty():
                    action, payload = station.asked.get_nowait()
                    if action == "RemoteStartTransaction":
                        remote_starts.append(payload)
            return session_id, remote_starts

        session_id, remote_starts = asyncio.run(asyncio.wait_for(scenario(), 180))

    assert remote_starts == [{"id_tag": f"S{session_id}", "connector_id": 1}]
    db.session.expire_all()
    assert db.session.execute(select(func.count(ChargeSession.id))).scalar_one() == 1
    assert db.session.get(ChargeSession, session_id).state == "ended"
    assert ledger.check_ledger() == []
