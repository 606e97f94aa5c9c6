"""The real Stripe SDK works against tests/fakes/fake_stripe.FakeStripe."""

import http.client
import time
from urllib.parse import urlsplit

import pytest
import stripe

try:  # works whether or not the repo root is on sys.path
    from tests.fakes.fake_stripe import FakeStripe, _parse_form, default_fee, signed_headers
except ImportError:  # pragma: no cover
    from fakes.fake_stripe import FakeStripe, _parse_form, default_fee, signed_headers

SECRET = "whsec_test_secret"


@pytest.fixture
def fake():
    with FakeStripe() as f:
        yield f


@pytest.fixture
def client(fake):
    return stripe.StripeClient("sk_test_x", base_addresses={"api": fake.url}, max_network_retries=0)


def session_params(amount=1000, **extra):
    return {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": amount,
                    "product_data": {"name": "Wallet top-up"},
                },
                "quantity": 1,
            }
        ],
        "success_url": "https://app.example/ok?cs={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://app.example/cancel",
        "client_reference_id": "topup-7",
        "metadata": {"topup_id": "7"},
        **extra,
    }


def test_form_parser_handles_stripe_nesting():
    parsed = _parse_form(
        [
            ("line_items[0][price_data][currency]", "eur"),
            ("line_items[0][quantity]", "2"),
            ("line_items[1][quantity]", "1"),
            ("metadata[topup_id]", "7"),
            ("expand[0]", "payment_intent"),
            ("expand[]", "x"),
            ("limit", "3"),
        ]
    )
    assert parsed == {
        "line_items": [{"price_data": {"currency": "eur"}, "quantity": "2"}, {"quantity": "1"}],
        "metadata": {"topup_id": "7"},
        "expand": ["payment_intent", "x"],
        "limit": "3",
    }
    assert default_fee(1000) == 59 and default_fee(50) == 31 and default_fee(2500) == 103


def test_create_complete_and_expand(fake, client):
    s = client.v1.checkout.sessions.create(params=session_params(customer_email="a@b.c"))
    assert s.object == "checkout.session" and s.id.startswith("cs_test_")
    assert s.url == f"{fake.url}/pay/{s.id}"
    assert (s.status, s.payment_status, s.payment_intent) == ("open", "unpaid", None)
    assert (s.amount_total, s.currency, s.client_reference_id) == (1000, "eur", "topup-7")
    assert s.metadata.to_dict() == {"topup_id": "7"}
    assert isinstance(s.created, int) and abs(s.created - time.time()) < 5
    sent = fake.requests[-1]["params"]
    assert sent["line_items"][0]["price_data"]["unit_amount"] == "1000"

    event = fake.complete_checkout(s.id)
    assert event["type"] == "checkout.session.completed"
    assert event["data"]["object"]["payment_status"] == "paid"

    got = client.v1.checkout.sessions.retrieve(
        s.id, params={"expand": ["payment_intent.latest_charge.balance_transaction"]}
    )
    assert (got.status, got.payment_status) == ("complete", "paid")
    charge = got.payment_intent.latest_charge
    assert got.payment_intent.id.startswith("pi_") and charge.id.startswith("ch_")
    txn = charge.balance_transaction
    assert txn.object == "balance_transaction" and txn.id.startswith("txn_")
    assert (txn.amount, txn.fee, txn.net, txn.currency) == (1000, 59, 941, "eur")
    assert all(type(v) is int for v in (txn.amount, txn.fee, txn.net))

    # Shallow expand leaves deeper levels as ids; other retrieve endpoints work too.
    shallow = client.v1.checkout.sessions.retrieve(s.id, params={"expand": ["payment_intent"]})
    assert shallow.payment_intent.latest_charge == charge.id
    pi = client.v1.payment_intents.retrieve(
        shallow.payment_intent.id, params={"expand": ["latest_charge.balance_transaction"]}
    )
    assert pi.latest_charge.balance_transaction.net == 941
    assert client.v1.charges.retrieve(charge.id).balance_transaction == txn.id
    assert client.v1.balance_transactions.retrieve(txn.id).fee == 59


def test_async_payment_and_custom_fee(fake, client):
    s = client.v1.checkout.sessions.create(params=session_params(2000))
    completed = fake.complete_checkout(s.id, fee=100, async_payment=True)
    assert completed["data"]["object"]["status"] == "complete"
    assert completed["data"]["object"]["payment_status"] == "unpaid"
    ok = fake.succeed_async_payment(s.id)
    assert ok["type"] == "checkout.session.async_payment_succeeded"
    assert ok["data"]["object"]["payment_status"] == "paid"
    got = client.v1.checkout.sessions.retrieve(
        s.id, params={"expand": ["payment_intent.latest_charge.balance_transaction"]}
    )
    assert (
        got.payment_intent.latest_charge.balance_transaction.fee,
        got.payment_intent.latest_charge.balance_transaction.net,
    ) == (100, 1900)
    with pytest.raises(ValueError):
        fake.complete_checkout(s.id)
    with pytest.raises(ValueError):
        fake.complete_checkout(client.v1.checkout.sessions.create(params=session_params()).id, fee=1.5)


def test_list_sessions(fake, client):
    ids = [client.v1.checkout.sessions.create(params=session_params(100 * (i + 1))).id for i in range(3)]
    page = client.v1.checkout.sessions.list(params={"limit": 2})
    assert page.object == "list" and page.url == "/v1/checkout/sessions"
    assert [s.id for s in page.data] == ids[::-1][:2] and page.has_more is True
    rest = client.v1.checkout.sessions.list(params={"limit": 2, "starting_after": page.data[-1].id})
    assert [s.id for s in rest.data] == [ids[0]] and rest.has_more is False
    assert [s.id for s in page.auto_paging_iter()] == ids[::-1]
    now = int(time.time())
    assert len(client.v1.checkout.sessions.list(params={"created": {"gte": now - 60}}).data) == 3
    assert client.v1.checkout.sessions.list(params={"created": {"gte": now + 60}}).data == []
    fake.complete_checkout(ids[1])
    done = client.v1.checkout.sessions.list(params={"status": "complete"})
    assert [s.id for s in done.data] == [ids[1]]


def test_partial_refund_then_over_refund_refused(fake, client):
    s = client.v1.checkout.sessions.create(params=session_params(1000))
    fake.complete_checkout(s.id)
    pi_id = client.v1.checkout.sessions.retrieve(s.id).payment_intent
    r = client.v1.refunds.create(params={"payment_intent": pi_id, "amount": 400, "metadata": {"refund_id": "r1"}})
    assert (r.object, r.status, r.amount, r.currency) == ("refund", "succeeded", 400, "eur")
    assert r.id.startswith("re_") and r.metadata.to_dict() == {"refund_id": "r1"}
    assert client.v1.refunds.retrieve(r.id).payment_intent == pi_id

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi_id, "amount": 601})
    assert exc.value.http_status == 400 and exc.value.code == "amount_too_large"
    assert exc.value.param == "amount"

    rest = client.v1.refunds.create(params={"payment_intent": pi_id})  # amount = remaining
    assert rest.amount == 600
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi_id, "amount": 1})
    assert exc.value.code == "charge_already_refunded"

    charge = fake.get(fake.get(pi_id)["latest_charge"])
    assert (charge["amount_refunded"], charge["refunded"]) == (1000, True)
    refunded = fake.events("charge.refunded")
    assert [e["data"]["object"]["amount_refunded"] for e in refunded] == [400, 1000]
    assert len(fake.events("refund.created")) == 2
    api_events = client.v1.events.list(params={"type": "charge.refunded", "limit": 1})
    assert api_events.data[0].id == refunded[-1]["id"] and api_events.has_more is True
    assert client.v1.events.retrieve(refunded[0]["id"]).type == "charge.refunded"


def test_failed_refund(fake, client):
    s = client.v1.checkout.sessions.create(params=session_params(1000))
    fake.complete_checkout(s.id)
    pi_id = client.v1.checkout.sessions.retrieve(s.id).payment_intent
    fake.fail_next_refund()
    r = client.v1.refunds.create(params={"payment_intent": pi_id, "amount": 300})
    assert r.status == "pending"
    assert client.v1.refunds.retrieve(r.id).status == "failed"
    (failed,) = fake.events("refund.failed")
    assert failed["data"]["object"]["id"] == r.id
    assert fake.get(fake.get(pi_id)["latest_charge"])["amount_refunded"] == 0
    assert client.v1.refunds.create(params={"payment_intent": pi_id}).status == "succeeded"


def test_every_balance_movement_is_a_balance_transaction_in_the_settlement_currency():
    with FakeStripe(settlement_currency="hkd", exchange_rates={"eur": 8.5}) as fake:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake.url}, max_network_retries=0)
        s = client.v1.checkout.sessions.create(params=session_params(1000))
        fake.complete_checkout(s.id, fee=300)
        pi_id = client.v1.checkout.sessions.retrieve(s.id).payment_intent
        refund = client.v1.refunds.create(params={"payment_intent": pi_id, "amount": 200})
        txn = client.v1.balance_transactions.retrieve(refund.balance_transaction, params={"expand": ["source"]})
        assert isinstance(txn, stripe.BalanceTransaction) and isinstance(txn.source, stripe.Refund)
        assert (txn.type, txn.amount, txn.fee, txn.net, txn.currency) == ("refund", -1700, 0, -1700, "hkd")
        fake.exchange_rates["eur"] = 8.4
        fake.fail_refund(refund.id)
        assert fake.get(client.v1.refunds.retrieve(refund.id).failure_balance_transaction)["amount"] == 1680
        payout = fake.payout(5000)["data"]["object"]
        fake.fail_payout(payout["id"])
        fake.adjustment(-20)
        kinds = [t.type for t in client.v1.balance_transactions.list(params={"limit": 100}).data]
        assert sorted(kinds) == sorted(["charge", "refund", "refund_failure", "payout", "payout_failure", "adjustment"])
        balance = client.v1.balance.retrieve()
        total = sum(part.amount for part in balance.available + balance.pending if part.currency == "hkd")
        assert total == fake.balance("hkd") == 8500 - 300 - 1700 + 1680 - 20
        assert [p.status for p in client.v1.payouts.list().data] == ["failed"]
        assert [e["type"] for e in fake.events("payout.*")] == ["payout.created", "payout.failed"]


def test_idempotency_key_replays_same_response(fake, client):
    opts = {"idempotency_key": "topup-7-create"}
    a = client.v1.checkout.sessions.create(params=session_params(), options=opts)
    b = client.v1.checkout.sessions.create(params=session_params(), options=opts)
    assert a.id == b.id
    assert len(client.v1.checkout.sessions.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(params=session_params(999), options=opts)


def test_stripe_shaped_errors(fake, client):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params=session_params(payment_method_types=["card"]))
    assert exc.value.http_status == 400 and exc.value.param == "payment_method_types"
    assert exc.value.json_body["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.retrieve("cs_test_missing")
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError, match="Invalid integer"):
        client.v1.checkout.sessions.create(params=session_params("10.5"))
    with pytest.raises(stripe.InvalidRequestError, match="Missing required param"):
        client.v1.checkout.sessions.create(params={"mode": "payment"})
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        client.v1.checkout.sessions.retrieve(
            client.v1.checkout.sessions.create(params=session_params()).id, params={"expand": ["metadata"]}
        )
    live = stripe.StripeClient("sk_live_x", base_addresses={"api": fake.url})
    with pytest.raises(stripe.AuthenticationError):
        live.v1.checkout.sessions.list()


def test_signed_event_payload_verifies(fake, client):
    s = client.v1.checkout.sessions.create(params=session_params())
    payload = fake.event_payload(fake.complete_checkout(s.id))
    headers = signed_headers(payload, SECRET)
    event = client.construct_event(payload, headers["Stripe-Signature"], SECRET)
    assert event.type == "checkout.session.completed"
    assert event.data.object.id == s.id and event.data.object.metadata.topup_id == "7"
    assert stripe.Webhook.construct_event(payload, headers["Stripe-Signature"], SECRET).id == event.id

    tampered = payload.replace(b'"paid"', b'"unpaid"')
    assert tampered != payload
    with pytest.raises(stripe.SignatureVerificationError):
        client.construct_event(tampered, headers["Stripe-Signature"], SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        client.construct_event(payload, headers["Stripe-Signature"], "whsec_other")
    old = signed_headers(payload, SECRET, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        client.construct_event(payload, old["Stripe-Signature"], SECRET)


def test_hosted_pay_page_completes_and_redirects(fake, client):
    s = client.v1.checkout.sessions.create(params=session_params())
    conn = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=5)
    conn.request("GET", f"/pay/{s.id}")
    page = conn.getresponse()
    assert page.status == 200 and b"Pay" in page.read()
    conn.request("POST", f"/pay/{s.id}")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 303
    assert resp.getheader("Location") == f"https://app.example/ok?cs={s.id}"
    assert [e["type"] for e in fake.events()] == ["checkout.session.completed"]
