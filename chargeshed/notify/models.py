"""Consent per channel, the notification outbox, and one-shot free-port watches."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

QUEUED = "queued"
SENT = "sent"
FAILED = "failed"


class NotifyConsent(db.Model):
    """A resident's yes to one channel, with the address to use (phone number or WeChat openid)."""

    __table_args__ = (UniqueConstraint("user_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    channel: Mapped[str] = mapped_column(String(12))
    address: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(default=clock_now)
    revoked_at: Mapped[datetime | None]


class Notification(db.Model):
    """One message to send on one channel: written in the business transaction, sent after it commits."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    channel: Mapped[str] = mapped_column(String(12))
    address: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(10), default=QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    last_error: Mapped[str] = mapped_column(String(255), default="")
    provider_ref: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    sent_at: Mapped[datetime | None]


class PortFreeWatch(db.Model):
    """ "Tell me when a port in this shed is free": fires once, or expires."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    shed_id: Mapped[int] = mapped_column(ForeignKey("shed.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    fired_at: Mapped[datetime | None]
