"""The Stripe top-up loop with the real SDK against a local fake Stripe.

Checkout creation, signed webhooks (duplicates, reordering, races with the success
redirect), async payments, forged or broken deliveries, and "top up and start".
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.money.models import LedgerTxn
from chargeshed.payments.models import TopUp

PORT = "T11001"


@pytest.fixture
def resident(stripe_app, client, make_site, make_resident, login):
    """A signed-in resident with an empty wallet at a site with free ports."""
    make_site()
    return login(make_resident())


def begin_topup(client, amount=1000, port: str | None = None):
    """Press a top-up button; returns the redirect to the (fake) Stripe Checkout page."""
    url = f"/p/{port}/topup" if port else "/wallet/topup"
    response = client.post(url, data={"amount": str(amount)})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


def only_topup() -> TopUp:
    return db.session.execute(select(TopUp)).scalar_one()


def credits_booked(topup: TopUp) -> int:
    return db.session.execute(
        select(func.count()).select_from(LedgerTxn).where(LedgerTxn.ref == f"topup:{topup.id}")
    ).scalar_one()


def pay_on_hosted_page(fake, session_id: str) -> str:
    """The resident presses Pay on the checkout page; returns where Stripe sends them back."""
    conn = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=5)
    conn.request("POST", f"/pay/{session_id}")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 303
    return response.getheader("Location")


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def test_checkout_is_created_in_cny_for_the_top_up_without_fixed_payment_methods(
    resident, client, fake_stripe, checkout_session_id
):
    response = begin_topup(client, 2000)
    session_id = checkout_session_id(response)
    topup = only_topup()
    assert topup.checkout_ref == session_id and topup.provider == "stripe"
    sent = fake_stripe.requests[-1]
    assert sent["method"] == "POST" and sent["path"] == "/v1/checkout/sessions"
    params = sent["params"]
    assert "payment_method_types" not in params  # Stripe picks card / Alipay / WeChat Pay itself
    assert params["client_reference_id"] == str(topup.id)
    item = params["line_items"][0]
    assert item["price_data"]["currency"] == "cny" and item["price_data"]["unit_amount"] == "2000"
    assert params["success_url"].endswith(f"/topup/{topup.id}/done?session_id={{CHECKOUT_SESSION_ID}}")
    assert wallet_balance(resident.id) == 0


def test_checkout_creation_is_idempotent_per_top_up(resident, stripe_app, client, fake_stripe):
    from chargeshed.payments.providers import CheckoutUrls, provider_from_config

    begin_topup(client)
    topup = only_topup()
    first = topup.checkout_ref
    sent = fake_stripe.requests[-1]["params"]
    urls = CheckoutUrls(sent["success_url"].split("?")[0], sent["cancel_url"], "/demo")
    name = sent["line_items"][0]["price_data"]["product_data"]["name"]
    # A retry of the same request (e.g. after a timeout) must not open a second checkout.
    url = provider_from_config(stripe_app.config).create_checkout(topup, urls, name)
    assert topup.checkout_ref == first and url.endswith(first)
    assert [r["method"] for r in fake_stripe.requests] == ["POST", "POST"]
    assert [s["id"] for s in fake_stripe.events()] == []
    listed = provider_from_config(stripe_app.config).client.v1.checkout.sessions.list()
    assert [s.id for s in listed.data] == [first]


def test_paid_webhook_credits_once_however_often_it_arrives(
    resident, client, fake_stripe, deliver, checkout_session_id
):
    session_id = checkout_session_id(begin_topup(client, 1000))
    event = fake_stripe.complete_checkout(session_id)
    outcomes = [deliver(event).get_json()["outcome"] for _ in range(3)]
    assert outcomes == ["credited", "already_credited", "already_credited"]
    topup = only_topup()
    assert topup.status == "credited" and credits_booked(topup) == 1
    assert wallet_balance(resident.id) == 1000
    # The resident lands on the success redirect afterwards: still one credit.
    done = client.get(f"/topup/{topup.id}/done?session_id={session_id}", follow_redirects=True)
    assert done.status_code == 200 and "¥10.00" in done.get_data(as_text=True)
    assert wallet_balance(resident.id) == 1000 and credits_booked(topup) == 1
    assert check_ledger() == []


def test_success_redirect_before_the_webhook_credits_and_the_late_webhook_changes_nothing(
    resident, client, fake_stripe, deliver, checkout_session_id
):
    session_id = checkout_session_id(begin_topup(client, 5000))
    back = pay_on_hosted_page(fake_stripe, session_id)
    page = client.get(local(back), follow_redirects=True)
    assert page.status_code == 200 and wallet_balance(resident.id) == 5000
    (event,) = fake_stripe.events("checkout.session.completed")
    assert deliver(event).get_json()["outcome"] == "already_credited"
    assert wallet_balance(resident.id) == 5000 and credits_booked(only_topup()) == 1


def test_async_payment_is_credited_only_when_it_succeeds_in_either_order(
    resident, client, fake_stripe, deliver, checkout_session_id
):
    session_id = checkout_session_id(begin_topup(client, 2000))
    completed = fake_stripe.complete_checkout(session_id, async_payment=True)
    assert deliver(completed).get_json()["outcome"] == "not_paid_yet"
    topup = only_topup()
    waiting = client.get(f"/topup/{topup.id}/done")
    assert waiting.status_code == 200 and "/topup/" in waiting.get_data(as_text=True)
    assert wallet_balance(resident.id) == 0

    succeeded = fake_stripe.succeed_async_payment(session_id)
    assert deliver(succeeded).get_json()["outcome"] == "credited"
    # The older "completed, unpaid" event delivered again late changes nothing.
    assert deliver(completed).get_json()["outcome"] == "not_paid_yet"
    assert deliver(succeeded).get_json()["outcome"] == "already_credited"
    assert wallet_balance(resident.id) == 2000 and credits_booked(topup) == 1


def test_failed_async_payment_credits_nothing(resident, client, fake_stripe, deliver, checkout_session_id):
    session_id = checkout_session_id(begin_topup(client, 2000))
    deliver(fake_stripe.complete_checkout(session_id, async_payment=True))
    assert deliver(fake_stripe.fail_async_payment(session_id)).status_code == 200
    topup = only_topup()
    db.session.refresh(topup)
    assert topup.status == "failed" and wallet_balance(resident.id) == 0


def test_concurrent_deliveries_and_redirects_credit_once_and_start_one_charge(
    resident, stripe_app, client, fake_stripe, deliver, checkout_session_id
):
    session_id = checkout_session_id(begin_topup(client, 1000, port=PORT))
    topup = only_topup()
    event = fake_stripe.complete_checkout(session_id)
    cookie = client.get_cookie("session")
    barrier = threading.Barrier(8)
    statuses, errors = [], []

    def webhook():
        barrier.wait()
        statuses.append(deliver(event).status_code)

    def redirect():
        own = stripe_app.test_client()
        own.set_cookie(cookie.key, cookie.value)
        barrier.wait()
        statuses.append(own.get(f"/topup/{topup.id}/done").status_code)

    def run(target):
        try:
            target()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(webhook if i % 2 else redirect,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and sorted(statuses) == [200] * 4 + [302] * 4
    db.session.expire_all()
    assert credits_booked(topup) == 1
    sessions = db.session.execute(select(ChargeSession)).scalars().all()
    assert len(sessions) == 1 and sessions[0].state == "pending"
    assert wallet_balance(resident.id) == 1000 - sessions[0].hold_fen
    assert check_ledger() == []


def test_top_up_and_start_starts_the_charge_without_a_second_scan(
    resident, client, fake_stripe, deliver, checkout_session_id
):
    session_id = checkout_session_id(begin_topup(client, 1000, port=PORT))
    back = pay_on_hosted_page(fake_stripe, session_id)
    # The webhook usually wins the race; the charge starts from it.
    (event,) = fake_stripe.events("checkout.session.completed")
    assert deliver(event).get_json()["outcome"] == "credited_and_started"
    session = db.session.execute(select(ChargeSession)).scalar_one()
    assert session.port.code == PORT and session.state == "pending"
    # Back from Stripe, the resident lands on the live charge, not on the port page.
    landed = client.get(local(back))
    assert landed.status_code == 302 and landed.headers["Location"].endswith(f"/s/{session.id}")
    assert wallet_balance(resident.id) == 1000 - session.hold_fen


def test_top_up_and_start_from_the_success_redirect_alone(resident, client, fake_stripe, checkout_session_id):
    session_id = checkout_session_id(begin_topup(client, 1000, port=PORT))
    back = pay_on_hosted_page(fake_stripe, session_id)
    landed = client.get(local(back))
    session = db.session.execute(select(ChargeSession)).scalar_one()
    assert landed.headers["Location"].endswith(f"/s/{session.id}")


@pytest.mark.parametrize("problem", ["wrong_secret", "tampered", "stale", "no_header", "garbage_header", "binary"])
def test_forged_or_stale_webhooks_are_rejected_and_credit_nothing(
    problem, resident, client, fake_stripe, deliver, checkout_session_id
):
    from tests.fakes.fake_stripe import signed_headers

    session_id = checkout_session_id(begin_topup(client, 1000))
    event = fake_stripe.complete_checkout(session_id)
    body = fake_stripe.event_payload(event)
    if problem == "wrong_secret":
        response = deliver(event, secret="whsec_attacker")
    elif problem == "tampered":
        headers = signed_headers(body, "whsec_test")
        response = deliver(body.replace(b'"amount_total": 1000', b'"amount_total": 100000'), headers=headers)
    elif problem == "stale":
        response = deliver(event, timestamp=int(time.time()) - 301)
    elif problem == "no_header":
        response = deliver(body, headers={"Content-Type": "application/json"})
    elif problem == "garbage_header":
        response = deliver(body, headers={"Stripe-Signature": "t=abc,v1=zzz"})
    else:
        response = deliver(b"\xff\xfe" + body, headers=signed_headers(body, "whsec_test"))
    assert response.status_code == 400
    assert wallet_balance(resident.id) == 0 and only_topup().status == "created"


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"id": "evt_1"}', b'"text"'])
def test_malformed_but_signed_payloads_are_400(body, resident, deliver):
    response = deliver(body)
    assert response.status_code == 400
    assert wallet_balance(resident.id) == 0


def test_paid_checkout_for_an_unknown_top_up_is_logged_and_acknowledged(
    resident, client, fake_stripe, deliver, resign, checkout_session_id, caplog
):
    session_id = checkout_session_id(begin_topup(client, 1000))
    event = fake_stripe.complete_checkout(session_id)

    def unknown(data):
        data["data"]["object"]["client_reference_id"] = "987654"

    with caplog.at_level(logging.WARNING):
        response = deliver(resign(fake_stripe, event, unknown))
    assert response.status_code == 200 and response.get_json()["outcome"] == "unknown_topup"
    assert "987654" in caplog.text
    assert wallet_balance(resident.id) == 0
    assert db.session.execute(select(func.count()).select_from(LedgerTxn)).scalar_one() == 0


@pytest.mark.parametrize("field,value", [("amount_total", 100), ("currency", "usd"), ("id", "cs_test_other")])
def test_paid_checkout_that_does_not_match_the_top_up_credits_nothing(
    field, value, resident, client, fake_stripe, deliver, resign, checkout_session_id
):
    session_id = checkout_session_id(begin_topup(client, 1000))
    event = fake_stripe.complete_checkout(session_id)

    def change(data):
        data["data"]["object"][field] = value

    response = deliver(resign(fake_stripe, event, change))
    assert response.status_code == 200 and response.get_json()["outcome"].endswith("mismatch")
    assert wallet_balance(resident.id) == 0 and only_topup().status == "created"


def test_expired_checkout_marks_the_top_up_and_credits_nothing(
    resident, client, fake_stripe, deliver, checkout_session_id
):
    session_id = checkout_session_id(begin_topup(client, 1000))
    response = deliver(fake_stripe.expire_checkout(session_id))
    assert response.status_code == 200 and response.get_json()["outcome"] == "expired"
    assert only_topup().status == "expired" and wallet_balance(resident.id) == 0


def test_checkout_unavailable_gives_a_message_and_keeps_nothing(resident, client, fake_stripe):
    fake_stripe.stop()
    response = client.post("/wallet/topup", data={"amount": "1000"}, follow_redirects=True)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Payment is not available" in text or "支付" in text
    # The top-up row was committed before Stripe was called; it is closed as failed, nothing owed.
    assert db.session.execute(select(func.count()).select_from(TopUp).where(TopUp.status != "failed")).scalar_one() == 0
