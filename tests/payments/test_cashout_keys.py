"""A cash-out form key is its user's own: another user sending the same key gets their own cash-out."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.payments.models import CashOut


def test_the_same_request_key_from_two_users_makes_two_cash_outs(app, make_resident, stripe_topup, fake_stripe):
    first, second = make_resident(), make_resident()
    stripe_topup(first, 1000)
    stripe_topup(second, 1000)
    for user in (first, second):
        client = app.test_client()
        client.post("/login", data={"login": user.login, "password": "secret-pass"})
        response = client.post("/wallet/cashout", data={"amount": "5", "request_key": "same-key", "confirmed": "yes"})
        assert response.status_code == 302
        again = client.post("/wallet/cashout", data={"amount": "5", "request_key": "same-key", "confirmed": "yes"})
        assert again.status_code == 302 and again.headers["Location"] == response.headers["Location"]
    cashouts = db.session.execute(select(CashOut).order_by(CashOut.id)).scalars().all()
    assert [(c.user_id, c.amount_fen) for c in cashouts] == [(first.id, 500), (second.id, 500)]
