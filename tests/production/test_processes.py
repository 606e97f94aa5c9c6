"""Web server and worker as separate processes sharing only the database (and the simulated hardware).

Real subprocesses: sessions survive the worker being killed with SIGKILL, nothing is billed twice,
unconfirmed starts release their hold, and both processes stop cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time

import pytest
from sqlalchemy import func, select

from chargeshed.charging.models import ChargeSession
from chargeshed.charging.sessions import compute_cost
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.models import LedgerTxn
from chargeshed.ports.models import PortCommand
from chargeshed.ports.sim import SimDriver
from chargeshed.timeutil import utcnow
from tests.production.conftest import seed_resident, seed_site, seeding
from tests.production.live import FLASK, ROOT, Browser, WebServer, Worker, process_env, write_instance


def wait_until(condition, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def session_row(url: str, session_id: int) -> dict:
    with seeding(url):
        s = db.session.get(ChargeSession, session_id)
        return {
            "state": s.state,
            "watts": s.watts,
            "end_reason": s.end_reason,
            "cost_fen": s.cost_fen,
            "user_id": s.user_id,
            "port_seen": s.port.last_seen_at,
        }


def sim_port(instance: str, code: str) -> dict:
    with open(os.path.join(instance, "sim_ports.json"), encoding="utf-8") as handle:
        return json.load(handle)["ports"].get(code, {})


def start_charge(web: WebServer, login: str, code: str) -> int:
    browser = Browser(web.base).login(login, "secret-pass")
    reply = browser.post(f"/p/{code}/start", {"csrf_token": browser.csrf_token(f"/p/{code}")})
    assert reply.status == 302 and reply.location.startswith("/s/"), (reply.status, reply.location)
    return int(reply.location.rsplit("/", 1)[1])


def _launcher(url: str, tmp_path):
    instance = write_instance(
        str(tmp_path / "instance"), RATELIMIT_ENABLED=False, START_TIMEOUT_SECONDS=3, SIM_SPEED=600.0
    )
    env = process_env(url, instance)
    children = []

    class Launcher:
        """Starts web servers and workers on the shared database."""

        folder = instance

        def __init__(self):
            self.url = url

        def web(self, **kwargs) -> WebServer:
            server = WebServer(env, str(tmp_path / "web.log"), **kwargs).start()
            children.append(server)
            return server

        def worker(self, interval: float = 0.5) -> Worker:
            worker = Worker(env, str(tmp_path / "worker.log"), interval).start()
            children.append(worker)
            return worker

    return Launcher(), children


@pytest.fixture
def processes(backend_url, tmp_path):
    """Web servers and workers on SQLite or PostgreSQL; all stopped after the test."""
    launcher, children = _launcher(backend_url, tmp_path)
    yield launcher
    for child in children:
        child.stop()


@pytest.fixture
def pg_processes(pg_url, tmp_path):
    """The same on PostgreSQL only."""
    launcher, children = _launcher(pg_url, tmp_path)
    yield launcher
    for child in children:
        child.stop()


def test_killing_the_worker_mid_session_loses_nothing_and_bills_nothing_twice(processes):
    url = processes.url
    with seeding(url):
        codes = seed_site(ports=4)
        for login in ("13900000001", "13900000002", "13900000003"):
            seed_resident(login, balance_fen=1000)
    web = processes.web(workers=2, threads=4)
    worker = processes.worker()

    # A charge starts through the web process; the worker switches the port on and confirms it.
    first = start_charge(web, "13900000001", codes[0])
    wait_until(lambda: session_row(url, first)["state"] == "charging", what="first charge confirmed")
    wait_until(lambda: session_row(url, first)["watts"] > 0, what="power measured")
    relay_closed_at = sim_port(processes.folder, codes[0])["relay_closed_at"]

    worker.kill9()
    seen_at_kill = session_row(url, first)["port_seen"]
    # While no worker runs: a start is queued on a healthy port, and one on a port that went dark.
    second = start_charge(web, "13900000002", codes[1])
    SimDriver(utcnow, state_path=os.path.join(processes.folder, "sim_ports.json")).set_offline(codes[2])
    third = start_charge(web, "13900000003", codes[2])
    assert session_row(url, second)["state"] == session_row(url, third)["state"] == "pending"

    # Restarted a few times and killed at random moments, mid-tick or not.
    chaos = random.Random(7)
    for _ in range(3):
        restarted = processes.worker()
        time.sleep(chaos.uniform(0.2, 1.2))
        restarted.kill9()
    processes.worker()

    wait_until(lambda: session_row(url, second)["state"] == "charging", what="queued start sent")
    wait_until(lambda: session_row(url, third)["state"] == "failed", what="unconfirmed start failed")
    wait_until(lambda: session_row(url, first)["port_seen"] > seen_at_kill, what="first charge read again")
    assert session_row(url, first)["state"] == "charging"
    assert sim_port(processes.folder, codes[0])["relay_closed_at"] == relay_closed_at  # never switched twice

    owner = Browser(web.base).login("13900000001", "secret-pass")
    stopped = owner.post(f"/s/{first}/stop", {"csrf_token": owner.csrf_token(f"/s/{first}")})
    assert stopped.status == 302
    wait_until(lambda: not sim_port(processes.folder, codes[0])["relay_on"], what="relay opened after stop")

    with seeding(url):
        one = db.session.get(ChargeSession, first)
        assert (one.state, one.end_reason) == ("ended", "user_stop")
        # Billed for the whole charge, from the first confirmation, whatever happened to the worker.
        assert one.cost_fen == compute_cost(one, one.ended_at)
        assert one.charged_seconds(one.ended_at) >= (one.ended_at - one.created_at).total_seconds() - 5
        assert ledger.wallet_balance(one.user_id) == 1000 - one.cost_fen
        three = db.session.get(ChargeSession, third)
        assert (three.end_reason, three.cost_fen) == ("start_failed", 0)
        assert ledger.wallet_balance(three.user_id) == 1000  # the hold came back whole
        assert ledger.holds_account().balance_fen == 300  # only the second charge still holds money
        settles = db.session.execute(
            select(LedgerTxn.ref, func.count()).where(LedgerTxn.kind == "settle").group_by(LedgerTxn.ref)
        ).all()
        assert sorted(settles) == sorted([(f"settle:{first}", 1), (f"settle:{third}", 1)])
        starts = db.session.execute(
            select(func.count()).where(PortCommand.kind == "start", PortCommand.session_id == first)
        ).scalar_one()
        assert starts == 1
    check = subprocess.run(
        FLASK + ["check-ledger"],
        env=process_env(url, processes.folder),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_worker_stops_promptly_with_exit_code_0_on_sigterm(processes):
    with seeding(processes.url):
        seed_site(ports=2)
    worker = processes.worker(interval=5)
    code, seconds = worker.terminate()
    assert code == 0 and seconds < 3
    assert '"worker stopped"' in worker.output()


@pytest.mark.parametrize("gunicorn", [False, True], ids=["werkzeug", "gunicorn"])
def test_web_server_stops_with_exit_code_0_on_sigterm(processes, gunicorn):
    with seeding(processes.url):
        seed_site(ports=1)
    web = processes.web(gunicorn=gunicorn, workers=2)
    assert Browser(web.base).get("/healthz").status == 200
    code, seconds = web.terminate()
    assert code == 0 and seconds < 10
    with pytest.raises(OSError):
        Browser(web.base).get("/healthz")


@pytest.mark.pg
def test_worker_sends_a_queued_start_at_once_without_waiting_for_its_next_tick(pg_processes):
    processes = pg_processes
    with seeding(processes.url):
        codes = seed_site(ports=2)
        seed_resident("13900000009", balance_fen=1000)
    web = processes.web(gunicorn=False)
    worker = processes.worker(interval=60)  # the next full tick is a minute away
    time.sleep(0.5)
    session_id = start_charge(web, "13900000009", codes[0])
    wait_until(
        lambda: sim_port(processes.folder, codes[0]).get("relay_on"),
        timeout=5,
        what="relay switched on by the NOTIFY wake-up",
    )
    with seeding(processes.url):
        command = db.session.execute(select(PortCommand).where(PortCommand.session_id == session_id)).scalar_one()
        assert command.status == "done"
    assert worker.alive()
