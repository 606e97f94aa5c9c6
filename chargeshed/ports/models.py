"""The hardware boundary's tables: the command outbox, the telemetry store (latest reading per port,
meter samples, device links), the charger and gateway registries, port events and alerts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

CMD_START = "start"
CMD_STOP = "stop"
CMD_SET_AVAILABLE = "set_available"

QUEUED = "queued"  # waiting (next_attempt_at says from when)
SENDING = "sending"  # claimed by a gateway, on its way to the device
DONE = "done"  # acknowledged by the device (or superseded before it went out: see error)
REJECTED = "rejected"  # the device refused it (error says why)
FAILED = "failed"  # never acknowledged; given up (error says why)
OPEN_STATES = (QUEUED, SENDING)


class PortCommand(db.Model):
    """A command for a port, written in the same transaction as the change that needs it.

    Sent by a gateway: claimed (status SENDING) in one short transaction, sent with no transaction
    open, then marked DONE, REJECTED, FAILED or back to QUEUED with a later next_attempt_at.
    """

    __table_args__ = (Index("ix_port_command_open", "status", "port_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("charge_session.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    argument: Mapped[str] = mapped_column(String(32), default="")
    # Start only: the device-side cap (seconds) after which the outlet switches off by itself.
    cap_seconds: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(12), default=QUEUED, index=True)
    error: Mapped[str] = mapped_column(String(255), default="")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    target: Mapped[str] = mapped_column(String(120), default="")  # the port's target when last claimed
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    done_at: Mapped[datetime | None]

    @property
    def session_ref(self) -> str:
        """Our reference for the session a start/stop belongs to, as devices see it (e.g. an idTag)."""
        return f"S{self.session_id}" if self.session_id else ""


class PortTelemetry(db.Model):
    """The latest reading of one port, as its device pushed it (written by gateways only).

    `energy_wh` is our own register: it only ever grows. Device counters that go backwards
    (a reboot) add what they counted since the reset, never a negative amount. A session's energy is
    the register now (or at the device's stop) minus `session_start_wh`.
    """

    __tablename__ = "port_telemetry"

    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"), primary_key=True)
    target: Mapped[str] = mapped_column(String(120), default="sim", index=True)
    scheme: Mapped[str] = mapped_column(String(12), default="sim")
    device: Mapped[str] = mapped_column(String(110), default="sim", index=True)
    state: Mapped[str | None] = mapped_column(String(16))  # OCPP 1.6 connector status
    watts: Mapped[int] = mapped_column(default=0)
    relay_on: Mapped[bool] = mapped_column(default=False)
    fault: Mapped[str | None] = mapped_column(String(80))
    temperature_c: Mapped[float | None]
    meter_wh: Mapped[int | None] = mapped_column(BigInteger)  # the device's own counter, last value
    energy_wh: Mapped[int] = mapped_column(BigInteger, default=0)  # monotonic register
    reading_at: Mapped[datetime | None]  # the device's timestamp of the reading stored here
    heard_at: Mapped[datetime | None]  # when the gateway last heard from the device (its clock)
    link_online: Mapped[bool] = mapped_column(default=False)
    link_changed_at: Mapped[datetime | None]
    # The device-side session: started by our start command (ref = PortCommand.session_ref).
    session_ref: Mapped[str | None] = mapped_column(String(32))
    session_started_at: Mapped[datetime | None]
    session_start_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    session_stopped_at: Mapped[datetime | None]
    session_stop_wh: Mapped[int | None] = mapped_column(BigInteger)
    session_stop_reason: Mapped[str | None] = mapped_column(String(24))


class MeterSample(db.Model):
    """A meter reading taken while a device-side session ran: what a session is billed from."""

    __table_args__ = (Index("ix_meter_sample_port_at", "port_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"))
    session_ref: Mapped[str] = mapped_column(String(32), default="")
    at: Mapped[datetime]  # device time
    energy_wh: Mapped[int] = mapped_column(BigInteger)  # the port's register (never decreases)
    meter_wh: Mapped[int | None] = mapped_column(BigInteger)  # the device counter as sent
    watts: Mapped[int] = mapped_column(default=0)


class DeviceLink(db.Model):
    """Link state of one device (a station, a relay box): online, last heard, which gateway holds it."""

    device: Mapped[str] = mapped_column(String(110), primary_key=True)
    online: Mapped[bool] = mapped_column(default=False)
    heard_at: Mapped[datetime | None]
    changed_at: Mapped[datetime | None]
    gateway_id: Mapped[str | None] = mapped_column(String(64), index=True)
    state: Mapped[str | None] = mapped_column(String(16))  # station-wide status (OCPP connector 0)


class Charger(db.Model):
    """A registered OCPP charge point and the hash of its AuthorizationKey (security profile 1/2)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_point_id: Mapped[str] = mapped_column(String(48), unique=True)
    connectors: Mapped[int] = mapped_column(default=1)
    key_hash: Mapped[str] = mapped_column(String(255))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operator.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    # When the station first refused a RemoteStartTransaction carrying a chargingProfile (and took it
    # without): it is started without a device-side cap since, until it boots again or takes one
    # when asked again a day later. None: it takes them, or was not asked since it booted.
    profiles_refused_at: Mapped[datetime | None]

    @property
    def device_cap(self) -> bool:
        """False when the station's charges run without a device-side cap (it refuses profiles)."""
        return self.profiles_refused_at is None

    @property
    def device(self) -> str:
        """The device key its link state is stored under."""
        return f"ocpp:{self.charge_point_id}"


class Gateway(db.Model):
    """A running gateway process and its heartbeat; devices it holds point at it (DeviceLink)."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(120), default="")
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)
    stopped_at: Mapped[datetime | None]


class PortEvent(db.Model):
    """Something a port did: fault, offline, back online, overload cut-off."""

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    kind: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str] = mapped_column(String(255), default="")


ALERT_OFFLINE = "offline"
ALERT_FAULT = "fault"


class Alert(db.Model):
    """A port problem that lasted past its debounce (offline, fault), until cleared and acknowledged."""

    __table_args__ = (Index("ix_alert_open", "cleared_at", "port_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(80), default="")
    # When the condition began (last heartbeat, first fault reading), was raised and ended.
    started_at: Mapped[datetime]
    raised_at: Mapped[datetime] = mapped_column(index=True)
    cleared_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    port: Mapped[Port] = relationship()  # noqa: F821
    acknowledged_by: Mapped[User | None] = relationship()  # noqa: F821

    @property
    def is_open(self) -> bool:
        """True until the condition has cleared."""
        return self.cleared_at is None
