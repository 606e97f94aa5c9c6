"""Stripe webhook received → port start command issued, across processes (target: p99 ≤ 100 ms).

The production shape: gunicorn (2 workers) receives signed `checkout.session.completed` events for
"top up and start" payments; fulfilment credits the wallet, reserves the hold and queues the start
command; the separate `flask worker` process, woken by PostgreSQL NOTIFY, sends it to the (simulated)
charging unit. Measured per payment: from just before the webhook is sent to the moment the worker's
driver call returned (the command's done_at). A local fake of the Stripe API stands in for Stripe.

    .venv/bin/python bench/webhook_to_start.py [--payments 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import _common

TARGET_P99_MS = 100.0
SECRET = "whsec_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between webhooks")
    args = parser.parse_args()
    from chargeshed.timeutil import utcnow
    from tests.fakes.fake_stripe import FakeStripe, signed_headers

    print(
        f"Webhook → start command, {args.payments} payments, gunicorn 2 workers + worker process — {_common.machine()}"
    )
    with FakeStripe() as fake, _common.scratch_database("webhook") as url:
        stripe_env = {
            "PAYMENTS": "stripe",
            "STRIPE_SECRET_KEY": "sk_test_bench",
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "STRIPE_API_BASE": fake.url,
        }
        instance = _common.instance_folder(RATELIMIT_ENABLED=False, **stripe_env)
        _common.migrate(url, instance)
        payloads = seed(url, instance, fake, args.payments)
        env = _common.env_for(url, instance, LOG_LEVEL="INFO")
        worker = subprocess.Popen(
            _common.FLASK + ["worker", "--interval", "5"],
            env=env,
            cwd=_common.ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with _common.gunicorn("chargeshed:create_app()", env) as web:
                host, port = web.base.removeprefix("http://").split(":")
                import http.client

                sent, answered = [], []
                time.sleep(1)
                for payload in payloads:
                    headers = signed_headers(payload, SECRET)
                    connection = http.client.HTTPConnection(host, int(port))
                    sent.append(utcnow())
                    started = time.perf_counter()
                    connection.request("POST", "/stripe/webhook", body=payload, headers=headers)
                    response = connection.getresponse()
                    body = response.read()
                    answered.append((time.perf_counter() - started) * 1000)
                    assert response.status == 200 and b"started" in body, (response.status, body)
                    connection.close()
                    time.sleep(args.gap)
                latencies, worker_part = collect(url, instance, sent)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    print(f"webhook answered:                {_common.summary(answered)}")
    print(f"webhook sent → start issued:     {_common.summary(latencies)}")
    print(f"  of which queued → issued:      {_common.summary(worker_part)}  (worker wake-up and send)")
    p99 = _common.percentile(latencies, 99)
    print(f"target p99 ≤ {TARGET_P99_MS:.0f} ms: {_common.verdict(p99 <= TARGET_P99_MS)} ({p99:.1f} ms)")


def seed(url: str, instance: str, fake, count: int) -> list[bytes]:
    """Ports, residents with empty wallets, and a paid Checkout per resident waiting to start a port."""
    os.environ["CHARGESHED_INSTANCE"] = instance
    from chargeshed import create_app
    from chargeshed.accounts.models import User
    from chargeshed.charging.models import Tariff
    from chargeshed.charging.tariff import default_tariff
    from chargeshed.extensions import db
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import CheckoutUrls, provider_from_config
    from chargeshed.sites.models import Operator, Port, Shed, Site

    app = create_app({"DATABASE_URL": url, "TESTING": True})
    payloads = []
    with app.app_context():
        site, operator, tariff = (
            Site(name="基准小区"),
            Operator(name="基准运营"),
            Tariff(name="标准", rules=default_tariff().to_dict()),
        )
        db.session.add_all([site, operator, tariff])
        db.session.flush()
        ports = []
        for s in range(count // 20 + 1):
            shed = Shed(site_id=site.id, operator_id=operator.id, tariff_id=tariff.id, name=f"{s + 1}号车棚")
            db.session.add(shed)
            db.session.flush()
            ports += [Port(shed_id=shed.id, number=p, code=f"W{s:03d}{p:02d}") for p in range(1, 21)]
        db.session.add_all(ports)
        db.session.commit()
        provider = provider_from_config(app.config)
        urls = CheckoutUrls("https://charge.example.cn/ok", "https://charge.example.cn/no", "/demo")
        for n in range(count):
            user = User(login=f"1390000{n:04d}", password_hash="-")
            db.session.add(user)
            db.session.flush()
            topup = fulfilment.create_topup(user.id, 1000, [1000], "cny", "stripe", start_port=ports[n])
            provider.create_checkout(topup, urls, "ChargeShed wallet top-up")
            db.session.commit()
            payloads.append(fake.event_payload(fake.complete_checkout(topup.checkout_ref)))
        db.session.remove()
        db.engine.dispose()
    return payloads


def collect(url: str, instance: str, sent: list) -> list[float]:
    """Milliseconds from each webhook's sending to its start command's execution."""
    from chargeshed import create_app
    from chargeshed.extensions import db
    from chargeshed.payments.models import TopUp
    from chargeshed.ports.models import PortCommand

    app = create_app({"DATABASE_URL": url, "TESTING": True})
    with app.app_context():
        deadline = time.monotonic() + 60
        while True:
            rows = db.session.execute(
                db.select(TopUp.id, PortCommand.done_at, PortCommand.created_at)
                .join(PortCommand, PortCommand.session_id == TopUp.started_session_id)
                .where(PortCommand.kind == "start")
                .order_by(TopUp.id)
            ).all()
            if len(rows) == len(sent) and all(row.done_at for row in rows) or time.monotonic() > deadline:
                break
            db.session.rollback()
            time.sleep(0.5)
        db.engine.dispose()
    if len(rows) != len(sent) or not all(row.done_at for row in rows):
        sys.exit(f"only {sum(1 for row in rows if row.done_at)} of {len(sent)} start commands were executed")
    total = [(row.done_at - at).total_seconds() * 1000 for row, at in zip(rows, sent, strict=True)]
    worker = [(row.done_at - row.created_at).total_seconds() * 1000 for row in rows]
    return total, worker


if __name__ == "__main__":
    main()
