"""Tariff, ChargeSession and SessionEvent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.charging.tariff import Tariff as TariffRules
from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

PENDING = "pending"
CHARGING = "charging"
ENDED = "ended"
FAILED = "failed"
LIVE_STATES = (PENDING, CHARGING)


class Tariff(db.Model):
    """A shed's price list; sessions keep a snapshot of the rules they started under."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    rules: Mapped[dict] = mapped_column(JSON)

    @property
    def terms(self) -> TariffRules:
        """The pricing rules as a pure value object."""
        return TariffRules.from_dict(self.rules)


class ChargeSession(db.Model):
    """One charge on one port for one resident, from hold to settlement."""

    __table_args__ = (
        Index(
            "uq_charge_session_live_port",
            "port_id",
            unique=True,
            sqlite_where=text("state IN ('pending', 'charging')"),
            postgresql_where=text("state IN ('pending', 'charging')"),
        ),
        # The few sessions ended "offline", billed again when their device comes back (late_meter).
        Index(
            "ix_charge_session_offline_end",
            "ended_at",
            sqlite_where=text("end_reason = 'offline'"),
            postgresql_where=text("end_reason = 'offline'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"), index=True)
    shed_id: Mapped[int] = mapped_column(ForeignKey("shed.id"), index=True)
    rules: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(12), default=PENDING, index=True)
    end_reason: Mapped[str | None] = mapped_column(String(20))
    hold_fen: Mapped[int]
    cost_fen: Mapped[int] = mapped_column(default=0)
    energy_wh: Mapped[int] = mapped_column(default=0)
    watts: Mapped[int] = mapped_column(default=0)
    # Tier power: highest completed 5-minute average (W), and the open bucket.
    tier_watts: Mapped[int] = mapped_column(default=0)
    bucket_started_at: Mapped[datetime | None]
    bucket_start_wh: Mapped[int] = mapped_column(default=0)
    low_power_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    confirmed_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None] = mapped_column(index=True)

    port: Mapped[Port] = relationship()  # noqa: F821
    user: Mapped[User] = relationship()  # noqa: F821
    events: Mapped[list[SessionEvent]] = relationship(order_by="SessionEvent.id")

    @property
    def terms(self) -> TariffRules:
        """The pricing rules this session started under."""
        return TariffRules.from_dict(self.rules)

    @property
    def is_live(self) -> bool:
        """True while pending or charging."""
        return self.state in LIVE_STATES

    def charged_seconds(self, now: datetime) -> int:
        """Seconds from confirmed start to end (or now); 0 before confirmation."""
        if self.confirmed_at is None:
            return 0
        end = self.ended_at or now
        return max(0, int((end - self.confirmed_at).total_seconds()))


class SessionEvent(db.Model):
    """An audit row per session transition or notable reading."""

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("charge_session.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=clock_now)
    kind: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str] = mapped_column(String(255), default="")
