"""Access to payment records: a resident's own top-up or cash-out, else NotFound."""

from __future__ import annotations

from chargeshed.accounts.models import User
from chargeshed.errors import NotFound
from chargeshed.extensions import db
from chargeshed.payments.models import CashOut, TopUp


def get_own_topup_or_404(user: User, topup_id: int) -> TopUp:
    """A top-up of this resident; anybody else's is NotFound."""
    topup = db.session.get(TopUp, topup_id)
    if topup is None or topup.user_id != user.id:
        raise NotFound(f"top-up {topup_id}")
    return topup


def get_own_cashout_or_404(user: User, cashout_id: int) -> CashOut:
    """A cash-out of this resident; anybody else's is NotFound."""
    cashout = db.session.get(CashOut, cashout_id)
    if cashout is None or cashout.user_id != user.id:
        raise NotFound(f"cash-out {cashout_id}")
    return cashout
