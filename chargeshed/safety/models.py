"""Hazard cases with their step log and photos; incidents opened from port events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

# Hazard types (the public report channels' categories).
FLYING_WIRE = "flying_wire"
BIKE_INDOORS = "bike_indoors"
BATTERY_INDOORS = "battery_indoors"
BLOCKED_EXIT = "blocked_exit"
OTHER = "other"
HAZARD_TYPES = (FLYING_WIRE, BIKE_INDOORS, BATTERY_INDOORS, BLOCKED_EXIT, OTHER)

# Case states, in the order of the 2024 guide.
REPORTED = "reported"
VERIFIED = "verified"
NOTIFIED = "notified"
DEADLINE_SET = "deadline_set"
RECTIFIED = "rectified"
MOVED = "moved"
ESCALATED = "escalated"
CLOSED = "closed"
CASE_STATES = (REPORTED, VERIFIED, NOTIFIED, DEADLINE_SET, RECTIFIED, MOVED, ESCALATED, CLOSED)
OPEN_STATES = tuple(s for s in CASE_STATES if s != CLOSED)

# How a closed case ended.
OUTCOME_NO_HAZARD = "no_hazard"
OUTCOME_RECTIFIED = "rectified"
OUTCOME_MOVED = "moved"
OUTCOME_ESCALATED = "escalated"
OUTCOME_DUPLICATE = "duplicate"

# Where a case came from.
SOURCE_PUBLIC = "public"
SOURCE_PATROL = "patrol"

# Photo kinds.
PHOTO_REPORT = "report"
PHOTO_SITE = "site"
PHOTO_AFTER = "after"

# Incident kinds and states.
INCIDENT_OVERLOAD = "overload"
INCIDENT_STUCK_RELAY = "stuck_relay"
INCIDENT_PORT_FAULT = "port_fault"
INCIDENT_OVERHEAT = "overheat"
INCIDENT_KINDS = (INCIDENT_OVERLOAD, INCIDENT_OVERHEAT, INCIDENT_STUCK_RELAY, INCIDENT_PORT_FAULT)
INCIDENT_OPEN = "open"
INCIDENT_CLOSED = "closed"


class HazardCase(db.Model):
    """One reported hazard at one place, followed from report to close. Never deleted."""

    __tablename__ = "safety_case"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("building.id"), index=True)
    unit: Mapped[int | None]
    floor: Mapped[int | None]
    spot: Mapped[str] = mapped_column(String(120), default="")
    hazard_type: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(12), default=SOURCE_PUBLIC)
    # The reporter: optional contact and account; staff only, never on the tracking page.
    reporter_contact: Mapped[str] = mapped_column(String(60), default="")
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    reported_plate: Mapped[str] = mapped_column(String(20), default="")
    tracking_token: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=REPORTED, index=True)
    outcome: Mapped[str | None] = mapped_column(String(16))
    bike_id: Mapped[int | None] = mapped_column(ForeignKey("bike.id"), index=True)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("safety_case.id"))
    reminder_count: Mapped[int] = mapped_column(default=0)
    deadline_at: Mapped[datetime | None]
    escalated_to: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    verified_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=clock_now)
    closed_at: Mapped[datetime | None] = mapped_column(index=True)

    building: Mapped[Building] = relationship()  # noqa: F821
    bike: Mapped[Bike | None] = relationship()  # noqa: F821
    events: Mapped[list[CaseEvent]] = relationship(back_populates="case", order_by="CaseEvent.id")
    photos: Mapped[list[CasePhoto]] = relationship(back_populates="case", order_by="CasePhoto.id")

    @property
    def is_open(self) -> bool:
        """True until the case is closed."""
        return self.state != CLOSED

    def is_overdue(self, now: datetime) -> bool:
        """True when a rectification deadline has passed and the case still waits for it."""
        return self.state == DEADLINE_SET and self.deadline_at is not None and now > self.deadline_at


class CaseEvent(db.Model):
    """One step of a case: who did what, when, how (channel, authority) and why (note)."""

    __tablename__ = "safety_case_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("safety_case.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=clock_now)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    action: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(24))
    deadline_at: Mapped[datetime | None]
    first_charge_offered: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str] = mapped_column(Text, default="")

    case: Mapped[HazardCase] = relationship(back_populates="events")
    actor: Mapped[User | None] = relationship()  # noqa: F821


class CasePhoto(db.Model):
    """A re-encoded photo (no metadata) stored outside static/, with a thumbnail."""

    __tablename__ = "safety_photo"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("safety_case.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("safety_case_event.id"))
    kind: Mapped[str] = mapped_column(String(8), default=PHOTO_REPORT)
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    width: Mapped[int]
    height: Mapped[int]
    size_bytes: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=clock_now)

    case: Mapped[HazardCase] = relationship(back_populates="photos")


class Incident(db.Model):
    """A safety incident on a shed from its ports (overload, stuck relay, fault); one open per kind."""

    __tablename__ = "safety_incident"
    __table_args__ = (
        Index(
            "uq_safety_incident_open_shed_kind",
            "shed_id",
            "kind",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shed_id: Mapped[int] = mapped_column(ForeignKey("shed.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(8), default=INCIDENT_OPEN, index=True)
    occurrences: Mapped[int] = mapped_column(default=0)
    opened_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    resolution: Mapped[str] = mapped_column(Text, default="")

    shed: Mapped[Shed] = relationship()  # noqa: F821
    closed_by: Mapped[User | None] = relationship()  # noqa: F821
    occurrences_log: Mapped[list[IncidentOccurrence]] = relationship(
        back_populates="incident", order_by="IncidentOccurrence.at"
    )


class IncidentOccurrence(db.Model):
    """One port event or ended session behind an incident; `source_ref` makes the sync idempotent."""

    __tablename__ = "safety_incident_occurrence"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("safety_incident.id"), index=True)
    source_ref: Mapped[str] = mapped_column(String(40), unique=True)
    port_id: Mapped[int | None] = mapped_column(ForeignKey("port.id"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("charge_session.id"))
    at: Mapped[datetime]
    detail: Mapped[str] = mapped_column(String(255), default="")

    incident: Mapped[Incident] = relationship(back_populates="occurrences_log")
    port: Mapped[Port | None] = relationship()  # noqa: F821


class SyncMark(db.Model):
    """How far a background sync has read (name -> time), so each run reads only what is new."""

    __tablename__ = "safety_sync_mark"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime]
