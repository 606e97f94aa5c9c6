"""Site, Building, Operator, Shed and Port."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

PORT_ACTIVE = "active"
PORT_MAINTENANCE = "maintenance"
PORT_RETIRED = "retired"


class Site(db.Model):
    """A housing compound."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock_now)

    buildings: Mapped[list[Building]] = relationship(back_populates="site", order_by="Building.number")
    sheds: Mapped[list[Shed]] = relationship(back_populates="site", order_by="Shed.id")


class Building(db.Model):
    """A numbered residential building (e.g. 4栋)."""

    __table_args__ = (UniqueConstraint("site_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    number: Mapped[int]
    units: Mapped[int] = mapped_column(default=2)
    floors: Mapped[int] = mapped_column(default=18)

    site: Mapped[Site] = relationship(back_populates="buildings")


class Operator(db.Model):
    """The third-party company that builds and runs sheds."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=clock_now)


class Shed(db.Model):
    """A charging shed with shared ports, run by one operator under one tariff."""

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariff.id"))
    name: Mapped[str] = mapped_column(String(80))
    location: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock_now)

    site: Mapped[Site] = relationship(back_populates="sheds")
    operator: Mapped[Operator] = relationship()
    tariff: Mapped[Tariff] = relationship()  # noqa: F821
    ports: Mapped[list[Port]] = relationship(back_populates="shed", order_by="Port.number")


class Port(db.Model):
    """One charging socket with its own relay, QR code and live reading."""

    __table_args__ = (UniqueConstraint("shed_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shed_id: Mapped[int] = mapped_column(ForeignKey("shed.id"), index=True)
    number: Mapped[int]
    code: Mapped[str] = mapped_column(String(16), unique=True)
    label: Mapped[str] = mapped_column(String(80), default="")
    status: Mapped[str] = mapped_column(String(16), default=PORT_ACTIVE)
    # Live reading, as last seen by the supervisor (OCPP 1.6 status names).
    ocpp_state: Mapped[str] = mapped_column(String(16), default="Available")
    watts: Mapped[int] = mapped_column(default=0)
    fault: Mapped[str | None] = mapped_column(String(80))
    last_seen_at: Mapped[datetime | None]
    state_changed_at: Mapped[datetime | None]
    # Which device and outlet this port is wired to (see chargeshed.ports.targets): sim, ocpp:…, shelly:…
    hardware_target: Mapped[str] = mapped_column(String(120), default="sim", server_default="sim")
    created_at: Mapped[datetime] = mapped_column(default=clock_now)

    shed: Mapped[Shed] = relationship(back_populates="ports")

    @property
    def in_service(self) -> bool:
        """True when residents may start a charge here (not in maintenance or retired)."""
        return self.status == PORT_ACTIVE


class OccupancyVersion(db.Model):
    """What a site's occupancy grid shows, reduced to a fingerprint; kept by the supervisor tick.

    An unchanged poll of the grid reads this one row (chargeshed/sites/occupancy.py) instead of
    aggregating over the site's ports.
    """

    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(40))
    # The earliest moment a port still heard from would count as offline without a new reading.
    offline_at: Mapped[datetime | None]
    # Something charges: the grid shows charging time, so the poll changes each minute.
    charging: Mapped[bool] = mapped_column(default=False)
    refreshed_at: Mapped[datetime]
