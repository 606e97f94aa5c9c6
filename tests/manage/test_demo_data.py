"""The demo compound reads like real use: a day's charges are listed in the order they happened."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.charging.models import ChargeSession
from chargeshed.demo import load_demo
from chargeshed.extensions import db


def test_demo_history_is_booked_in_time_order(app):
    result = load_demo(history_days=3, sessions_per_day=12)
    assert result["created"] and result["sessions"] > 10
    starts = db.session.execute(select(ChargeSession.created_at).order_by(ChargeSession.id)).scalars().all()
    assert starts == sorted(starts)
