"""Races settled by PostgreSQL, through a live gunicorn server with several processes and threads.

Each test fires 200 requests released together by a barrier from 200 threads, then reads the
database: unique indexes, CHECK constraints and conditional updates must have decided every race.
"""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.models import LedgerTxn
from tests.production.conftest import seed_resident, seed_site, seeding
from tests.production.live import FLASK, ROOT, Browser, WebServer, process_env, write_instance

pytestmark = pytest.mark.pg

BURST = 200


def burst(calls) -> list:
    """Run every call in its own thread, all released at the same instant; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # recorded, asserted by the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def parallel(function, items, workers: int = 24) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def check_ledger_cli(url: str, instance: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        FLASK + ["check-ledger"], env=process_env(url, instance), cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def server(pg_url, tmp_path):
    """gunicorn (3 processes × 8 threads) on the fresh database; stopped with SIGTERM after the test."""
    instance = write_instance(str(tmp_path / "instance"), RATELIMIT_ENABLED=False)
    started = []

    def start(**env):
        web = WebServer(process_env(pg_url, instance, **env), str(tmp_path / "web.log")).start()
        started.append(web)
        return web

    start.instance = instance
    yield start
    for web in started:
        code, _ = web.terminate()
        assert code == 0, web.output()[-2000:]
        assert "Traceback" not in web.output(), web.output()[-5000:]


def test_200_residents_pressing_start_on_one_free_port_get_one_session_and_one_hold(pg_url, server):
    with seeding(pg_url):
        code = seed_site(ports=2)[0]
        logins = [seed_resident(f"1390000{i:04d}", balance_fen=1000).login for i in range(BURST)]
    web = server()
    browsers = parallel(lambda login: Browser(web.base).login(login, "secret-pass"), logins)
    tokens = parallel(lambda b: b.csrf_token(f"/p/{code}"), browsers)

    replies = burst(
        [lambda b=b, t=t: b.post(f"/p/{code}/start", {"csrf_token": t}) for b, t in zip(browsers, tokens, strict=True)]
    )

    assert [getattr(r, "status", r) for r in replies] == [302] * BURST
    winners = [r for r in replies if r.location.startswith("/s/")]
    assert len(winners) == 1
    assert {r.location for r in replies if r not in winners} == {f"/p/{code}"}  # "port in use"
    with seeding(pg_url):
        sessions = db.session.execute(select(ChargeSession)).scalars().all()
        assert len(sessions) == 1 and f"/s/{sessions[0].id}" == winners[0].location
        holds = db.session.execute(select(func.count()).where(LedgerTxn.kind == "hold")).scalar_one()
        assert holds == 1 and ledger.holds_account().balance_fen == 300
        winner = sessions[0].user_id
        balances = {u: ledger.wallet_balance(u) for u in range(1, BURST + 1)}
        assert balances.pop(winner) == 700 and set(balances.values()) == {1000}
    assert check_ledger_cli(pg_url, server.instance).returncode == 0


def test_one_resident_starting_on_200_ports_at_once_never_overdraws_the_wallet(pg_url, server):
    with seeding(pg_url):
        codes = seed_site(sheds=10, ports=20)
        resident = seed_resident("13900000001", balance_fen=3000)  # covers 10 holds of ¥3
        user_id = resident.id
    web = server()
    browser = Browser(web.base).login("13900000001", "secret-pass")
    token = browser.csrf_token(f"/p/{codes[0]}")
    cookie = dict(browser.cookies)

    def press(code: str):
        tap = Browser(web.base)
        tap.cookies = dict(cookie)
        return tap.post(f"/p/{code}/start", {"csrf_token": token})

    replies = burst([lambda c=c: press(c) for c in codes])

    assert [getattr(r, "status", r) for r in replies] == [302] * BURST
    started = [r for r in replies if r.location.startswith("/s/")]
    assert len(started) == 10
    with seeding(pg_url):
        assert db.session.execute(select(func.count(ChargeSession.id))).scalar_one() == 10
        assert ledger.wallet_balance(user_id) == 0
        assert ledger.holds_account().balance_fen == 3000
        assert ledger.check_ledger() == []
    result = check_ledger_cli(pg_url, server.instance)
    assert result.returncode == 0 and "ledger OK" in result.stdout


def test_200_copies_of_a_paid_webhook_credit_once_and_start_one_charge(pg_url, server):
    from chargeshed.payments import fulfilment
    from chargeshed.payments.models import TopUp, WebhookEvent
    from chargeshed.payments.providers import CheckoutUrls, provider_from_config
    from chargeshed.sites.models import Port
    from tests.fakes.fake_stripe import FakeStripe, signed_headers

    secret = "whsec_production_test"
    with FakeStripe() as fake:
        stripe_env = dict(
            PAYMENTS="stripe",
            STRIPE_SECRET_KEY="sk_test_production",
            STRIPE_WEBHOOK_SECRET=secret,
            STRIPE_API_BASE=fake.url,
        )
        with seeding(pg_url, **stripe_env) as app:
            code = seed_site(ports=2)[0]
            user_id = seed_resident("13900000002").id
            port = db.session.execute(select(Port).where(Port.code == code)).scalar_one()
            topup = fulfilment.create_topup(user_id, 1000, [1000], "cny", "stripe", start_port=port)
            provider = provider_from_config(app.config)
            checkout = provider.create_checkout(
                topup, CheckoutUrls("https://x/ok", "https://x/no", "/demo"), "ChargeShed wallet top-up"
            )
            assert checkout
            db.session.commit()
            topup_id, checkout_ref = topup.id, topup.checkout_ref
        payload = fake.event_payload(fake.complete_checkout(checkout_ref))
        web = server(**stripe_env)

        def deliver():
            headers = signed_headers(payload, secret)
            return Browser(web.base).request("POST", "/stripe/webhook", payload, headers)

        replies = burst([deliver] * BURST)

    assert [getattr(r, "status", r) for r in replies] == [200] * BURST
    with seeding(pg_url):
        credits = db.session.execute(select(func.count()).where(LedgerTxn.ref == f"topup:{topup_id}")).scalar_one()
        assert credits == 1
        sessions = db.session.execute(select(ChargeSession)).scalars().all()
        assert len(sessions) == 1 and sessions[0].user_id == user_id
        assert ledger.wallet_balance(user_id) == 1000 - 300
        assert db.session.get(TopUp, topup_id).started_session_id == sessions[0].id
        assert db.session.execute(select(func.count(WebhookEvent.id))).scalar_one() == 1
        assert ledger.check_ledger() == []
