"""Access helpers: return the object the user may see, or abort."""

from __future__ import annotations

from flask import abort

from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.payments.models import TopUp


def get_own_session_or_404(user, session_id: int) -> ChargeSession:
    """A charge session of this resident; anybody else's is a 404."""
    session = db.session.get(ChargeSession, session_id)
    if session is None or session.user_id != user.id:
        abort(404)
    return session


def get_own_topup_or_404(user, topup_id: int) -> TopUp:
    """A top-up of this resident; anybody else's is a 404."""
    topup = db.session.get(TopUp, topup_id)
    if topup is None or topup.user_id != user.id:
        abort(404)
    return topup
