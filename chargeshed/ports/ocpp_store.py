"""The OCPP adapter's database work: synchronous functions the gateway runs in its database threads
(`Reporter.run_db`: one app context and one committed transaction per call).

Our transaction ids are OcppTransaction rows. An idTag is ours when it is the session reference
("S42") of a start command queued for that station's connector, and no stop was queued for that
session since (a start that timed out, or that the resident cancelled, is no longer wanted).
Device session events and readings are not written here: the adapter reports them through the
gateway's ordered queue, after what the station said before them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError

from chargeshed.extensions import db
from chargeshed.ports import registry, targets
from chargeshed.ports.models import CMD_START, CMD_STOP, Charger, PortCommand
from chargeshed.ports.ocpp import Started
from chargeshed.ports.ocpp_models import OcppTransaction
from chargeshed.sites.models import Port

log = logging.getLogger(__name__)

_SESSION_REF = re.compile(r"^S(\d{1,12})$")


def target_for(charge_point_id: str, connector: int) -> str:
    """The hardware target of a station's connector (what a port is bound to)."""
    return f"{targets.OCPP}:{charge_point_id}/{connector}"


def device_for(charge_point_id: str) -> str:
    """The device key of a station (its link state)."""
    return f"{targets.OCPP}:{charge_point_id}"


@dataclass(frozen=True)
class Registered:
    """What the gateway keeps about a station that passed the handshake."""

    connectors: int
    takes_profiles: bool  # False: it refused a chargingProfile on RemoteStartTransaction before


def check_key(charge_point_id: str, key: str) -> Registered | None:
    """The station's connectors and whether it takes charging profiles when `key` is its
    AuthorizationKey, else None."""
    if not registry.check_key(charge_point_id, key):
        return None
    connectors, refused_at = db.session.execute(
        select(Charger.connectors, Charger.profiles_refused_at).where(Charger.charge_point_id == charge_point_id)
    ).one()
    return Registered(connectors, refused_at is None)


def profiles_refused(charge_point_id: str, at: datetime) -> None:
    """Remember that the station refuses charging profiles (its starts go without a device-side cap)."""
    db.session.execute(
        update(Charger)
        .where(Charger.charge_point_id == charge_point_id, Charger.profiles_refused_at.is_(None))
        .values(profiles_refused_at=at)
        .execution_options(synchronize_session=False)
    )


def profiles_taken(charge_point_id: str) -> None:
    """Forget that the station refused charging profiles (it booted, perhaps on new firmware, or
    accepted one again): its starts carry the device-side cap."""
    db.session.execute(
        update(Charger)
        .where(Charger.charge_point_id == charge_point_id, Charger.profiles_refused_at.is_not(None))
        .values(profiles_refused_at=None)
        .execution_options(synchronize_session=False)
    )


def wanted(charge_point_id: str, connector: int | None, id_tag: str) -> bool:
    """The idTag is the reference of a start queued for this station (connector) and not stopped since."""
    match = _SESSION_REF.match(id_tag or "")
    if match is None:
        return False
    session_id = int(match.group(1))
    port = (
        Port.hardware_target == target_for(charge_point_id, connector)
        if connector
        else Port.hardware_target.like(f"{device_for(charge_point_id)}/%")
    )
    started = exists().where(
        PortCommand.session_id == session_id, PortCommand.kind == CMD_START, PortCommand.port_id == Port.id, port
    )
    stopped = exists().where(PortCommand.session_id == session_id, PortCommand.kind == CMD_STOP)
    return bool(db.session.execute(select(started & ~stopped)).scalar())


def _find(charge_point_id: str, connector: int, id_tag: str, at: datetime) -> OcppTransaction | None:
    return db.session.execute(
        select(OcppTransaction).where(
            OcppTransaction.charge_point_id == charge_point_id,
            OcppTransaction.connector == connector,
            OcppTransaction.id_tag == id_tag,
            OcppTransaction.started_at == at,
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class Recorded:
    """A StartTransaction as stored: our id, whether the idTag was ours, and whether it is new."""

    started: Started
    new: bool


def start_transaction(charge_point_id: str, connector: int, id_tag: str, meter_start_wh: int, at: datetime) -> Recorded:
    """Our transaction id for a StartTransaction (the same one again gets the same id).

    An idTag that is not ours gets an id too (the spec wants one) but is Invalid: nothing is billed
    from it. The caller reports the device session to the telemetry store when it is ours and new.
    """
    existing = _find(charge_point_id, connector, id_tag, at)
    if existing is not None:
        return Recorded(Started(existing.id, existing.session_ref is not None), new=False)
    accepted = wanted(charge_point_id, connector, id_tag)
    transaction = OcppTransaction(
        charge_point_id=charge_point_id,
        connector=connector,
        id_tag=id_tag,
        session_ref=id_tag if accepted else None,
        meter_start_wh=meter_start_wh,
        started_at=at,
    )
    try:
        with db.session.begin_nested():
            db.session.add(transaction)
    except IntegrityError:  # the same start, stored a moment ago by another connection
        existing = _find(charge_point_id, connector, id_tag, at)
        return Recorded(Started(existing.id, existing.session_ref is not None), new=False)
    if not accepted:
        log.warning(
            "station %s started connector %s for idTag %s we did not issue: answered Invalid",
            charge_point_id,
            connector,
            id_tag,
            extra={"event": "ocpp.unknown_id_tag", "charge_point": charge_point_id},
        )
    return Recorded(Started(transaction.id, accepted), new=True)


def transaction_connector(charge_point_id: str, transaction_id: int) -> int | None:
    """The connector of a transaction we issued to this station, or None."""
    return db.session.execute(
        select(OcppTransaction.connector).where(
            OcppTransaction.id == transaction_id, OcppTransaction.charge_point_id == charge_point_id
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class Stopped:
    """A StopTransaction as stored: the connector and our session reference (None: not ours), and
    whether this is the first time the stop arrived."""

    connector: int
    session_ref: str | None
    new: bool


def stop_transaction(
    charge_point_id: str, transaction_id: int, meter_stop_wh: int | None, at: datetime, reason: str
) -> Stopped | None:
    """Mark our transaction stopped at the station's time and meter; None for an id never issued."""
    transaction = db.session.execute(
        select(OcppTransaction).where(
            OcppTransaction.id == transaction_id, OcppTransaction.charge_point_id == charge_point_id
        )
    ).scalar_one_or_none()
    if transaction is None:
        return None
    if transaction.stopped_at is not None:
        return Stopped(transaction.connector, transaction.session_ref, new=False)  # the same stop again
    transaction.stopped_at, transaction.stop_reason, transaction.meter_stop_wh = at, reason, meter_stop_wh
    return Stopped(transaction.connector, transaction.session_ref, new=True)


def open_transaction(charge_point_id: str, connector: int, session_ref: str = "") -> int | None:
    """The running transaction of a session (or, without a session, of the connector), if any."""
    query = select(OcppTransaction.id).where(
        OcppTransaction.charge_point_id == charge_point_id,
        OcppTransaction.connector == connector,
        OcppTransaction.stopped_at.is_(None),
    )
    if session_ref:
        query = query.where(OcppTransaction.session_ref == session_ref)
    else:
        query = query.where(OcppTransaction.session_ref.is_not(None))
    return db.session.execute(query.order_by(OcppTransaction.id.desc()).limit(1)).scalar_one_or_none()


def session_started(charge_point_id: str, connector: int, session_ref: str) -> bool:
    """The station already started this session (a repeated start command is then a no-op)."""
    return db.session.execute(
        select(
            exists().where(
                OcppTransaction.charge_point_id == charge_point_id,
                OcppTransaction.connector == connector,
                OcppTransaction.session_ref == session_ref,
            )
        )
    ).scalar()
