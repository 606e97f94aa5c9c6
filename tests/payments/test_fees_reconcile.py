"""Exact Stripe fees on the books, and `flask reconcile` against the fake Stripe."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, find_txn, wallet_balance
from chargeshed.money.models import LedgerAccount
from chargeshed.payments import fulfilment
from chargeshed.payments.models import TopUp
from chargeshed.payments.providers import Payment
from tests.fakes.fake_stripe import default_fee


def balance_of(code: str) -> int:
    found = db.session.execute(select(LedgerAccount.balance_fen).where(LedgerAccount.code == code)).scalar()
    return found or 0


def test_webhook_records_the_exact_fee_and_net_once(app, make_resident, stripe_topup, fake_stripe, deliver):
    user = make_resident()
    topup = stripe_topup(user, 2000, fee=93)
    assert (topup.fee_fen, topup.net_fen) == (93, 1907)
    fee = find_txn(f"fee:topup:{topup.id}")
    assert fee.kind == "payment_fee"
    legs = {(e.account.code, e.amount_fen) for e in fee.entries}
    # The refunds' sign convention: money leaving Stripe brings external:stripe up; a fee is a cost.
    assert legs == {("external:stripe", 93), ("fees:stripe", -93)}
    (event,) = fake_stripe.events("checkout.session.completed")
    deliver(event)
    deliver(event)
    assert balance_of("fees:stripe") == -93 and wallet_balance(user.id) == 2000
    assert check_ledger() == []


def test_reconcile_credits_a_paid_top_up_whose_webhook_never_came(app, runner, make_resident, stripe_topup):
    user = make_resident()
    topup = stripe_topup(user, 5000, webhook=False)
    assert wallet_balance(user.id) == 0

    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 0, result.output
    assert "credited late: 1" in result.output and "fees recorded: 1" in result.output
    db.session.refresh(topup)
    assert topup.status == "credited" and wallet_balance(user.id) == 5000
    assert (topup.fee_fen, topup.net_fen) == (default_fee(5000), 5000 - default_fee(5000))

    again = runner.invoke(args=["reconcile"])
    assert again.exit_code == 0 and "credited late: 0" in again.output and "fees recorded: 0" in again.output
    assert wallet_balance(user.id) == 5000 and check_ledger() == []


def test_reconcile_records_fees_missing_after_a_success_redirect(
    app, client, runner, login, make_resident, stripe_topup, stripe_provider
):
    user = login(make_resident())
    topup = stripe_topup(user, 1000, webhook=False)
    client.get(f"/topup/{topup.id}/done")  # the redirect credits; it never waits for the fee
    db.session.refresh(topup)
    assert topup.status == "credited" and topup.fee_fen is None
    result = runner.invoke(args=["reconcile"])
    assert "fees recorded: 1" in result.output
    db.session.refresh(topup)
    assert topup.fee_fen == default_fee(1000) and balance_of("fees:stripe") == -default_fee(1000)


def test_reconcile_marks_expired_checkouts(app, runner, make_resident, stripe_topup, fake_stripe):
    topup = stripe_topup(make_resident(), pay=False)
    fake_stripe.expire_checkout(topup.checkout_ref)
    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 0 and "expired top-ups: 1" in result.output
    db.session.refresh(topup)
    assert topup.status == "expired"


def test_reconcile_reports_paid_checkouts_it_cannot_match(
    app, runner, make_resident, stripe_topup, stripe_provider, fake_stripe
):
    user = make_resident()
    topup = stripe_topup(user, 1000, pay=False)
    params = {
        "mode": "payment",
        "success_url": "https://x/ok",
        "cancel_url": "https://x/no",
        "line_items": [
            {"quantity": 1, "price_data": {"currency": "cny", "unit_amount": 700, "product_data": {"name": "other"}}}
        ],
    }
    stranger = stripe_provider.client.v1.checkout.sessions.create(params={**params, "client_reference_id": "4242"})
    other = stripe_provider.client.v1.checkout.sessions.create(params={**params, "client_reference_id": str(topup.id)})
    fake_stripe.complete_checkout(stranger.id)
    fake_stripe.complete_checkout(other.id)

    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 1
    assert f"paid checkout {stranger.id}" in result.output and "no top-up here" in result.output
    assert f"checkout {other.id} paid 700 cny for top-up {topup.id}" in result.output
    assert "checkout_mismatch" in result.output
    db.session.refresh(topup)
    assert topup.status == "created" and wallet_balance(user.id) == 0


def test_reconcile_reports_a_credit_that_stripe_never_received(app, runner, make_resident, stripe_topup):
    user = make_resident()
    topup = stripe_topup(user, 1000, pay=False)
    # Something credited it without a payment behind it.
    fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, 1000, "cny"))
    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 1
    assert (
        f"top-up {topup.id} is credited but Stripe says checkout {topup.checkout_ref} is open/unpaid" in result.output
    )


def test_reconcile_in_demo_mode_says_so(app, runner):
    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 0 and "demo mode" in result.output


def test_fee_in_another_settlement_currency_is_reported_not_booked(app, make_resident, stripe_topup):
    from chargeshed.payments.fees import book_fee
    from chargeshed.payments.providers import Fee

    topup = stripe_topup(make_resident(), 1000, webhook=False)
    fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, 1000, "cny"))
    assert book_fee(db.session.get(TopUp, topup.id), Fee(8, 132, "usd")) == "fee_currency"
    assert db.session.get(TopUp, topup.id).fee_fen is None and find_txn(f"fee:topup:{topup.id}") is None


def test_a_failing_fee_lookup_never_holds_up_the_credit_or_the_start(
    app, client, login, make_site, make_resident, fake_stripe, deliver, runner, monkeypatch
):
    from chargeshed.charging.models import ChargeSession
    from chargeshed.payments.providers import StripeProvider

    make_site()
    login(make_resident())
    pay = client.post("/p/T11001/topup", data={"amount": "1000"})
    topup = db.session.execute(select(TopUp)).scalar_one()
    assert pay.headers["Location"].endswith(topup.checkout_ref)

    def broken(self, topup):
        raise ConnectionError("balance transactions unavailable")

    event = fake_stripe.complete_checkout(topup.checkout_ref)
    with monkeypatch.context() as patch:
        patch.setattr(StripeProvider, "fee_for", broken)
        response = deliver(event)
    assert response.status_code == 200 and response.get_json()["outcome"] == "credited_and_started"
    assert db.session.execute(select(ChargeSession)).scalar_one().state == "pending"
    db.session.refresh(topup)
    assert topup.fee_fen is None
    assert "fees recorded: 1" in runner.invoke(args=["reconcile"]).output
    db.session.refresh(topup)
    assert topup.fee_fen == default_fee(1000)
