"""PostgreSQL: gateways claiming at the same moment never take the same command (SKIP LOCKED)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from chargeshed.extensions import db
from chargeshed.ports import outbox, telemetry
from chargeshed.ports.models import CMD_STOP, PortCommand
from chargeshed.sites.models import Port
from tests.conftest import PG_URL, START, _pg_ready, pg_wanted, skip_or_fail

pytestmark = pytest.mark.pg


@pytest.fixture
def db_url():
    """This module runs on PostgreSQL only."""
    if not pg_wanted():
        pytest.skip("PostgreSQL tests run with CHARGESHED_TEST_PG=1 (or on CI)")
    if not _pg_ready():
        skip_or_fail(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


def test_concurrent_claims_take_each_command_once_and_keep_each_ports_order(app, make_site):
    make_site(sheds=(40,))
    ports = db.session.execute(select(Port).order_by(Port.id)).scalars().all()
    for port in ports:
        telemetry.bind(port, f"shelly:box-{port.id}/0")
        for reason in ("first", "second"):
            outbox.enqueue(port.id, CMD_STOP, argument=reason)
    db.session.commit()
    claimed: list[list[int]] = [[] for _ in range(6)]
    barrier = threading.Barrier(6)
    errors: list[Exception] = []

    def gateway(index: int) -> None:
        with app.app_context():
            try:
                barrier.wait()
                for _ in range(40):
                    commands = outbox.claim(START, gateway_id=f"gw-{index}", schemes=("shelly",), limit=7)
                    for command in commands:
                        claimed[index].append(command.id)
                        outbox.mark_done(command.id, START)
            except Exception as exc:  # asserted below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=gateway, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    every = [command_id for ids in claimed for command_id in ids]
    assert sorted(every) == list(range(1, 81))  # all 80 sent, none twice
    assert sum(1 for ids in claimed if ids) > 1  # the work was shared
    db.session.expire_all()
    assert db.session.execute(select(func.count()).where(PortCommand.status == "done")).scalar_one() == 80
    # Each port's "first" was acknowledged before its "second" was claimed.
    for port in ports:
        first, second = (
            db.session.execute(select(PortCommand).where(PortCommand.port_id == port.id).order_by(PortCommand.id))
            .scalars()
            .all()
        )
        assert first.done_at <= second.claimed_at
