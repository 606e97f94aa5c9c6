"""The outbox: claimed, sent and marked in short transactions; never lost, never sent twice once acknowledged."""

from datetime import timedelta

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.ports import outbox, telemetry
from chargeshed.ports.driver import PortOffline, PortRejected
from chargeshed.ports.models import CMD_SET_AVAILABLE, CMD_START, CMD_STOP, PortCommand
from chargeshed.sites.models import Port
from tests.conftest import START


def _ports(make_site, *targets_):
    make_site(sheds=(len(targets_),))
    ports = db.session.execute(select(Port).order_by(Port.id)).scalars().all()
    for port, target in zip(ports, targets_, strict=True):
        telemetry.bind(port, target)
    db.session.commit()
    return ports


def _statuses():
    db.session.expire_all()
    return db.session.execute(select(PortCommand.kind, PortCommand.status).order_by(PortCommand.id)).all()


def test_a_silent_device_only_delays_its_own_commands(app, make_site):
    silent, healthy = _ports(make_site, "tasmota:silent", "tasmota:healthy")
    outbox.enqueue(silent.id, CMD_SET_AVAILABLE, argument="off")
    outbox.enqueue(silent.id, CMD_SET_AVAILABLE, argument="on")
    outbox.enqueue(healthy.id, CMD_SET_AVAILABLE, argument="off")
    db.session.commit()
    calls = []

    def send(command):
        calls.append((command.target.device_id, command.available))
        if command.target.device_id == "silent":
            raise PortOffline("no answer")

    result = outbox.deliver(send, START, gateway_id="gw", schemes=("tasmota",))
    # The silent device got its first command once (its second waits behind it); the other went out.
    assert calls == [("silent", False), ("healthy", False)]
    assert (result.sent, result.unanswered) == (1, 1)
    assert _statuses() == [("set_available", "queued"), ("set_available", "queued"), ("set_available", "done")]
    first = db.session.get(PortCommand, 1)
    assert first.attempts == 1 and first.next_attempt_at == START + timedelta(seconds=2)
    assert "no answer" in first.error
    # Not due yet: nothing is sent; once due and answered, both go out in order.
    assert outbox.deliver(send, START + timedelta(seconds=1), gateway_id="gw", schemes=("tasmota",)).sent == 0
    calls.clear()
    result = outbox.deliver(
        lambda c: calls.append(c.available), START + timedelta(seconds=3), gateway_id="gw", schemes=("tasmota",)
    )
    assert calls == [False, True] and result.sent == 2
    assert {status for _kind, status in _statuses()} == {"done"}


def test_an_acknowledged_command_is_never_sent_again(app, make_site):
    (port,) = _ports(make_site, "shelly:box/0")
    outbox.enqueue(port.id, CMD_STOP, argument="full")
    db.session.commit()
    sent = []
    outbox.deliver(sent.append, START, gateway_id="a", schemes=("shelly",))
    outbox.deliver(sent.append, START + timedelta(hours=1), gateway_id="b", schemes=("shelly",))
    assert len(sent) == 1 and sent[0].reason == "full" and _statuses() == [("stop", "done")]


def test_a_refused_command_is_rejected_with_the_device_reason(app, make_site):
    (port,) = _ports(make_site, "shelly:box/0")
    outbox.enqueue(port.id, CMD_START, session_id=None, cap_seconds=3600)
    db.session.commit()

    def refuse(command):
        assert command.cap_seconds == 3600
        raise PortRejected("overtemp")

    assert outbox.deliver(refuse, START, gateway_id="a", schemes=("shelly",)).rejected == [1]
    command = db.session.get(PortCommand, 1)
    assert (command.status, command.error) == ("rejected", "overtemp")


def test_an_unanswered_command_is_failed_with_a_reason_when_too_old(app, make_site):
    (port,) = _ports(make_site, "shelly:box/0")
    outbox.enqueue(port.id, CMD_STOP, argument="full")
    db.session.commit()

    def silent(command):
        raise TimeoutError("no reply in 10 s")

    now = START
    for _ in range(2000):
        outbox.deliver(silent, now, gateway_id="a", schemes=("shelly",))
        if _statuses() == [("stop", "failed")]:
            break
        now += timedelta(minutes=10)
    command = db.session.get(PortCommand, 1)
    assert command.status == "failed" and "not acknowledged in 86400 s" in command.error
    assert command.attempts >= 140  # retried for a day (every 10 minutes here: the backoff is capped at 60 s)


def test_a_claim_abandoned_by_a_dead_gateway_is_sent_again(app, make_site):
    (port,) = _ports(make_site, "shelly:box/0")
    outbox.enqueue(port.id, CMD_STOP, argument="full")
    db.session.commit()
    assert len(outbox.claim(START, gateway_id="dies", schemes=("shelly",))) == 1  # then the process dies
    assert outbox.claim(START + timedelta(seconds=60), gateway_id="b", schemes=("shelly",)) == []
    again = outbox.claim(START + timedelta(seconds=outbox.CLAIM_EXPIRES_SECONDS), gateway_id="b", schemes=("shelly",))
    assert [c.id for c in again] == [1]


def test_routed_commands_go_only_to_the_gateway_holding_the_station(app, make_site):
    (port,) = _ports(make_site, "ocpp:CP-1/1")
    outbox.enqueue(port.id, CMD_SET_AVAILABLE, argument="off")
    db.session.commit()
    claim = dict(schemes=("ocpp",), routed=("ocpp",))
    assert outbox.claim(START, gateway_id="a", **claim) == []  # nobody holds CP-1 yet
    telemetry.record_link("ocpp:CP-1", True, START, gateway_id="b")
    db.session.commit()
    assert outbox.claim(START, gateway_id="a", **claim) == []
    assert [c.target.text for c in outbox.claim(START, gateway_id="b", **claim)] == ["ocpp:CP-1/1"]


def test_a_stop_supersedes_its_sessions_start_that_never_went_out(app, make_site, make_resident):
    from chargeshed.charging import sessions as svc

    (port,) = _ports(make_site, "sim")
    session = svc.start_session(make_resident(balance_fen=1000).id, port)
    svc.end_session(session, svc.USER_STOP)
    sent = []
    outbox.deliver(sent.append, START, gateway_id="a", schemes=("sim",))
    assert [c.kind for c in sent] == ["stop"]
    start = db.session.get(PortCommand, 1)
    assert (start.kind, start.status, start.error) == ("start", "done", outbox.SUPERSEDED)


def test_a_session_ended_without_a_stop_never_has_its_unsent_start_sent(app, make_site, make_resident):
    """A session can end without a stop for its port (the port reported the end itself, or charges
    booked in bulk, as the demo does): a start of it still queued would switch the port on for nobody."""
    from chargeshed.charging import sessions as svc

    (port,) = _ports(make_site, "sim")
    session = svc.start_session(make_resident(balance_fen=1000).id, port)
    svc.mark_charging(session, START)
    svc.end_session(session, svc.FULL, START + timedelta(hours=2), stop_port=False)
    db.session.commit()
    sent = []
    outbox.deliver(sent.append, START + timedelta(hours=2), gateway_id="a", schemes=("sim",))
    assert sent == []
    start = db.session.get(PortCommand, 1)
    assert (start.kind, start.status, start.error) == ("start", "done", outbox.SUPERSEDED)
