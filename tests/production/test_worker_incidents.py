"""The worker opens a shed's safety incident by itself when a port cuts off an overload."""

import threading

from sqlalchemy import select

from chargeshed.charging import sessions as svc
from chargeshed.extensions import db
from chargeshed.ports.sim import OVERLOAD
from chargeshed.safety.models import Incident
from chargeshed.sites.models import Port
from chargeshed.worker import Worker


def test_worker_rounds_turn_an_overload_cut_off_into_an_open_incident(app, make_site, make_resident, driver, clock):
    make_site()
    port = db.session.execute(select(Port).where(Port.code == "T11001")).scalar_one()
    driver.plug(port.code, OVERLOAD)
    session = svc.start_session(make_resident(balance_fen=1000).id, port)
    db.session.commit()  # start_session works in the caller's transaction: the test is the boundary
    worker = Worker(app, interval=0.05, listen=False)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        for _ in range(100):  # rounds: start goes out, heater draws 1500 W, overload ends the session
            clock.advance(seconds=10)
            threading.Event().wait(0.05)
            with app.app_context():
                if db.session.execute(select(Incident)).first():
                    break
    finally:
        worker.stop()
        runner.join(timeout=10)
    db.session.expire_all()
    assert db.session.get(type(session), session.id).end_reason == svc.OVERLOAD
    incident = db.session.execute(select(Incident)).scalar_one()
    assert incident.shed_id == port.shed_id and incident.kind == "overload"
