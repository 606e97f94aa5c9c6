"""Money against a Stripe that behaves as the real one: SDK-built objects (StripeObject, not dicts),
idempotency keys that expire after 24 h, answers lost after the work is done, a hanging API,
refunds made in the dashboard, lost disputes, and an account that settles in HKD.

Every test ends with `check-ledger`, and (where Stripe is called) with the proof that no database
write transaction was open during any call to Stripe.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
import stripe
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, find_txn, wallet_balance
from chargeshed.money.models import LedgerAccount
from chargeshed.payments import refunds
from chargeshed.payments.models import CashOut, ExternalRefund, TopUp, TopUpRefund
from chargeshed.payments.providers import refund_from_stripe
from tests.fakes.fake_stripe import FakeStripe, default_fee

DAY = 24 * 3600


@pytest.fixture(autouse=True)
def quick_timeouts(stripe_app):
    """Short read timeouts so a lost answer or a hanging API costs the tests little time."""
    stripe_app.config.update(
        STRIPE_CONNECT_TIMEOUT_SECONDS=2.0, STRIPE_READ_TIMEOUT_SECONDS=1.5, STRIPE_MAX_NETWORK_RETRIES=1
    )


@pytest.fixture
def writes_during_calls(app, fake_stripe, db_url):
    """Records any database write transaction open while Stripe is being called (must stay empty)."""
    held: list[str] = []

    def check(method: str, path: str) -> None:
        if getattr(fake_stripe, "checks_paused", False):  # the test itself is writing meanwhile
            return
        if db_url.startswith("sqlite"):
            conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.rollback()
            except sqlite3.OperationalError as exc:
                held.append(f"{method} {path}: {exc}")
            finally:
                conn.close()
        else:
            url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
                ).fetchall()
            held.extend(f"{method} {path}: {state} {query[:80]}" for state, query in rows)

    fake_stripe.request_hooks.append(check)
    yield held
    fake_stripe.request_hooks.remove(check)
    assert held == [], held


def balance_of(code: str) -> int:
    return db.session.execute(select(LedgerAccount.balance_fen).where(LedgerAccount.code == code)).scalar() or 0


def posts(fake, path: str) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == path]


def refunds_at_stripe(fake, payment_intent: str) -> list[dict]:
    return [o for o in fake._objects.values() if o["object"] == "refund" and o["payment_intent"] == payment_intent]


@pytest.fixture
def funded(make_resident, stripe_topup):
    """A resident with one ¥20 Stripe top-up, credited through the webhook."""
    user = make_resident()
    topup = stripe_topup(user, 2000)
    assert topup.status == "credited" and wallet_balance(user.id) == 2000
    return user, topup


# ------------------------------------------------------------------ 1. no double refund


def test_refund_metadata_is_read_from_the_sdks_own_objects():
    refund = stripe.StripeObject.construct_from(
        {
            "id": "re_1",
            "object": "refund",
            "status": "succeeded",
            "amount": 700,
            "payment_intent": "pi_1",
            "metadata": {"refund_id": "42", "topup_id": "7"},
            "failure_reason": None,
        },
        "sk_test_x",
    )
    assert not hasattr(refund.metadata, "get")  # not a dict: .get is not there
    seen = refund_from_stripe(refund)
    assert (seen.refund_id, seen.topup_id, seen.payment_ref, seen.failure_reason) == (42, 7, "pi_1", "")


def test_a_refund_webhook_before_the_answer_links_and_settles_our_refund(
    funded, stripe_provider, fake_stripe, deliver, writes_during_calls
):
    user, topup = funded
    fake_stripe.lose_responses("/v1/refunds", count=2, method="POST")  # the first try and the SDK's retry
    cashout = refunds.request_cashout(user.id, 700, stripe_provider)
    (part,) = cashout.parts
    assert part.provider_ref is None and part.status == "pending"
    (created,) = fake_stripe.events("refund.created")
    response = deliver(created)
    assert response.status_code == 200 and response.json["outcome"] == "refund_succeeded"
    db.session.expire_all()
    assert db.session.get(TopUpRefund, part.id).provider_ref == created["data"]["object"]["id"]
    assert db.session.get(CashOut, cashout.id).status == "completed"
    assert wallet_balance(user.id) == 1300 and check_ledger() == []


def test_a_lost_refund_answer_is_never_paid_twice_even_after_stripe_forgot_the_key(
    funded, stripe_provider, fake_stripe, runner, clock, writes_during_calls
):
    user, topup = funded
    fake_stripe.lose_responses("/v1/refunds", count=2, method="POST")
    refunds.request_cashout(user.id, 700, stripe_provider)
    fake_stripe.release()
    # Two days later: Stripe has forgotten the idempotency key; no webhook ever arrived.
    fake_stripe.advance(2 * DAY)
    clock.advance(days=2)
    result = runner.invoke(args=["reconcile"])
    assert [r["amount"] for r in refunds_at_stripe(fake_stripe, topup.payment_ref)] == [700]
    assert "was not made here" not in result.output
    assert result.exit_code == 0, result.output
    again = runner.invoke(args=["reconcile"])
    assert again.exit_code == 0 and len(refunds_at_stripe(fake_stripe, topup.payment_ref)) == 1
    assert wallet_balance(user.id) == 1300 and balance_of("refunds:pending") == 0
    assert check_ledger() == []


def test_a_refund_that_never_reached_stripe_is_sent_again_with_a_fresh_key(
    funded, stripe_provider, fake_stripe, runner, clock, writes_during_calls
):
    user, topup = funded
    fake_stripe.hang("/v1/refunds", count=2, method="POST")  # Stripe never did it
    cashout = refunds.request_cashout(user.id, 500, stripe_provider)
    fake_stripe.release()
    (part,) = cashout.parts
    first_key = db.session.get(TopUpRefund, part.id).idempotency_key
    clock.advance(hours=5)
    assert runner.invoke(args=["reconcile"]).exit_code == 0
    assert [r["amount"] for r in refunds_at_stripe(fake_stripe, topup.payment_ref)] == [500]
    db.session.expire_all()
    assert db.session.get(TopUpRefund, part.id).idempotency_key != first_key
    assert check_ledger() == []


# ------------------------------------------------------------------ 2. no network call in a transaction


def test_a_hanging_stripe_gives_the_resident_a_message_and_blocks_nobody(
    stripe_app, client, make_site, make_resident, login, fake_stripe, stripe_topup, deliver, writes_during_calls
):
    make_site()
    other = make_resident()
    paid = stripe_topup(other, 1000, webhook=False)
    login(make_resident())
    # Every attempt to create the checkout hangs; the webhook's own reads of sessions do not.
    fake_stripe.hang("/v1/checkout/sessions", method="POST")
    delivered = []

    def webhook_meanwhile(method: str, path: str) -> None:
        """While the resident waits, another resident's payment webhook is credited: the database is free."""
        if (method, path) == ("POST", "/v1/checkout/sessions") and not delivered:
            fake_stripe.checks_paused = True
            try:
                delivered.append(deliver(fake_stripe.events("checkout.session.completed")[0]).status_code)
            finally:
                fake_stripe.checks_paused = False

    fake_stripe.request_hooks.append(webhook_meanwhile)
    response = client.post("/wallet/topup", data={"amount": "1000"}, follow_redirects=True)
    fake_stripe.release()
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and ("Payment is not available" in text or "暂时无法支付" in text)
    assert delivered and set(delivered) == {200}
    assert wallet_balance(other.id) == 1000 and db.session.get(TopUp, paid.id).status == "credited"
    assert check_ledger() == []


# ------------------------------------------------------------------ 3. random idempotency keys


def test_a_reused_database_id_never_collides_with_an_earlier_checkout(
    make_resident, stripe_provider, fake_stripe, writes_during_calls
):
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import CheckoutUrls

    user = make_resident()
    topup = fulfilment.create_topup(user.id, 2000, [1000, 2000], "cny", "stripe")
    db.session.commit()
    # A ¥10 top-up had this id before its row was rolled back (SQLite hands the id out again),
    # and Stripe still holds the checkout made for it under an id-based key.
    stripe_provider.client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "success_url": "https://x/ok",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "cny",
                        "unit_amount": 1000,
                        "product_data": {"name": "ChargeShed wallet top-up"},
                    },
                }
            ],
        },
        options={"idempotency_key": f"topup-{topup.id}-checkout"},
    )
    urls = CheckoutUrls("https://charge.example.cn/ok", "https://charge.example.cn/no", "/demo")
    stripe_provider.create_checkout(topup, urls, "ChargeShed wallet top-up")
    db.session.commit()
    assert fake_stripe.get(topup.checkout_ref)["amount_total"] == 2000
    assert topup.checkout_key and f"-{topup.id}-" not in topup.checkout_key


# ------------------------------------------------------------------ 4. refunds made outside ChargeShed


def test_a_payment_refunded_before_its_completed_event_is_never_credited(
    make_resident, stripe_topup, fake_stripe, deliver, writes_during_calls
):
    user = make_resident()
    topup = stripe_topup(user, 1000, webhook=False)
    fake_stripe.dashboard_refund(fake_stripe.get(topup.checkout_ref)["payment_intent"])
    response = deliver(fake_stripe.events("checkout.session.completed")[0])
    assert response.status_code == 200 and response.json["outcome"] == "refunded_before_credit"
    for event in fake_stripe.events("refund.*") + fake_stripe.events("charge.refunded"):
        assert deliver(event).status_code == 200
    db.session.expire_all()
    assert db.session.get(TopUp, topup.id).status == "refunded"
    assert wallet_balance(user.id) == 0 and find_txn(f"topup:{topup.id}") is None
    assert check_ledger() == []


def test_a_refund_event_before_the_completed_event_is_remembered(
    make_resident, stripe_topup, fake_stripe, deliver, writes_during_calls
):
    user = make_resident()
    topup = stripe_topup(user, 2000, webhook=False)
    intent = fake_stripe.get(topup.checkout_ref)["payment_intent"]
    fake_stripe.dashboard_refund(intent, 500)
    assert deliver(fake_stripe.events("refund.created")[0]).json["outcome"] == "outside_before_credit"
    assert deliver(fake_stripe.events("checkout.session.completed")[0]).status_code == 200
    assert wallet_balance(user.id) == 1500 and check_ledger() == []


def test_a_dashboard_refund_is_taken_back_from_the_wallet(funded, fake_stripe, deliver, writes_during_calls):
    user, topup = funded
    fake_stripe.dashboard_refund(topup.payment_ref, 800)
    outcomes = {
        deliver(e).json["outcome"] for e in fake_stripe.events("refund.created") + fake_stripe.events("charge.refunded")
    }
    assert "outside_taken" in outcomes
    assert wallet_balance(user.id) == 1200 and balance_of("losses:stripe") == 0
    assert db.session.execute(select(func.count()).select_from(ExternalRefund)).scalar_one() == 1
    assert check_ledger() == []


def test_money_already_spent_is_shown_as_a_shortfall_to_the_operator_and_in_reconcile(
    make_site, funded, fake_stripe, deliver, runner, ended_session, writes_during_calls
):
    make_site()
    user, topup = funded
    ended_session(user)  # ¥1.00 spent on a charge: the wallet has ¥19.00
    fake_stripe.dashboard_refund(topup.payment_ref)  # all ¥20 back to the card
    assert deliver(fake_stripe.events("refund.created")[0]).json["outcome"] == "outside_shortfall"
    assert wallet_balance(user.id) == 0 and balance_of("losses:stripe") == -100
    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 1 and "shortfall ¥1.00" in result.output
    assert check_ledger() == []


def test_reconcile_books_a_dashboard_refund_whose_webhook_never_came(funded, fake_stripe, runner, writes_during_calls):
    user, topup = funded
    fake_stripe.dashboard_refund(topup.payment_ref, 300)
    first = runner.invoke(args=["reconcile"])
    assert first.exit_code == 1 and "was not made here" in first.output
    assert wallet_balance(user.id) == 1700
    second = runner.invoke(args=["reconcile"])
    assert second.exit_code == 0, second.output
    assert wallet_balance(user.id) == 1700 and check_ledger() == []


def test_a_lost_dispute_takes_the_money_back(funded, fake_stripe, deliver, writes_during_calls):
    user, topup = funded
    event = fake_stripe.lose_dispute(topup.payment_ref)
    assert deliver(event).json["outcome"] == "outside_taken"
    assert deliver(event).status_code == 200
    assert wallet_balance(user.id) == 0 and check_ledger() == []


def test_a_dispute_won_later_puts_the_money_back_in_the_wallet_once(
    funded, fake_stripe, deliver, client, login, writes_during_calls
):
    user, topup = funded
    withdrawn = fake_stripe.lose_dispute(topup.payment_ref)
    assert deliver(withdrawn).json["outcome"] == "outside_taken"
    assert wallet_balance(user.id) == 0
    won = fake_stripe.win_dispute(withdrawn["data"]["object"]["id"])
    assert deliver(won).json["outcome"] == "outside_reversed"
    for event in (won, withdrawn):  # delivered again, in any order: nothing moves twice
        assert deliver(event).status_code == 200
    assert wallet_balance(user.id) == 2000 and fake_stripe.balance("cny") == -balance_of("external:stripe")
    assert check_ledger() == []
    login(user)
    statement = client.get("/wallet/statement").get_data(as_text=True)
    assert "已由 Stripe 退款或被您向银行拒付：已扣回" in statement and "该退款或拒付已撤销：款项已退回" in statement
    assert "external_refund" not in statement.replace('data-kind="external_refund', "")


def test_a_won_dispute_whose_withdrawal_event_comes_last_takes_nothing(
    funded, fake_stripe, deliver, writes_during_calls
):
    user, topup = funded
    withdrawn = fake_stripe.lose_dispute(topup.payment_ref)
    won = fake_stripe.win_dispute(withdrawn["data"]["object"]["id"])
    assert deliver(won).json["outcome"] == "outside_reversed"
    assert deliver(withdrawn).json["outcome"] == "already_booked"
    assert wallet_balance(user.id) == 2000 and fake_stripe.balance("cny") == -balance_of("external:stripe")
    assert check_ledger() == []


def test_reconcile_books_a_dispute_whose_webhooks_never_came(hkd_stripe, funded, runner, writes_during_calls):
    user, topup = funded
    withdrawn = hkd_stripe.lose_dispute(topup.payment_ref, fee=1500)
    dispute_id = withdrawn["data"]["object"]["id"]
    first = runner.invoke(args=["reconcile"])  # a missed webhook is reported (exit 1) once, and booked
    assert first.exit_code == 1 and f"dispute {dispute_id} withdrew money" in first.output, first.output
    assert wallet_balance(user.id) == 0 and stripe_holds_what_the_books_say(hkd_stripe)
    hkd_stripe.win_dispute(dispute_id, fee_returned=1500)
    second = runner.invoke(args=["reconcile"])
    assert second.exit_code == 1 and f"dispute {dispute_id} won: money put back" in second.output, second.output
    assert wallet_balance(user.id) == 2000 and stripe_holds_what_the_books_say(hkd_stripe)
    again = runner.invoke(args=["reconcile"])
    assert again.exit_code == 0 and dispute_id not in again.output and "MISMATCH" not in again.output
    assert check_ledger() == []


def test_the_refunds_page_says_a_dispute_was_won(funded, fake_stripe, deliver, client, login):
    from chargeshed.accounts.models import ROLE_ADMIN
    from chargeshed.accounts.services import create_user

    _, topup = funded
    withdrawn = fake_stripe.lose_dispute(topup.payment_ref)
    deliver(withdrawn)
    deliver(fake_stripe.win_dispute(withdrawn["data"]["object"]["id"]))
    login(create_user("refunds-admin", "secret-pass", ROLE_ADMIN))
    page = client.get("/operator/refunds/").get_data(as_text=True)
    assert withdrawn["data"]["object"]["id"] in page and "争议胜诉：Stripe 已退回款项，已冲回" in page


# ------------------------------------------------------------------ 5. an account settled in HKD


@pytest.fixture
def hkd_stripe(fake_stripe):
    """The fake Stripe account settles in HKD at 1 CNY = 1.087 HKD."""
    fake_stripe.settlement_currency = "hkd"
    fake_stripe.exchange_rates = {"cny": 1.087}
    return fake_stripe


def test_an_hkd_account_books_fees_exactly_and_reconciles_clean(
    hkd_stripe, make_resident, stripe_topup, runner, writes_during_calls
):
    user = make_resident()
    topup = stripe_topup(user, 1000)
    settled = 1087
    fee = default_fee(settled)
    assert (topup.fee_fen, topup.net_fen, topup.fee_currency) == (fee, settled - fee, "hkd")
    assert topup.exchange_rate == "1.087"
    legs = {(e.account.code, e.account.currency, e.amount_fen) for e in find_txn(f"fee:topup:{topup.id}").entries}
    assert legs == {
        ("external:stripe", "cny", 1000),
        ("exchange:stripe:cny", "cny", -1000),
        ("exchange:stripe:hkd", "hkd", settled),
        ("external:stripe:hkd", "hkd", -(settled - fee)),
        ("fees:stripe:hkd", "hkd", -fee),
    }
    assert balance_of("external:stripe") == 0  # the CNY paid was converted: nothing left in CNY
    assert wallet_balance(user.id) == 1000
    for _ in range(2):
        result = runner.invoke(args=["reconcile"])
        assert result.exit_code == 0, result.output
        assert "MISMATCH" not in result.output
    assert check_ledger() == []


def test_statements_show_an_hkd_fee_as_its_cny_equivalent(hkd_stripe, make_resident, stripe_topup, clock):
    from chargeshed.settlement.figures import fee_conversions, payment_fees
    from chargeshed.settlement.periods import parse_period
    from chargeshed.timeutil import to_local

    stripe_topup(make_resident(), 1000)
    period = parse_period(to_local(clock.now).strftime("%Y-%m"))
    fee = default_fee(1087)
    assert payment_fees(period) == ((fee * 1000 * 2 + 1087) // (2 * 1087), 1)
    assert fee_conversions(period) == {
        "hkd": {
            "fee_minor": fee,
            "gross_minor": 1087,
            "paid_fen": 1000,
            "cny_fen": (fee * 1000 * 2 + 1087) // (2 * 1087),
            "transactions": 1,
        }
    }


def legs_of(ref: str) -> set[tuple[str, str, int]]:
    return {(e.account.code, e.account.currency, e.amount_fen) for e in find_txn(ref).entries}


def stripe_holds_what_the_books_say(fake, currency: str = "hkd") -> bool:
    return fake.balance(currency) == -balance_of(f"external:stripe:{currency}")


def test_a_cash_out_refund_is_booked_in_hkd_at_the_refunds_own_rate(
    hkd_stripe, make_resident, stripe_topup, stripe_provider, deliver, writes_during_calls
):
    user = make_resident()
    topup = stripe_topup(user, 2000)
    hkd_stripe.exchange_rates["cny"] = 1.09  # the rate moved since the payment
    refunds.request_cashout(user.id, 700, stripe_provider)
    for event in hkd_stripe.events("refund.*") + hkd_stripe.events("charge.refunded"):
        assert deliver(event).status_code == 200
    (refund,) = refunds_at_stripe(hkd_stripe, topup.payment_ref)
    assert legs_of(f"balance:{refund['balance_transaction']}") == {
        ("external:stripe", "cny", -700),
        ("exchange:stripe:cny", "cny", 700),
        ("exchange:stripe:hkd", "hkd", -763),
        ("external:stripe:hkd", "hkd", 763),
    }
    assert balance_of("external:stripe") == 0 and balance_of("refunds:pending") == 0
    assert stripe_holds_what_the_books_say(hkd_stripe)
    assert wallet_balance(user.id) == 1300 and check_ledger() == []


def test_a_dashboard_refund_is_booked_in_hkd_too(hkd_stripe, funded, deliver, writes_during_calls):
    user, topup = funded
    refund = hkd_stripe.dashboard_refund(topup.payment_ref, 500)
    assert deliver(hkd_stripe.events("refund.created")[0]).json["outcome"] == "outside_taken"
    assert legs_of(f"balance:{refund['balance_transaction']}") == {
        ("external:stripe", "cny", -500),
        ("exchange:stripe:cny", "cny", 500),
        ("exchange:stripe:hkd", "hkd", -544),
        ("external:stripe:hkd", "hkd", 544),
    }
    assert deliver(hkd_stripe.events("charge.refunded")[0]).status_code == 200  # booked once
    assert balance_of("external:stripe") == 0 and stripe_holds_what_the_books_say(hkd_stripe)
    assert wallet_balance(user.id) == 1500 and check_ledger() == []


def test_a_payout_moves_the_hkd_balance_to_the_bank_and_a_failed_one_brings_it_back(
    hkd_stripe, funded, deliver, writes_during_calls
):
    created = hkd_stripe.payout()
    payout = created["data"]["object"]
    assert deliver(created).json["outcome"] == "payout_recorded"
    assert deliver(hkd_stripe.pay_payout(payout["id"])).json["outcome"] == "payout_already_recorded"
    assert legs_of(f"balance:{payout['balance_transaction']}") == {
        ("external:stripe:hkd", "hkd", payout["amount"]),
        ("payouts:stripe:hkd", "hkd", -payout["amount"]),
    }
    assert balance_of("external:stripe:hkd") == 0 and hkd_stripe.balance("hkd") == 0
    assert balance_of("payouts:stripe:hkd") == -payout["amount"]

    again = hkd_stripe.payout(1000)["data"]["object"]
    hkd_stripe.fail_payout(again["id"])  # only the failure's webhook arrives
    assert deliver(hkd_stripe.events("payout.failed")[0]).json["outcome"] == "payout_recorded"
    assert balance_of("payouts:stripe:hkd") == -payout["amount"]
    assert stripe_holds_what_the_books_say(hkd_stripe) and check_ledger() == []


def test_a_lost_dispute_in_hkd_is_booked_with_its_fee(hkd_stripe, funded, deliver, runner, writes_during_calls):
    user, topup = funded
    event = hkd_stripe.lose_dispute(topup.payment_ref, fee=1500)
    assert deliver(event).json["outcome"] == "outside_taken"
    (withdrawal,) = event["data"]["object"]["balance_transactions"]
    assert legs_of(f"balance:{withdrawal['id']}") == {
        ("external:stripe", "cny", -2000),
        ("exchange:stripe:cny", "cny", 2000),
        ("exchange:stripe:hkd", "hkd", -2174),
        ("external:stripe:hkd", "hkd", 2174 + 1500),
        ("fees:stripe:hkd", "hkd", -1500),
    }
    assert wallet_balance(user.id) == 0 and balance_of("external:stripe") == 0
    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 0, result.output
    assert stripe_holds_what_the_books_say(hkd_stripe) and check_ledger() == []


def test_a_won_dispute_in_hkd_books_the_money_and_the_returned_fee_at_the_rate_of_the_day(
    hkd_stripe, funded, deliver, runner, writes_during_calls
):
    user, topup = funded
    withdrawn = hkd_stripe.lose_dispute(topup.payment_ref, fee=1500)
    deliver(withdrawn)
    hkd_stripe.exchange_rates["cny"] = 1.09  # the rate moved while the dispute was open
    won = hkd_stripe.win_dispute(withdrawn["data"]["object"]["id"], fee_returned=1500)
    assert deliver(won).json["outcome"] == "outside_reversed"
    reinstated = won["data"]["object"]["balance_transactions"][-1]
    assert legs_of(f"balance:{reinstated['id']}") == {
        ("external:stripe", "cny", 2000),
        ("exchange:stripe:cny", "cny", -2000),
        ("exchange:stripe:hkd", "hkd", 2180),
        ("external:stripe:hkd", "hkd", -(2180 + 1500)),
        ("fees:stripe:hkd", "hkd", 1500),
    }
    assert wallet_balance(user.id) == 2000 and balance_of("external:stripe") == 0
    assert balance_of("fees:stripe:hkd") == -default_fee(2174)  # the dispute fee came back: only the payment's
    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 0, result.output
    assert stripe_holds_what_the_books_say(hkd_stripe) and check_ledger() == []


@pytest.fixture
def healthy_hkd_account(hkd_stripe, make_resident, stripe_topup, stripe_provider, deliver):
    """Two residents' top-ups, a cash-out, a refund made in the dashboard and a payout, every webhook
    delivered but the payout's (it is listed by reconcile)."""
    first, second = make_resident(), make_resident(phone="13800000077")
    stripe_topup(first, 2000)
    other = stripe_topup(second, 5000)
    hkd_stripe.exchange_rates["cny"] = 1.0912
    refunds.request_cashout(first.id, 700, stripe_provider)
    hkd_stripe.dashboard_refund(db.session.get(TopUp, other.id).payment_ref, 1200)
    for event in hkd_stripe.events("refund.*") + hkd_stripe.events("charge.refund*"):
        assert deliver(event).status_code == 200
    hkd_stripe.pay_payout(hkd_stripe.payout(2000)["data"]["object"]["id"])
    return first, second


def test_reconcile_exits_0_on_a_healthy_account_settled_in_hkd(
    healthy_hkd_account, hkd_stripe, runner, writes_during_calls
):
    first, second = healthy_hkd_account
    for _ in range(2):
        result = runner.invoke(args=["reconcile"])
        assert result.exit_code == 0, result.output
        assert "MISMATCH" not in result.output
        assert f"Stripe balance {hkd_stripe.balance('hkd') / 100:.2f} HKD: the books agree" in result.output
    assert "refund and payout balance transactions booked: 0" in result.output  # the first run booked it
    assert balance_of("payouts:stripe:hkd") == -2000 and balance_of("external:stripe") == 0
    assert (wallet_balance(first.id), wallet_balance(second.id)) == (1300, 3800)
    assert stripe_holds_what_the_books_say(hkd_stripe) and check_ledger() == []


def test_reconcile_reports_an_hkd_movement_it_cannot_explain(healthy_hkd_account, hkd_stripe, runner):
    txn = hkd_stripe.adjustment(-150)
    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 1
    assert f"balance transaction {txn['id']} (adjustment of -1.50 HKD from Stripe) is not on the books" in result.output
    assert "difference -1.50 HKD" in result.output
    assert check_ledger() == []


@pytest.mark.parametrize("spent", [False, True], ids=["in_the_wallet", "spent_meanwhile"])
def test_a_dashboard_refund_that_fails_later_is_booked_back(
    spent, hkd_stripe, make_site, funded, deliver, ended_session, runner, writes_during_calls
):
    make_site()
    user, topup = funded
    if spent:
        ended_session(user)  # ¥1.00 spent: the wallet has ¥19.00 when all ¥20 are refunded
    refund = hkd_stripe.dashboard_refund(topup.payment_ref, 2000 if spent else 800)
    deliver(hkd_stripe.events("refund.created")[0])
    assert wallet_balance(user.id) == (0 if spent else 1200)
    assert balance_of("losses:stripe") == (-100 if spent else 0)
    hkd_stripe.fail_refund(refund["id"])
    outcomes = [deliver(e).json["outcome"] for e in hkd_stripe.events("refund.updated")]
    outcomes += [deliver(e).json["outcome"] for e in hkd_stripe.events("charge.refund.updated")]
    assert outcomes == ["outside_reversed", "already_booked"]
    assert wallet_balance(user.id) == (1900 if spent else 2000) and balance_of("losses:stripe") == 0
    assert db.session.execute(select(ExternalRefund.status)).scalar_one() == "failed"
    assert balance_of("external:stripe") == 0 and stripe_holds_what_the_books_say(hkd_stripe)
    assert runner.invoke(args=["reconcile"]).exit_code == 0
    assert check_ledger() == []


def test_reconcile_books_back_a_dashboard_refund_that_failed_without_a_webhook(
    hkd_stripe, funded, deliver, runner, writes_during_calls
):
    user, topup = funded
    refund = hkd_stripe.dashboard_refund(topup.payment_ref, 800)
    deliver(hkd_stripe.events("refund.created")[0])
    hkd_stripe.fail_refund(refund["id"])
    first = runner.invoke(args=["reconcile"])
    assert first.exit_code == 1 and f"refund {refund['id']} made outside ChargeShed failed" in first.output
    assert wallet_balance(user.id) == 2000
    assert runner.invoke(args=["reconcile"]).exit_code == 0
    assert stripe_holds_what_the_books_say(hkd_stripe) and check_ledger() == []


def test_statements_show_an_hkd_refund_with_its_cny_equivalent(
    hkd_stripe, make_site, make_resident, stripe_topup, stripe_provider, deliver, clock
):
    from flask_babel import force_locale

    from chargeshed.settlement import document
    from chargeshed.settlement.figures import compute_figures, fee_conversions, payment_fees
    from chargeshed.settlement.periods import parse_period
    from chargeshed.sites.models import Port
    from chargeshed.timeutil import to_local

    site = make_site()
    user = make_resident()
    stripe_topup(user, 2000)
    hkd_stripe.exchange_rates["cny"] = 1.09
    refunds.request_cashout(user.id, 700, stripe_provider)
    assert deliver(hkd_stripe.events("refund.created")[0]).status_code == 200
    period = parse_period(to_local(clock.now).strftime("%Y-%m"))
    converted = fee_conversions(period)["hkd"]
    assert converted["refunds"] == {
        "settled_minor": 763,
        "refunded_fen": 700,
        "fee_minor": 0,
        "cny_fen": 0,
        "transactions": 1,
    }
    assert (converted["gross_minor"], converted["paid_fen"], converted["transactions"]) == (2174, 2000, 1)
    assert payment_fees(period) == (converted["cny_fen"], 1)  # a refund's fee-less settlement adds none
    operator_id = db.session.execute(select(Port)).scalars().first().shed.operator_id
    figures = compute_figures(operator_id, site.id, period, now=clock.now)
    with force_locale("en"):
        (fees,) = [t for t in document.build(figures, "draft", None).tables if t.key == "fees"]
    text = " | ".join(str(cell) for row in fees.rows for cell in row)
    assert "Refunds settled in HKD: HKD 7.63 for ¥7.00 returned to payers, fees HKD 0.00" in text
    assert "Stripe's rate on that refund" in text
    assert check_ledger() == []


# ------------------------------------------------------------------ 9. states that resolve


def test_an_expired_top_up_says_so_instead_of_waiting(
    stripe_app, client, make_site, make_resident, login, fake_stripe, checkout_session_id
):
    make_site()
    login(make_resident())
    response = client.post("/wallet/topup", data={"amount": "1000"})
    session_id = checkout_session_id(response)
    fake_stripe.expire_checkout(session_id)
    topup = db.session.execute(select(TopUp)).scalar_one()
    page = client.get(f"/topup/{topup.id}/done", follow_redirects=True).get_data(as_text=True)
    assert "Waiting for the payment" not in page and "正在等待支付确认" not in page
    assert "not completed" in page or "未完成" in page
    db.session.expire_all()
    assert db.session.get(TopUp, topup.id).status == "expired"


def test_a_failed_async_payment_is_closed_by_reconcile_not_reported_as_processing(
    make_resident, stripe_topup, fake_stripe, runner
):
    topup = stripe_topup(make_resident(), 1000, pay=False)
    fake_stripe.complete_checkout(topup.checkout_ref, async_payment=True)
    fake_stripe.fail_async_payment(topup.checkout_ref)
    first = runner.invoke(args=["reconcile"])
    assert first.exit_code == 0 and "failed payments: 1" in first.output
    second = runner.invoke(args=["reconcile"])
    assert "processing" not in second.output and "failed payments: 0" in second.output
    db.session.expire_all()
    assert db.session.get(TopUp, topup.id).status == "failed" and check_ledger() == []


def test_fake_keeps_idempotency_keys_for_24_hours_only():
    with FakeStripe() as fake:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake.url}, max_network_retries=0)
        params = {
            "mode": "payment",
            "success_url": "https://x/ok",
            "line_items": [
                {"quantity": 1, "price_data": {"currency": "cny", "unit_amount": 1000, "product_data": {"name": "x"}}}
            ],
        }
        one = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k"})
        assert client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k"}).id == one.id
        fake.advance(DAY)
        assert client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k"}).id != one.id
