"""Wallet cash-out: refunds against the most recent top-ups, pending until Stripe confirms."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, find_txn, wallet_balance
from chargeshed.money.models import LedgerAccount
from chargeshed.payments import refunds
from chargeshed.payments.models import CashOut, TopUpRefund
from chargeshed.payments.providers import DemoProvider


def balance_of(code: str) -> int:
    found = db.session.execute(select(LedgerAccount.balance_fen).where(LedgerAccount.code == code)).scalar()
    return found or 0


@pytest.fixture
def two_topups(app, make_resident, stripe_topup, clock):
    """A resident who topped up ¥10, then ¥20 an hour later (both through Stripe)."""
    user = make_resident()
    older = stripe_topup(user, 1000)
    clock.advance(hours=1)
    newer = stripe_topup(user, 2000)
    return user, older, newer


def refunds_at_stripe(fake):
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == "/v1/refunds"]


def test_cash_out_refunds_the_newest_top_ups_first_and_completes_on_the_webhook(
    two_topups, client, login, fake_stripe, deliver
):
    user, older, newer = two_topups
    login(user)
    response = client.post("/wallet/cashout", data={"amount": "25", "request_key": "k1", "confirmed": "yes"})
    assert response.status_code == 302
    cashout = db.session.execute(select(CashOut)).scalar_one()
    assert response.headers["Location"].endswith(f"/wallet/cashout/{cashout.id}")
    # ¥20 back on the newer payment, ¥5 on the older one.
    sent = [(r["params"]["payment_intent"], r["params"]["amount"]) for r in refunds_at_stripe(fake_stripe)]
    assert sent == [(newer.payment_ref, "2000"), (older.payment_ref, "500")]
    assert wallet_balance(user.id) == 500 and balance_of("refunds:pending") == 2500
    assert cashout.status == "pending"
    page = client.get(f"/wallet/cashout/{cashout.id}").get_data(as_text=True)
    assert 'data-state="pending"' in page

    for event in fake_stripe.events("refund.created") + fake_stripe.events("charge.refunded"):
        assert deliver(event).status_code == 200
    db.session.expire_all()
    assert cashout.status == "completed" and [p.status for p in cashout.parts] == ["succeeded"] * 2
    assert balance_of("refunds:pending") == 0 and wallet_balance(user.id) == 500
    assert all(find_txn(f"refund:{p.id}").kind == "refund" for p in cashout.parts)
    assert find_txn(f"cashout:{cashout.id}").kind == "cashout"
    assert check_ledger() == []
    wallet = client.get("/wallet").get_data(as_text=True)
    assert "¥20.00" in wallet and "¥5.00" in wallet


def test_refund_keys_are_random_and_stored_so_a_retry_refunds_once(two_topups, stripe_provider, fake_stripe):
    user, _, _ = two_topups
    cashout = refunds.request_cashout(user.id, 700, stripe_provider)
    (part,) = cashout.parts
    assert refunds.refund_key(part) == refunds.refund_key(db.session.get(TopUpRefund, part.id))
    # The answer was lost (nothing links the refund here): a retry finds it at Stripe, sends nothing.
    part.provider_ref = None
    db.session.commit()
    assert refunds.submit_refund(part, stripe_provider) in ("found", "refund_succeeded")
    assert len(refunds_at_stripe(fake_stripe)) == 1
    assert len(stripe_provider.client.v1.refunds.list().data) == 1
    assert db.session.get(TopUpRefund, part.id).provider_ref is not None
    assert check_ledger() == []


def test_failed_refund_returns_the_money_to_the_wallet_whatever_the_event_order(
    two_topups, stripe_provider, fake_stripe, deliver
):
    user, _, _ = two_topups
    fake_stripe.fail_next_refund()
    cashout = refunds.request_cashout(user.id, 1500, stripe_provider)
    assert wallet_balance(user.id) == 1500 and balance_of("refunds:pending") == 1500
    (created,) = fake_stripe.events("refund.created")
    (updated,) = fake_stripe.events("refund.updated")
    (failed,) = fake_stripe.events("refund.failed")
    assert deliver(updated).get_json()["outcome"] == "refund_failed"
    assert deliver(created).get_json()["outcome"] == "already_settled"  # stale "pending" snapshot
    assert deliver(failed).get_json()["outcome"] == "already_settled"
    db.session.expire_all()
    assert cashout.status == "failed" and cashout.parts[0].failure_reason == "expired_or_canceled_card"
    assert wallet_balance(user.id) == 3000 and balance_of("refunds:pending") == 0
    assert check_ledger() == []


def test_a_refund_that_fails_after_succeeding_puts_the_money_back(
    two_topups, stripe_provider, fake_stripe, deliver, resign
):
    user, _, _ = two_topups
    cashout = refunds.request_cashout(user.id, 1000, stripe_provider)
    (created,) = fake_stripe.events("refund.created")
    deliver(created)
    fees = balance_of("fees:stripe")
    assert balance_of("external:stripe") == -3000 - fees + 1000

    def fail(data):
        data["type"] = "refund.failed"
        data["id"] = "evt_late_failure"
        data["data"]["object"]["status"] = "failed"

    assert deliver(resign(fake_stripe, created, fail)).get_json()["outcome"] == "refund_failed"
    db.session.expire_all()
    assert cashout.status == "failed" and wallet_balance(user.id) == 3000
    assert balance_of("external:stripe") == -3000 - fees
    assert check_ledger() == []


def test_more_than_the_balance_is_refused_with_a_message(two_topups, client, login, fake_stripe):
    user, _, _ = two_topups
    login(user)
    page = client.post("/wallet/cashout", data={"amount": "30.01", "request_key": "k"})
    assert page.status_code == 200
    assert "¥30.00" in page.get_data(as_text=True) and 'class="error"' in page.get_data(as_text=True)
    assert db.session.execute(select(func.count()).select_from(CashOut)).scalar_one() == 0
    assert refunds_at_stripe(fake_stripe) == [] and wallet_balance(user.id) == 3000


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "1.234", ""])
def test_bad_amounts_get_a_message(amount, two_topups, client, login):
    user, _, _ = two_topups
    login(user)
    page = client.post("/wallet/cashout", data={"amount": amount})
    assert page.status_code == 200 and 'class="error"' in page.get_data(as_text=True)
    assert wallet_balance(user.id) == 3000


def test_only_what_recent_top_ups_can_return_may_be_withdrawn(
    app, make_resident, stripe_topup, stripe_provider, clock, ended_session, make_site, fake_stripe
):
    from chargeshed.payments.refunds import CashOutRefused, refund_session

    make_site()
    user = make_resident()
    stripe_topup(user, 1000)
    session = ended_session(user)  # costs ¥1.00 of the ¥10.00
    refund_session(user.id, session, 100, "port was faulty")  # goodwill credit: not refundable to a card
    clock.advance(days=91)
    recent = stripe_topup(user, 2000)
    assert wallet_balance(user.id) == 3000
    assert refunds.withdrawable_fen(user.id, "stripe") == 2000
    with pytest.raises(CashOutRefused) as refused:
        refunds.request_cashout(user.id, 2001, stripe_provider)
    assert (refused.value.code, refused.value.limit_fen) == ("over_refundable", 2000)
    cashout = refunds.request_cashout(user.id, 2000, stripe_provider)
    assert [p.topup_id for p in cashout.parts] == [recent.id]


def test_double_submit_makes_one_cash_out(two_topups, client, login, fake_stripe):
    user, _, _ = two_topups
    login(user)
    form = client.get("/wallet/cashout").get_data(as_text=True)
    key = re.search(r'name="request_key" value="([^"]+)"', form).group(1)
    first = client.post("/wallet/cashout", data={"amount": "5", "request_key": key, "confirmed": "yes"})
    second = client.post("/wallet/cashout", data={"amount": "5", "request_key": key, "confirmed": "yes"})
    assert first.headers["Location"] == second.headers["Location"]
    assert db.session.execute(select(func.count()).select_from(CashOut)).scalar_one() == 1
    assert wallet_balance(user.id) == 2500 and len(refunds_at_stripe(fake_stripe)) == 1


def test_stripe_down_leaves_the_refund_pending_and_reconcile_submits_it(
    two_topups, stripe_provider, fake_stripe, runner, monkeypatch
):
    user, _, _ = two_topups

    def unreachable(*args, **kwargs):
        raise ConnectionError("stripe unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(type(stripe_provider), "refund", unreachable)
        cashout = refunds.request_cashout(user.id, 800, stripe_provider)
    (part,) = cashout.parts
    assert part.status == "pending" and part.provider_ref is None
    assert wallet_balance(user.id) == 2200 and refunds_at_stripe(fake_stripe) == []

    first = runner.invoke(args=["reconcile"])
    assert "refunds submitted again: 1" in first.output, first.output
    db.session.expire_all()
    assert part.provider_ref.startswith("re_") and len(refunds_at_stripe(fake_stripe)) == 1
    # The webhook was missed too: the next run settles it from Stripe's state.
    second = runner.invoke(args=["reconcile"])
    assert "refunds settled: 1" in second.output and second.exit_code == 0
    db.session.expire_all()
    assert cashout.status == "completed" and balance_of("refunds:pending") == 0
    assert check_ledger() == []


def test_a_refund_stripe_refuses_goes_back_to_the_wallet_at_once(two_topups, stripe_provider, fake_stripe, runner):
    user, _, newer = two_topups
    # Refunded in the dashboard behind our back.
    stripe_provider.client.v1.refunds.create(params={"payment_intent": newer.payment_ref})
    cashout = refunds.request_cashout(user.id, 1500, stripe_provider)
    db.session.expire_all()
    assert [p.status for p in cashout.parts] == ["failed"] and cashout.status == "failed"
    assert wallet_balance(user.id) == 3000 and balance_of("refunds:pending") == 0
    report = runner.invoke(args=["reconcile"])
    assert report.exit_code == 1 and "was not made here" in report.output


def test_demo_cash_out_completes_at_once_and_says_demo(app, client, login, make_resident):
    user = login(make_resident(balance_fen=2000))
    page = client.get("/wallet/cashout").get_data(as_text=True)
    assert "Demo" in page or "演示" in page
    done = client.post(
        "/wallet/cashout", data={"amount": "12.50", "request_key": "x", "confirmed": "yes"}, follow_redirects=True
    )
    text = done.get_data(as_text=True)
    assert 'data-state="completed"' in text and ("DEMO" in text or "演示" in text)
    assert wallet_balance(user.id) == 750 and balance_of("refunds:pending") == 0
    assert balance_of("external:demo") == -2000 + 1250
    assert check_ledger() == []


def test_someone_elses_cash_out_is_not_found(app, client, login, make_resident):
    owner = make_resident(balance_fen=1000)
    cashout = refunds.request_cashout(owner.id, 100, DemoProvider())
    login(make_resident())
    assert client.get(f"/wallet/cashout/{cashout.id}").status_code == 404


def test_pending_refunds_account_matches_the_refunds_on_their_way(two_topups, stripe_provider, fake_stripe, deliver):
    user, _, _ = two_topups
    assert refunds.pending_refunds_problems() == []
    refunds.request_cashout(user.id, 1200, stripe_provider)
    assert refunds.pending_refunds_problems() == [] and balance_of("refunds:pending") == 1200
    # A refund marked done without its booking would leave money stranded: it is reported.
    db.session.execute(TopUpRefund.__table__.update().values(status="succeeded"))
    db.session.commit()
    assert refunds.pending_refunds_problems() == ["refunds:pending has 1200 fen but pending refunds add up to 0 fen"]
