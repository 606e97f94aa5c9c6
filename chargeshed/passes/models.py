"""Pass plans (set by the operator per site), residents' passes, and which charges used a pass."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

ACTIVE = "active"
REFUNDED = "refunded"


class PassPlan(db.Model):
    """E.g. ¥15 for 30 days, at most 2 charges a day of up to 8 hours each, chargers up to 400 W."""

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    price_fen: Mapped[int]
    days: Mapped[int]
    charges_per_day: Mapped[int]
    hours_per_charge: Mapped[int]
    max_watts: Mapped[int]  # the highest power tier the pass covers (a tier's upper bound)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=clock_now)


class MonthlyPass(db.Model):
    """One resident's pass: valid from `starts_on` for `days` local days; price kept as bought."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("pass_plan.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    starts_on: Mapped[date]
    ends_on: Mapped[date]  # first local day no longer covered
    days: Mapped[int]
    price_fen: Mapped[int]
    status: Mapped[str] = mapped_column(String(10), default=ACTIVE, index=True)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    refunded_on: Mapped[date | None]  # the refund ends the pass: days from this one on are not covered
    reminded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock_now)

    plan: Mapped[PassPlan] = relationship()

    @property
    def last_day(self) -> date:
        """The last local day the pass covers."""
        return self.ends_on - timedelta(days=1)


class PassUse(db.Model):
    """A charge made on a pass (the daily limit counts these)."""

    session_id: Mapped[int] = mapped_column(ForeignKey("charge_session.id"), primary_key=True)
    pass_id: Mapped[int] = mapped_column(ForeignKey("monthly_pass.id"), index=True)
    used_on: Mapped[date] = mapped_column(index=True)
