"""Late metering: a session ended "offline" is billed again when its device comes back with its meter.

A port whose device goes silent mid-charge has its session ended "offline" at what was measured
(the hold settled, the rest back to the wallet). The device's own cap (Shelly `toggle_after`,
Tasmota `PulseTime`, an OCPP charging profile) ends the charge on the device; when the device comes
back it reports what its meter counted meanwhile: an OCPP station delivers its queued
StopTransaction (meterStop, at its own time), a relay reports its counter and our queued stop is
acknowledged. Once the device says the session is over, the energy it metered for it is billed by
the session's tariff rules, once: one adjustment posting (`late:<session id>`) moves the difference
from the wallet to the shed's revenue, never more than the hold allowed in total and never more
than the wallet holds (a shortfall is written in the session's events, not owed).

Charged time of the offline window: an OCPP station's stop time; a relay, which keeps no session
clock, is credited with the time its extra energy takes at the power last measured before it went
silent. Both never past the device-side cap. The tier is the session's, raised when the window's
average power was higher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, cast, exists, func, literal, select, update

from chargeshed.charging import sessions as svc
from chargeshed.charging.models import ENDED, ChargeSession, SessionEvent
from chargeshed.charging.tariff import average_watts
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.ports import targets
from chargeshed.ports.models import CMD_START, MeterSample, PortCommand, PortTelemetry

log = logging.getLogger(__name__)

EVENT = "late_meter"  # the session event written once the late meter is settled (with or without money)
TXN_KIND = "late_meter"  # the ledger transaction kind of the adjustment (ref late:<session id>)
# A device that comes back later than this after the session ended is no longer billed for it.
LATE_DAYS = 7


def txn_ref(session_id: int) -> str:
    """The ledger reference of a session's late-meter adjustment."""
    return f"late:{session_id}"


def settle_returns(now: datetime) -> int:
    """Bill the sessions ended "offline" whose device came back and said the session is over.

    Each in its own savepoint; flushes, never commits (the supervisor's tick does). Returns how
    many sessions were settled (an adjustment of 0 fen included: they are never looked at again).
    """
    settled = 0
    for session, stored in _candidates(now):
        if not _device_done(session, stored):
            continue
        plan = _plan(session, stored)
        try:
            with db.session.begin_nested():
                _book(session, plan, now)
        except ledger.LedgerError:  # the wallet moved meanwhile: tried again next tick
            log.warning(
                "late meter of session %s not settled; retried",
                session.id,
                exc_info=True,
                extra={"event": "session.late_meter_error", "session_id": session.id},
            )
            continue
        settled += 1
    db.session.flush()
    return settled


def _candidates(now: datetime) -> list[tuple[ChargeSession, PortTelemetry]]:
    """Sessions ended offline lately, not yet late-settled, whose port's device still holds their ref."""
    ref = literal("S").concat(cast(ChargeSession.id, String))
    return db.session.execute(
        select(ChargeSession, PortTelemetry)
        .join(PortTelemetry, PortTelemetry.port_id == ChargeSession.port_id)
        .where(
            ChargeSession.state == ENDED,
            ChargeSession.end_reason == svc.OFFLINE,
            ChargeSession.ended_at >= now - timedelta(days=LATE_DAYS),
            PortTelemetry.session_ref == ref,
            ~exists().where(SessionEvent.session_id == ChargeSession.id, SessionEvent.kind == EVENT),
        )
        .order_by(ChargeSession.id)
    ).all()


def _device_done(session: ChargeSession, stored: PortTelemetry) -> bool:
    """The device is back and its session is over: stopped (OCPP StopTransaction, our stop
    acknowledged), or, for a relay, reported open since it came back."""
    if not stored.link_online or stored.heard_at is None or stored.heard_at <= session.ended_at:
        return False
    if stored.session_stopped_at is not None:
        return True
    return (
        stored.scheme != targets.OCPP
        and not stored.relay_on
        and stored.reading_at is not None
        and stored.reading_at > session.ended_at
    )


def _cap_seconds(session: ChargeSession) -> int:
    """The device-side cap the start carried (the tariff's longest charge when none was recorded)."""
    cap = db.session.execute(
        select(PortCommand.cap_seconds).where(PortCommand.session_id == session.id, PortCommand.kind == CMD_START)
    ).scalar()
    return int(cap or session.terms.max_minutes * 60)


def _last_measured(session: ChargeSession, stored: PortTelemetry) -> datetime:
    """When the energy billed at the offline end was last measured (the offline window starts there)."""
    at = db.session.execute(
        select(func.max(MeterSample.at)).where(
            MeterSample.port_id == session.port_id,
            MeterSample.session_ref == stored.session_ref,
            MeterSample.at <= session.ended_at,
        )
    ).scalar()
    return at or session.ended_at


def _window(session: ChargeSession, stored: PortTelemetry, extra_wh: int, watts_before: int):
    """(start, end) of the offline window's charge (see the module docstring)."""
    start = _last_measured(session, stored)
    cap_end = session.confirmed_at + timedelta(seconds=_cap_seconds(session))
    if stored.scheme == targets.OCPP and stored.session_stopped_at is not None:
        end = stored.session_stopped_at
    else:
        end = start + timedelta(seconds=extra_wh * 3600 / max(watts_before, 1))
        known_off = stored.session_stopped_at or stored.reading_at
        if known_off is not None:
            end = min(end, known_off)
    return start, max(session.ended_at, min(end, cap_end))


@dataclass(frozen=True)
class _Plan:
    """What a late settlement books (worked out by reads only, before its savepoint)."""

    metered_wh: int
    extra_wh: int = 0
    tier_watts: int = 0
    due_fen: int = 0
    charged_fen: int = 0


def _plan(session: ChargeSession, stored: PortTelemetry) -> _Plan:
    end_wh = stored.session_stop_wh if stored.session_stopped_at is not None else stored.energy_wh
    metered = max(0, (end_wh or 0) - (stored.session_start_wh or 0))
    extra_wh = metered - session.energy_wh
    if extra_wh <= 0 or session.confirmed_at is None:
        return _Plan(session.energy_wh)
    terms = session.terms
    tier = svc.current_tier_watts(session, session.ended_at)
    start, end = _window(session, stored, extra_wh, max(session.watts, tier))
    window = (end - start).total_seconds()
    if window >= terms.average_minutes * 60:
        tier = max(tier, average_watts(extra_wh, window))
    seconds = max(0, int((end - session.confirmed_at).total_seconds()))
    due = max(0, terms.cost(seconds, tier, metered) - session.cost_fen)
    charged = min(due, max(0, ledger.wallet_balance(session.user_id)))
    return _Plan(metered, extra_wh, tier, due, charged)


def _book(session: ChargeSession, plan: _Plan, now: datetime) -> None:
    """Write the plan (its first statement a write: SQLite takes the write lock before any read)."""
    if plan.extra_wh <= 0:
        db.session.add(SessionEvent(session_id=session.id, kind=EVENT, at=now, detail="device back: nothing more"))
        return
    db.session.execute(
        update(ChargeSession)
        .where(ChargeSession.id == session.id)
        .values(
            energy_wh=plan.metered_wh,
            tier_watts=plan.tier_watts,
            cost_fen=ChargeSession.cost_fen + plan.charged_fen,
        )
        .execution_options(synchronize_session=False)
    )
    if plan.charged_fen:
        ledger.post(
            txn_ref(session.id),
            TXN_KIND,
            [
                ledger.Leg(ledger.wallet_account(session.user_id), -plan.charged_fen),
                ledger.Leg(ledger.revenue_account(session.shed_id), plan.charged_fen),
            ],
            memo=f"session {session.id}: {plan.extra_wh} Wh metered while the port was offline",
            at=now,
        )
    detail = f"+{plan.extra_wh} Wh metered offline, +{plan.charged_fen} fen"
    if plan.charged_fen < plan.due_fen:
        detail += f" ({plan.due_fen - plan.charged_fen} fen not covered by the wallet)"
    db.session.add(SessionEvent(session_id=session.id, kind=EVENT, at=now, detail=detail))
    log.info(
        "late meter settled",
        extra={
            "event": "session.late_meter",
            "session_id": session.id,
            "extra_wh": plan.extra_wh,
            "charged_fen": plan.charged_fen,
            "shortfall_fen": plan.due_fen - plan.charged_fen,
            "ledger_ref": txn_ref(session.id),
        },
    )
