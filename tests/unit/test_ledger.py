"""Ledger invariants: balanced, integer fen, booked once, wallets never negative, tampering found."""

import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from chargeshed.accounts.models import User
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.models import LedgerEntry, LedgerTxn


def _txn_count() -> int:
    return db.session.execute(select(func.count(LedgerTxn.id))).scalar_one()


def _credit(user_id: int, amount: int, ref: str) -> None:
    ledger.post(
        ref,
        "topup",
        [ledger.Leg(ledger.external_account("demo"), -amount), ledger.Leg(ledger.wallet_account(user_id), amount)],
    )
    db.session.commit()


def test_an_unbalanced_transaction_is_refused_and_nothing_is_kept(app, make_site, make_resident):
    make_site()
    user = make_resident(balance_fen=1000)
    before = _txn_count()
    with pytest.raises(ledger.LedgerError, match="unbalanced"):
        ledger.post(
            "bad:1",
            "adjust",
            [ledger.Leg(ledger.wallet_account(user.id), -100), ledger.Leg(ledger.revenue_account(1), 99)],
        )
    db.session.commit()
    assert _txn_count() == before and ledger.wallet_balance(user.id) == 1000


@pytest.mark.parametrize("amount", [1.5, 100.0, True])
def test_amounts_must_be_integer_fen(app, make_resident, amount):
    user = make_resident(balance_fen=1000)
    with pytest.raises(ledger.LedgerError, match="integer fen"):
        ledger.post(
            "float:1",
            "adjust",
            [ledger.Leg(ledger.wallet_account(user.id), -amount), ledger.Leg(ledger.holds_account(), amount)],
        )
    assert ledger.wallet_balance(user.id) == 1000 and ledger.find_txn("float:1") is None


def test_a_wallet_never_goes_negative_and_the_refused_posting_leaves_no_trace(app, make_resident):
    user = make_resident(balance_fen=500)
    wallet, holds = ledger.wallet_account(user.id), ledger.holds_account()
    with pytest.raises(ledger.InsufficientFunds):
        ledger.post("hold:too-much", "hold", [ledger.Leg(wallet, -600), ledger.Leg(holds, 600)])
    # The caller's transaction is still usable: the refused posting was confined to a savepoint.
    ledger.post("hold:fits", "hold", [ledger.Leg(wallet, -500), ledger.Leg(holds, 500)])
    db.session.commit()
    assert ledger.wallet_balance(user.id) == 0 and ledger.holds_account().balance_fen == 500
    assert ledger.find_txn("hold:too-much") is None
    assert ledger.check_ledger() == []


def test_the_same_ref_is_booked_once(app, make_resident):
    user = make_resident()
    _credit(user.id, 700, "topup:42")
    with pytest.raises(ledger.AlreadyBooked):
        _credit(user.id, 700, "topup:42")
    db.session.rollback()
    assert ledger.wallet_balance(user.id) == 700
    entries = db.session.execute(
        select(func.count(LedgerEntry.id)).join(LedgerTxn).where(LedgerTxn.ref == "topup:42")
    ).scalar_one()
    assert entries == 2


def test_the_cached_balance_returned_after_posting_is_the_stored_one(app, make_resident):
    user = make_resident(balance_fen=1000)
    wallet = ledger.wallet_account(user.id)
    ledger.post("hold:1", "hold", [ledger.Leg(wallet, -300), ledger.Leg(ledger.holds_account(), 300)])
    assert wallet.balance_fen == 700
    db.session.commit()
    db.session.expire_all()
    assert ledger.wallet_account(user.id).balance_fen == 700


def test_check_ledger_finds_a_tampered_cached_balance(app, make_resident, runner):
    user = make_resident(balance_fen=1000)
    assert ledger.check_ledger() == []
    db.session.execute(
        text("UPDATE ledger_account SET balance_fen = balance_fen + 1 WHERE code = :code"),
        {"code": f"wallet:{user.id}"},
    )
    db.session.commit()
    problems = ledger.check_ledger()
    assert problems == [f"account wallet:{user.id}: cached balance 1001 but entries sum to 1000"]
    result = runner.invoke(args=["check-ledger"])
    assert result.exit_code == 1 and "cached balance 1001" in result.output


def test_check_ledger_finds_an_entry_slipped_into_a_transaction(app, make_resident):
    user = make_resident(balance_fen=1000)
    txn = ledger.find_txn("topup:1")
    account = ledger.wallet_account(user.id)
    db.session.add(LedgerEntry(txn_id=txn.id, account_id=account.id, amount_fen=5))
    db.session.commit()
    problems = ledger.check_ledger()
    assert "transaction topup:1 is unbalanced by 5 fen" in problems
    assert f"account wallet:{user.id}: cached balance 1000 but entries sum to 1005" in problems


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moves=st.lists(
        st.tuples(st.sampled_from(["topup", "hold", "settle"]), st.integers(0, 2), st.integers(1, 2000)), max_size=30
    )
)
def test_any_sequence_of_postings_keeps_the_books_consistent(app, make_site, moves):
    """Whatever residents do, refused postings change nothing and the invariants hold."""
    if not hasattr(app, "ledger_site"):
        app.ledger_site = make_site()  # the shed whose revenue account receives the costs
    example = secrets.token_hex(4)  # examples share the database: keep their refs and people apart
    people = [User(login=f"{example}-{i}", password_hash="-") for i in range(3)]
    db.session.add_all(people)
    db.session.commit()
    users = [person.id for person in people]
    holds_before = ledger.holds_account().balance_fen
    held: list[tuple[int, int]] = []
    for i, (kind, who, amount) in enumerate(moves):
        n = f"{example}:{i}"
        user = users[who]
        try:
            if kind == "topup":
                _credit(user, amount, f"t{n}")
            elif kind == "hold":
                ledger.post(
                    f"h{n}",
                    "hold",
                    [ledger.Leg(ledger.wallet_account(user), -amount), ledger.Leg(ledger.holds_account(), amount)],
                )
                held.append((user, amount))
            elif held:
                owner, hold = held.pop()
                cost = min(hold, amount)
                ledger.post(
                    f"s{n}",
                    "settle",
                    [
                        ledger.Leg(ledger.holds_account(), -hold),
                        ledger.Leg(ledger.revenue_account(1), cost),
                        ledger.Leg(ledger.wallet_account(owner), hold - cost),
                    ],
                )
            db.session.commit()
        except ledger.InsufficientFunds:
            db.session.rollback()
        assert ledger.check_ledger() == []
    assert ledger.holds_account().balance_fen - holds_before == sum(amount for _, amount in held)


def test_a_posting_inside_a_transaction_the_caller_rolls_back_is_not_kept(app, make_site, make_resident):
    # A service books inside its caller's transaction (in a savepoint); when the caller then gives
    # up, the booking must go with it, on SQLite as on PostgreSQL.
    make_site()
    user = make_resident(balance_fen=1000)
    db.session.commit()
    before = _txn_count()
    db.session.execute(select(func.count(User.id)))  # the caller has only read so far
    ledger.post(
        "gift:rolled-back",
        "adjust",
        [ledger.Leg(ledger.external_account("demo"), -250), ledger.Leg(ledger.wallet_account(user.id), 250)],
    )
    db.session.rollback()
    assert _txn_count() == before
    assert ledger.find_txn("gift:rolled-back") is None
    assert ledger.wallet_balance(user.id) == 1000
