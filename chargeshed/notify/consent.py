"""Residents choose their channels: nothing is sent on a channel without a recorded yes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.notify.base import CHANNELS
from chargeshed.notify.models import NotifyConsent


def set_consent(user_id: int, channel: str, address: str | None, now: datetime) -> NotifyConsent | None:
    """Record a yes (with the address) or, with address None, a no; the caller commits."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel}")
    row = db.session.execute(
        select(NotifyConsent).where(NotifyConsent.user_id == user_id, NotifyConsent.channel == channel)
    ).scalar_one_or_none()
    if address is None:
        if row is not None and row.revoked_at is None:
            row.revoked_at = now
        return row
    if row is None:
        row = NotifyConsent(user_id=user_id, channel=channel, address=address, granted_at=now)
        db.session.add(row)
    else:
        row.address, row.granted_at, row.revoked_at = address, now, None
    db.session.flush()
    return row


def active_channels(user_id: int) -> dict[str, str]:
    """channel -> address for the channels the resident said yes to."""
    return dict(
        db.session.execute(
            select(NotifyConsent.channel, NotifyConsent.address).where(
                NotifyConsent.user_id == user_id, NotifyConsent.revoked_at.is_(None)
            )
        ).all()
    )
