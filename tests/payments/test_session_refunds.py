"""Staff goodwill refunds of a charge: at most its cost, once, with a reason, only in one's own sheds.

A refund spends the shed's revenue, which is the operator's: only the platform admin and the staff of
the shed's operator may make one. The site manager sees the refunds of the site, read-only."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from chargeshed.accounts.services import create_user
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, find_txn, wallet_balance
from chargeshed.money.models import LedgerAccount
from chargeshed.payments.models import ExternalRefund, SessionRefund
from chargeshed.payments.refunds import SessionRefundRefused, refund_session
from chargeshed.sites.models import Shed


def revenue(shed_id: int) -> int:
    return db.session.execute(
        select(LedgerAccount.balance_fen).where(LedgerAccount.code == f"revenue:shed:{shed_id}")
    ).scalar_one()


@pytest.fixture
def setting(with_refunds_blueprint, make_site, ended_session):
    """Two compounds, each with its own operator; a finished ¥1.00 charge in the first; staff of both."""
    site = make_site()
    other_site = make_site()
    operator_id = db.session.execute(select(Shed.operator_id).where(Shed.site_id == site.id)).scalars().first()
    other_operator_id = (
        db.session.execute(select(Shed.operator_id).where(Shed.site_id == other_site.id)).scalars().first()
    )
    assert other_operator_id != operator_id
    session = ended_session()
    staff = {
        "admin": create_user("root1", "secret-pass", "admin"),
        "operator": create_user("op1", "secret-pass", "operator_staff", operator_id=operator_id),
        "other_operator": create_user("op2", "secret-pass", "operator_staff", operator_id=other_operator_id),
        "manager": create_user("mgr1", "secret-pass", "site_manager", site_id=site.id),
        "other_manager": create_user("mgr2", "secret-pass", "site_manager", site_id=other_site.id),
        "patrol": create_user("pat1", "secret-pass", "patrol", site_id=site.id),
    }
    return session, staff


def test_operator_refunds_part_of_a_charge_with_a_reason(setting, client, login):
    session, staff = setting
    login(staff["operator"])
    before = wallet_balance(session.user_id)
    page = client.get(f"/operator/refunds/session/{session.id}")
    assert page.status_code == 200 and "¥1.00" in page.get_data(as_text=True)
    done = client.post(
        f"/operator/refunds/session/{session.id}", data={"amount": "0.60", "reason": "Port cut out twice"}
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/operator/refunds/")
    assert wallet_balance(session.user_id) == before + 60 and revenue(session.shed_id) == 40
    txn = find_txn(f"session_refund:{session.id}")
    assert txn.kind == "session_refund"
    assert {(e.account.code, e.amount_fen) for e in txn.entries} == {
        (f"revenue:shed:{session.shed_id}", -60),
        (f"wallet:{session.user_id}", 60),
    }
    row = db.session.execute(select(SessionRefund)).scalar_one()
    assert (row.staff_id, row.amount_fen, row.reason) == (staff["operator"].id, 60, "Port cut out twice")
    listing = client.get("/operator/refunds/").get_data(as_text=True)
    assert "Port cut out twice" in listing and "¥0.60" in listing and "op1" in listing
    assert check_ledger() == []


@pytest.mark.parametrize(
    "data",
    [
        {"amount": "1.01", "reason": "too much"},
        {"amount": "0", "reason": "zero"},
        {"amount": "abc", "reason": "not a number"},
        {"amount": "0.50", "reason": ""},
    ],
)
def test_bad_refunds_are_refused_with_a_message_and_change_nothing(data, setting, client, login):
    session, staff = setting
    login(staff["operator"])
    before = wallet_balance(session.user_id)
    page = client.post(f"/operator/refunds/session/{session.id}", data=data)
    assert page.status_code == 200 and 'class="error"' in page.get_data(as_text=True)
    assert wallet_balance(session.user_id) == before and revenue(session.shed_id) == 100
    assert db.session.execute(select(func.count()).select_from(SessionRefund)).scalar_one() == 0


def test_a_charge_is_refunded_once(setting, client, login):
    session, staff = setting
    login(staff["operator"])
    client.post(f"/operator/refunds/session/{session.id}", data={"amount": "0.30", "reason": "first"})
    url = f"/operator/refunds/session/{session.id}"
    again = client.post(url, data={"amount": "0.30", "reason": "second"})
    assert again.status_code == 200 and 'data-testid="refunded"' in again.get_data(as_text=True)
    assert revenue(session.shed_id) == 70
    with pytest.raises(SessionRefundRefused) as refused:
        refund_session(staff["operator"].id, session, 10, "service call")
    assert refused.value.code == "already_refunded"


def test_the_platform_admin_may_refund(setting, client, login):
    session, staff = setting
    login(staff["admin"])
    page = client.get(f"/operator/refunds/session/{session.id}").get_data(as_text=True)
    assert 'class="refund-form"' in page and 'name="amount"' in page
    done = client.post(f"/operator/refunds/session/{session.id}", data={"amount": "0.20", "reason": "port fault"})
    assert done.status_code == 302 and revenue(session.shed_id) == 80
    assert db.session.execute(select(SessionRefund.staff_id)).scalar_one() == staff["admin"].id


def _nothing_booked(session) -> None:
    assert revenue(session.shed_id) == 100
    assert find_txn(f"session_refund:{session.id}") is None
    assert db.session.execute(select(func.count()).select_from(SessionRefund)).scalar_one() == 0
    assert check_ledger() == []


def test_the_site_manager_sees_the_charge_but_is_not_offered_a_refund_and_a_post_is_refused(setting, client, login):
    session, staff = setting
    url = f"/operator/refunds/session/{session.id}"
    login(staff["manager"])
    before = wallet_balance(session.user_id)
    page = client.get(url)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "¥1.00" in text
    assert 'class="refund-form"' not in text and 'name="amount"' not in text
    assert 'data-testid="refund-not-yours"' in text
    refused = client.post(url, data={"amount": "0.50", "reason": "manager goodwill"})
    assert refused.status_code == 403
    assert wallet_balance(session.user_id) == before
    _nothing_booked(session)


def test_the_site_manager_reads_the_refunds_of_the_site(setting, client, login):
    session, staff = setting
    login(staff["operator"])
    client.post(f"/operator/refunds/session/{session.id}", data={"amount": "0.40", "reason": "Port cut out"})
    login(staff["manager"])
    listing = client.get("/operator/refunds/").get_data(as_text=True)
    assert "Port cut out" in listing and "¥0.40" in listing
    page = client.get(f"/operator/refunds/session/{session.id}").get_data(as_text=True)
    assert 'data-testid="refunded"' in page and "Port cut out" in page


def test_another_operators_staff_can_neither_see_nor_refund_the_charge(setting, client, login):
    """Another operator's charge is another tenant's: not found (its existence is not confirmed)."""
    session, staff = setting
    url = f"/operator/refunds/session/{session.id}"
    login(staff["other_operator"])
    assert client.get(url).status_code == 404
    assert client.post(url, data={"amount": "0.50", "reason": "not our money"}).status_code == 404
    assert "¥1.00" not in client.get("/operator/refunds/").get_data(as_text=True)
    _nothing_booked(session)


def test_staff_of_another_operator_in_the_same_compound_cannot_refund(setting, client, login):
    """A compound may have sheds of two operators: each spends only its own sheds' revenue."""
    from chargeshed.sites.models import Operator

    session, staff = setting
    shed = db.session.get(Shed, session.shed_id)
    neighbour = Operator(name="another operator")
    db.session.add(neighbour)
    db.session.flush()
    db.session.add(Shed(site_id=shed.site_id, operator_id=neighbour.id, tariff_id=shed.tariff_id, name="shed 9"))
    db.session.commit()
    login(create_user("op9", "secret-pass", "operator_staff", operator_id=neighbour.id))
    url = f"/operator/refunds/session/{session.id}"
    assert client.get(url).status_code == 404
    assert client.post(url, data={"amount": "0.50", "reason": "their shed"}).status_code == 404
    _nothing_booked(session)


def test_other_tenants_get_404_and_other_roles_403(setting, client, login, make_resident):
    session, staff = setting
    url = f"/operator/refunds/session/{session.id}"
    assert client.get(url).status_code == 302  # to sign-in
    login(staff["other_manager"])
    assert client.get(url).status_code == 404
    assert client.post(url, data={"amount": "0.50", "reason": "not mine"}).status_code == 404
    assert "op1" not in client.get("/operator/refunds/").get_data(as_text=True)
    login(staff["patrol"])
    assert client.post(url, data={"amount": "0.50", "reason": "patrol"}).status_code == 403
    login(make_resident())
    assert client.get(url).status_code == 403
    assert client.get("/operator/refunds/session/999999").status_code == 403
    assert revenue(session.shed_id) == 100


def test_an_unknown_session_is_404_for_staff(setting, client, login):
    _, staff = setting
    login(staff["operator"])
    assert client.get("/operator/refunds/session/999999").status_code == 404


def test_a_charge_still_running_cannot_be_refunded(setting, make_resident):
    from chargeshed.charging.sessions import start_session
    from chargeshed.sites.models import Port

    _, staff = setting
    user = make_resident(balance_fen=1000)
    live = start_session(user.id, db.session.execute(select(Port).where(Port.code == "T11002")).scalar_one())
    with pytest.raises(SessionRefundRefused) as refused:
        refund_session(staff["operator"].id, live, 10, "early")
    assert refused.value.code == "nothing_to_refund"


def test_refunds_made_outside_chargeshed_are_listed_to_the_platform_admin_only(setting, client, login):
    # A wallet top-up belongs to no operator: its Stripe reference and amount are no operator's business.
    session, staff = setting
    db.session.add(
        ExternalRefund(
            provider="stripe", provider_ref="re_dashboard_1", amount_fen=500, shortfall_fen=200, status="shortfall"
        )
    )
    db.session.commit()
    for role in ("operator", "other_operator", "manager"):
        login(staff[role])
        assert "re_dashboard_1" not in client.get("/operator/refunds/").get_data(as_text=True), role
    login(staff["admin"])
    page = client.get("/operator/refunds/").get_data(as_text=True)
    assert "re_dashboard_1" in page and "¥2.00" in page
