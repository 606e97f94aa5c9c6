"""Statements: figures from the ledger by local day, reconciled for random histories; review, issue, lock."""

from __future__ import annotations

import random
from datetime import date, timedelta
from fractions import Fraction

import pytest
from sqlalchemy import select

from chargeshed.accounts.models import User
from chargeshed.charging import sessions as charging
from chargeshed.charging.models import ENDED, ChargeSession
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger
from chargeshed.money.models import LedgerAccount, LedgerEntry, LedgerTxn
from chargeshed.settlement import statements
from chargeshed.settlement.agreements import PartyInput
from chargeshed.settlement.figures import compute_figures
from chargeshed.settlement.models import Statement
from chargeshed.settlement.periods import Period, SettlementRefused
from chargeshed.timeutil import to_local
from tests.settlement.conftest import local

OCTOBER = Period.month("2026-10")
NOVEMBER = Period.month("2026-11")


def _ids(site):
    return site.sheds[0].operator_id, site.id


def test_a_month_by_shed_and_by_local_day_with_the_split(app, make_site, make_resident, ports, charge, agree, at):
    at(2026, 9, 1)
    site = make_site(sheds=(2, 2))
    user = make_resident(balance_fen=5000)
    port = ports(site)
    agree(site, price=60)  # the operator pays the electricity: ¥0.60 per kWh
    # Ends 00:10 on 1 October local time (16:10 UTC on 30 September): October.
    first = charge(user, port[1][0], local(2026, 9, 30, 23, 40), minutes=30, watts=180, energy_wh=90)
    charge(user, port[1][1], local(2026, 10, 3, 20), minutes=200, watts=300, energy_wh=800)
    charge(user, port[2][0], local(2026, 10, 31, 23, 0), minutes=30, watts=180, energy_wh=72)  # 23:30
    charge(user, port[2][1], local(2026, 10, 31, 23, 50), minutes=30)  # ends 00:20 on 1 November
    unplugged = charge(user, port[2][0], local(2026, 10, 10, 8), minutes=1, energy_wh=0, reason=charging.UNPLUGGED)
    at(2026, 10, 12, 9)
    failed = charging.start_session(user.id, port[2][0])
    charging.fail_session(failed)
    at(2026, 11, 2)

    figures = compute_figures(*_ids(site), OCTOBER)

    assert first.cost_fen == 25 and unplugged.cost_fen == 0
    days = {d["date"]: d for d in figures["days"] if d["sessions"] or d["gross_fen"]}
    assert {day: (d["sessions"], d["energy_wh"], d["gross_fen"]) for day, d in days.items()} == {
        "2026-10-01": (1, 90, 25),
        "2026-10-03": (1, 800, 200),
        "2026-10-10": (1, 0, 0),
        "2026-10-31": (1, 72, 25),
    }
    assert [(s["name"], s["sessions"], s["gross_fen"]) for s in figures["sheds"]] == [
        ("1号车棚", 2, 225),
        ("2号车棚", 2, 25),
    ]
    totals = figures["totals"]
    assert (totals["sessions"], totals["energy_wh"]) == (4, 962)
    assert (totals["gross_fen"], totals["net_fen"]) == (250, 250)
    assert totals["electricity_fen"] == 58  # 0.962 kWh x 60 fen = 57.72
    assert totals["distributable_fen"] == 192
    parties = {p["name"]: p["payout_fen"] for p in figures["parties"]}
    assert parties == {"株洲安充新能源科技有限公司": 115 + 58, "物业服务公司": 58, "业主委员会": 19}
    assert totals["payout_fen"] == sum(parties.values()) == 250
    assert figures["unassigned"] is None


def _ledger_truth(site, period: Period) -> dict:
    """The same figures the slow way: every entry and session loaded and sorted in Python."""
    sheds = {s.id for s in site.sheds}
    start, end = period.utc_bounds()
    gross = adjustments = 0
    rows = db.session.execute(select(LedgerEntry, LedgerTxn, LedgerAccount).join(LedgerTxn).join(LedgerAccount)).all()
    for entry, txn, account in rows:
        if (
            account.kind != "revenue"
            or account.shed_id not in sheds
            or not period.contains(to_local(txn.created_at).date())
        ):
            continue
        if txn.kind == "settle":
            gross += entry.amount_fen
        else:
            adjustments += entry.amount_fen
    fees = sum(
        e.amount_fen for e, t, a in rows if t.kind == "payment_fee" and e.amount_fen > 0 and start <= t.created_at < end
    )
    wallets = sum(e.amount_fen for e, t, a in rows if a.kind == "wallet" and t.created_at < end)
    ended = [
        s
        for s in db.session.execute(select(ChargeSession)).scalars()
        if s.state == ENDED and s.shed_id in sheds and period.contains(to_local(s.ended_at).date())
    ]
    return {
        "gross": gross,
        "adjustments": adjustments,
        "fees": fees,
        "wallets": wallets,
        "sessions": len(ended),
        "energy": sum(s.energy_wh for s in ended),
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_histories_reconcile_to_the_ledger(
    app, make_site, make_resident, ports, charge, agree, at, clock, top_up, refund, seed
):
    rnd = random.Random(seed)
    at(2026, 9, 1)
    north, south = make_site(sheds=(3, 3)), make_site(sheds=(4,))
    # North: terms change on 15 October, and shed 2 has its own agreement for part of the month.
    agree(north, date(2026, 1, 1), price=rnd.choice([0, 55, 62]))
    agree(
        north,
        date(2026, 10, 15),
        parties=[
            PartyInput("运营方", "operator", 7000, pays_electricity=True),
            PartyInput("物业", "property", 3000, bears_fees=True),
        ],
        price=60,
        fee_mode="party",
    )
    agree(
        north,
        date(2026, 10, 5),
        valid_to=date(2026, 10, 20),
        shed_id=north.sheds[1].id,
        parties=[PartyInput("运营方", "operator", 5000), PartyInput("业委会", "owners_committee", 5000)],
    )
    agree(south, date(2026, 9, 1))
    residents = [make_resident() for _ in range(5)]
    every_port = [p for site in (north, south) for shed in ports(site).values() for p in shed]
    free_at = {p.id: local(2026, 9, 25) for p in every_port}
    moment = local(2026, 9, 25)
    done = []
    while moment < local(2026, 11, 3):
        moment += timedelta(minutes=rnd.randint(20, 400))
        user, port = rnd.choice(residents), rnd.choice(every_port)
        if free_at[port.id] > moment:
            continue
        clock.now = moment - timedelta(minutes=1)
        from chargeshed.money.ledger import wallet_balance

        if wallet_balance(user.id) < 300:
            top_up(user, rnd.choice([1000, 2000]), fee_fen=rnd.choice([0, 6, 13, 29]))
        minutes = rnd.choice([1, 45, 130, 300, 700])
        reason = rnd.choice([charging.FULL, charging.USER_STOP, charging.UNPLUGGED])
        session = charge(
            user,
            port,
            moment,
            minutes=minutes,
            watts=rnd.randint(60, 700),
            energy_wh=0 if reason == charging.UNPLUGGED else None,
            reason=reason,
        )
        free_at[port.id] = clock.now + timedelta(minutes=rnd.randint(1, 90))
        done.append(session)
        if session.cost_fen and rnd.random() < 0.15:  # a staff goodwill refund, up to days later
            clock.now += timedelta(hours=rnd.randint(1, 100))
            refund(session, rnd.randint(1, session.cost_fen))
        moment = max(moment, clock.now)
    at(2026, 11, 10)
    assert len(done) > 40 and check_ledger() == []

    results = {}
    for site in (north, south):
        figures = compute_figures(*_ids(site), OCTOBER)
        truth = _ledger_truth(site, OCTOBER)
        totals = figures["totals"]
        assert totals["gross_fen"] == truth["gross"]
        lines = figures["adjustments"]
        assert totals["adjustments_fen"] == truth["adjustments"] == sum(a["amount_fen"] for a in lines)
        assert (totals["sessions"], totals["energy_wh"]) == (truth["sessions"], truth["energy"])
        for key in ("sessions", "energy_wh", "gross_fen", "adjustments_fen"):
            by_day, by_shed = sum(d[key] for d in figures["days"]), sum(s[key] for s in figures["sheds"])
            assert by_day == by_shed == totals[key]
            assert sum(s[key] for s in figures["segments"]) == totals[key]  # every day is under an agreement
        assert figures["fees"]["period_total_fen"] == truth["fees"]
        assert figures["residents"]["wallets_fen"] == truth["wallets"]
        assert totals["payout_fen"] == totals["net_fen"] - totals["fees_fen"]
        for segment in figures["segments"]:
            assert sum(p["share_fen"] for p in segment["parties"]) == segment["distributable_fen"]
            for party in segment["parties"]:
                exact = Fraction(segment["distributable_fen"] * party["share_bp"], 10_000)
                assert abs(party["share_fen"] - exact) < 1
        results[site.id] = figures
    # The period's fees are shared out between the two sites in proportion to their gross revenue.
    fees = [results[s.id]["fees"]["allocated_fen"] for s in (north, south)]
    gross = [results[s.id]["totals"]["gross_fen"] for s in (north, south)]
    assert sum(fees) == truth["fees"]
    for fee, own in zip(fees, gross, strict=True):
        assert abs(fee - Fraction(truth["fees"] * own, sum(gross))) < 1


def test_fees_go_to_sites_by_gross_and_to_the_bearer_when_one_party_bears_them(
    app, make_site, make_resident, ports, charge, agree, at, top_up
):
    at(2026, 9, 1)
    big, small = make_site(), make_site()
    bearer = [PartyInput("运营方", "operator", 5000, bears_fees=True), PartyInput("物业", "property", 5000)]
    agree(big, fee_mode="party", parties=bearer)
    agree(small)
    user = make_resident(balance_fen=5000)
    at(2026, 10, 2)
    top_up(user, 2000, fee_fen=101)
    charge(user, ports(big)[1][0], local(2026, 10, 5, 9), minutes=170, watts=300)  # 3 h x 50 = 150
    charge(user, ports(big)[1][1], local(2026, 10, 6, 9), minutes=170, watts=300)  # 150
    charge(user, ports(small)[1][0], local(2026, 10, 7, 9), minutes=110, watts=300)  # 2 h x 50 = 100
    at(2026, 11, 1)
    fig_big, fig_small = compute_figures(*_ids(big), OCTOBER), compute_figures(*_ids(small), OCTOBER)
    # 101 fen over gross 300 : 100 = 75.75 : 25.25 -> 76 : 25
    assert (fig_big["fees"]["allocated_fen"], fig_small["fees"]["allocated_fen"]) == (76, 25)
    assert fig_big["fees"]["all_gross_fen"] == 400
    split = fig_big["segments"][0]
    assert split["distributable_fen"] == 300  # not reduced by the fees...
    assert [p["payout_fen"] for p in split["parties"]] == [150 - 76, 150]  # ...the bearer pays them
    assert fig_small["totals"]["payout_fen"] == 100 - 25


def test_the_terms_change_mid_month_and_each_part_is_split_under_its_own(
    app, make_site, make_resident, ports, charge, agree, at
):
    at(2026, 9, 1)
    site = make_site()
    old = agree(site, date(2026, 1, 1))
    new = agree(site, date(2026, 10, 15), parties=[PartyInput("运营方", "operator", 10_000)])
    user = make_resident(balance_fen=5000)
    charge(user, ports(site)[1][0], local(2026, 10, 14, 22), minutes=100)  # ends 23:40 on the 14th: old terms
    charge(user, ports(site)[1][0], local(2026, 10, 20, 9), minutes=100)
    at(2026, 11, 1)
    segments = compute_figures(*_ids(site), OCTOBER)["segments"]
    assert [(s["agreement_id"], s["from"], s["to"], s["gross_fen"]) for s in segments] == [
        (old.id, "2026-10-01", "2026-10-14", 50),
        (new.id, "2026-10-15", "2026-10-31", 50),
    ]
    assert [p["payout_fen"] for p in segments[0]["parties"]] == [30, 15, 5]
    assert [p["payout_fen"] for p in segments[1]["parties"]] == [50]


def test_revenue_without_an_agreement_is_shown_but_cannot_be_reviewed(
    app, make_site, make_resident, ports, charge, agree, at
):
    at(2026, 9, 1)
    site = make_site(sheds=(2, 2))
    agree(site, date(2026, 10, 10))
    user = make_resident(balance_fen=5000)
    charge(user, ports(site)[2][0], local(2026, 10, 3, 9), minutes=50)
    at(2026, 11, 1)
    figures = compute_figures(*_ids(site), OCTOBER)
    assert figures["unassigned"]["gross_fen"] == 25 and figures["unassigned"]["sheds"] == ["2号车棚"]
    with pytest.raises(SettlementRefused) as refused:
        statements.review(*_ids(site), OCTOBER, None)
    assert "No agreement covers 2号车棚 from 2026-10-03 to 2026-10-03" in str(refused.value.message)
    assert db.session.query(Statement).count() == 0


def test_a_period_that_is_not_over_is_refused(app, make_site, agree, at):
    site = make_site()
    agree(site)
    at(2026, 11, 30, 23, 59)
    for attempt in (
        lambda: statements.view_statement(*_ids(site), NOVEMBER),
        lambda: statements.review(*_ids(site), NOVEMBER, None),
    ):
        with pytest.raises(SettlementRefused) as refused:
            attempt()
        assert "2026-11 is not finished yet" in str(refused.value.message)
        assert "2026-12-01" in str(refused.value.message)
    at(2026, 12, 1, 0, 1)
    assert statements.view_statement(*_ids(site), NOVEMBER).status == "draft"


def _october_history(site, user, ports, charge):
    port = ports(site)[1]
    return [
        charge(user, port[0], local(2026, 10, 3, 9), minutes=100),
        charge(user, port[1], local(2026, 10, 20, 19), minutes=250, watts=350),
    ]


def test_issue_locks_numbers_and_a_second_click_changes_nothing(
    app, make_site, make_resident, ports, charge, agree, at
):
    at(2026, 9, 1)
    site = make_site()
    agree(site)
    _october_history(site, make_resident(balance_fen=5000), ports, charge)
    at(2026, 11, 2)
    draft = statements.view_statement(*_ids(site), OCTOBER)
    assert draft.status == "draft" and draft.statement is None
    with pytest.raises(SettlementRefused, match="Review the statement before issuing"):
        statements.issue(
            Statement(
                operator_id=1, site_id=site.id, period_start=OCTOBER.start, period_end=OCTOBER.end, status="draft"
            ),
            None,
        )
    reviewed = statements.review(*_ids(site), OCTOBER, None)
    first = statements.issue(reviewed, None)
    db.session.commit()
    at(2026, 11, 2, 12, 1)
    second = statements.issue(reviewed, None)
    assert first.changed and not second.changed
    assert second.statement.number == "ST-1-1-0001"
    assert second.statement.issued_at == local(2026, 11, 2)  # the first issue's time, untouched
    assert statements.view_statement(*_ids(site), OCTOBER).figures == draft.figures | {
        "computed_at": reviewed.figures["computed_at"]
    }
    with pytest.raises(SettlementRefused, match="is issued and cannot change"):
        statements.review(*_ids(site), OCTOBER, None)
    with pytest.raises(SettlementRefused, match="is issued and cannot change"):
        statements.reopen(reviewed)


def test_statements_are_issued_in_order_and_numbered_in_sequence(
    app, make_site, make_resident, ports, charge, agree, at
):
    at(2026, 9, 1)
    site = make_site()
    agree(site)
    _october_history(site, make_resident(balance_fen=5000), ports, charge)
    at(2027, 1, 5)
    december = Period.month("2026-12")
    statements.issue(statements.review(*_ids(site), OCTOBER, None), None)
    db.session.commit()
    with pytest.raises(SettlementRefused) as refused:
        statements.issue(statements.review(*_ids(site), december, None), None)
    assert "must start on 2026-11-01" in str(refused.value.message)
    db.session.commit()  # December's review stands; only its issue was refused
    november = statements.issue(statements.review(*_ids(site), NOVEMBER, None), None).statement
    db.session.commit()
    assert november.number == "ST-1-1-0002"
    later = statements.issue(statements.find_statement(*_ids(site), december), None).statement
    db.session.commit()
    assert later.number == "ST-1-1-0003"


def test_a_lost_race_undoes_only_the_services_own_writes(
    app, make_site, make_resident, ports, charge, agree, at, monkeypatch
):
    """A review or issue that clashes with another request's refuses and undoes its savepoint only:
    the caller's transaction (here November's review and a resident's new name) goes on."""
    at(2026, 9, 1)
    site = make_site()
    agree(site)
    resident = make_resident(balance_fen=5000)
    _october_history(site, resident, ports, charge)
    at(2026, 12, 2)
    statements.issue(statements.review(*_ids(site), OCTOBER, None), None)
    db.session.commit()
    november = statements.review(*_ids(site), NOVEMBER, None)
    resident.display_name = "王女士"
    with monkeypatch.context() as patched:
        patched.setattr(statements, "find_statement", lambda *args: None)  # stored by someone else meanwhile
        with pytest.raises(SettlementRefused, match="Someone else is reviewing this statement"):
            statements.review(*_ids(site), NOVEMBER, None)
    with monkeypatch.context() as patched:
        patched.setattr(statements, "format_number", lambda *args: "ST-1-1-0001")  # taken meanwhile
        with pytest.raises(SettlementRefused, match="Another statement was issued at the same moment"):
            statements.issue(november, None)
    db.session.commit()
    assert [(s.period_start, s.status) for s in statements.statements_of(*_ids(site))] == [
        (NOVEMBER.start, "reviewed"),
        (OCTOBER.start, "issued"),
    ]
    assert db.session.get(User, resident.id).display_name == "王女士"
    assert statements.issue(november, None).statement.number == "ST-1-1-0002"
    db.session.commit()


def test_books_that_changed_after_the_review_must_be_reviewed_again(
    app, make_site, make_resident, ports, charge, agree, at, refund
):
    at(2026, 9, 1)
    site = make_site()
    agree(site)
    sessions = _october_history(site, make_resident(balance_fen=5000), ports, charge)
    at(2026, 11, 2)
    reviewed = statements.review(*_ids(site), OCTOBER, None)
    db.session.commit()
    at(2026, 10, 31, 22)  # a booking dated inside the reviewed period (e.g. a late correction)
    refund(sessions[0], 10)
    at(2026, 11, 3)
    view = statements.view_statement(*_ids(site), OCTOBER)
    assert not view.still_current and view.figures["totals"]["adjustments_fen"] == -10
    with pytest.raises(SettlementRefused, match="changed since this statement was reviewed"):
        statements.issue(reviewed, None)
    assert db.session.get(Statement, reviewed.id).status == "reviewed"
    statements.review(*_ids(site), OCTOBER, None)
    assert statements.issue(reviewed, None).statement.figures["totals"]["adjustments_fen"] == -10
    db.session.commit()


def test_a_refund_after_issue_goes_into_the_next_statement_and_the_issued_one_never_changes(
    app, make_site, make_resident, ports, charge, agree, at, refund
):
    at(2026, 9, 1)
    site = make_site()
    agree(site)
    user = make_resident(balance_fen=5000)
    sessions = _october_history(site, user, ports, charge)
    at(2026, 10, 25)
    refund(sessions[0], 20, "relay stuck")  # before the issue: part of October
    at(2026, 11, 2)
    issued = statements.issue(statements.review(*_ids(site), OCTOBER, None), None).statement
    db.session.commit()
    locked = dict(issued.figures)
    assert locked["totals"]["adjustments_fen"] == -20
    at(2026, 11, 9)
    refund(sessions[1], 150, "charged after the bike was full")
    at(2026, 12, 1)

    october = statements.view_statement(*_ids(site), OCTOBER)
    assert october.figures == locked and october.number == issued.number
    november = statements.view_statement(*_ids(site), NOVEMBER)
    (line,) = november.figures["adjustments"]
    assert (line["ref"], line["kind"], line["amount_fen"]) == (
        f"session_refund:{sessions[1].id}",
        "session_refund",
        -150,
    )
    assert (line["session_id"], line["session_date"], line["statement_number"]) == (
        sessions[1].id,
        "2026-10-20",
        issued.number,
    )
    assert november.figures["totals"]["net_fen"] == -150
    assert [p["payout_fen"] for p in november.figures["parties"]] == [-90, -45, -15]


def test_residents_money_is_a_liability_not_revenue(app, make_site, make_resident, ports, charge, agree, at, top_up):
    at(2026, 9, 1)
    site = make_site()
    agree(site)
    user = make_resident()
    at(2026, 10, 2)
    top_up(user, 2000)
    charge(user, ports(site)[1][0], local(2026, 10, 5, 9), minutes=100)  # costs 50
    at(2026, 10, 31, 23)
    charging.start_session(user.id, ports(site)[1][1])  # holds 300 over the month end
    at(2026, 11, 3)
    top_up(user, 1000)  # after the period: not in October's figures
    figures = compute_figures(*_ids(site), OCTOBER)
    assert figures["residents"] == {
        "wallets_fen": 2000 - 50 - 300,
        "holds_fen": 300,
        "cashouts_fen": 0,
        "topups_fen": 2000,
        "passes_unearned_fen": 0,
    }
    assert figures["totals"]["gross_fen"] == 50
