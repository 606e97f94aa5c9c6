"""Registries: OCPP charge points (with their hashed AuthorizationKey) and running gateways.

A charge point's key is printed once when it is added; only its SHA-256 is stored (the key is 128
random bits, so a fast hash is as good as a slow one and keeps the websocket handshake cheap).
Gateways write a heartbeat; a gateway whose heartbeat stopped is reaped by the others: the devices
it held are marked offline until they reconnect to a live gateway, which then receives their
commands.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from chargeshed.extensions import db
from chargeshed.ports import telemetry
from chargeshed.ports.models import Charger, DeviceLink, Gateway

KEY_BYTES = 16  # 32 hex characters (OCPP allows 16-20 bytes, up to 40 hex characters)
_CP_ID = re.compile(r"^[A-Za-z0-9._:-]{1,48}$")
# A gateway silent for this many heartbeats is taken for dead.
DEAD_AFTER_HEARTBEATS = 3


class RegistryError(ValueError):
    """A registry request that cannot be done (the message says why; `code` names the case)."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.code = code


def _hash(key: str) -> str:
    return "sha256$" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewCharger:
    """A charger just registered, with its AuthorizationKey (shown once, never stored in clear)."""

    charger: Charger
    key: str


def add_charger(charge_point_id: str, connectors: int = 1, *, operator_id: int | None = None) -> NewCharger:
    """Register a charge point and make its AuthorizationKey. Caller commits."""
    charge_point_id = (charge_point_id or "").strip()
    if not _CP_ID.match(charge_point_id):
        raise RegistryError("charge point id: 1-48 letters, digits, . _ : -")
    if not 1 <= connectors <= 99:
        raise RegistryError("connectors: 1 to 99")
    if db.session.execute(select(Charger.id).where(Charger.charge_point_id == charge_point_id)).first():
        raise RegistryError(f"charge point {charge_point_id} is registered already", "exists")
    key = secrets.token_hex(KEY_BYTES)
    charger = Charger(
        charge_point_id=charge_point_id, connectors=connectors, key_hash=_hash(key), operator_id=operator_id
    )
    db.session.add(charger)
    db.session.flush()
    return NewCharger(charger, key)


def new_key(charger: Charger) -> str:
    """Replace a charger's AuthorizationKey; returns the new key (shown once). Caller commits."""
    key = secrets.token_hex(KEY_BYTES)
    charger.key_hash = _hash(key)
    return key


def check_key(charge_point_id: str, key: str) -> bool:
    """True when the charge point is registered and `key` is its AuthorizationKey (constant time)."""
    stored = db.session.execute(
        select(Charger.key_hash).where(Charger.charge_point_id == charge_point_id)
    ).scalar_one_or_none()
    if stored is None:
        hmac.compare_digest(_hash(key or ""), _hash(""))  # same work whether or not the id exists
        return False
    return hmac.compare_digest(stored, _hash(key or ""))


def charger_rows(operator_id: int | None = None) -> list[tuple[Charger, DeviceLink | None]]:
    """Chargers with their link state (online, last heard, gateway), by charge point id."""
    query = (
        select(Charger, DeviceLink)
        .outerjoin(DeviceLink, DeviceLink.device == "ocpp:" + Charger.charge_point_id)
        .order_by(Charger.charge_point_id)
    )
    if operator_id is not None:
        query = query.where(Charger.operator_id == operator_id)
    return [(charger, link) for charger, link in db.session.execute(query).all()]


def heartbeat(gateway_id: str, now: datetime, *, host: str = "") -> None:
    """Record that a gateway is alive (registers it on the first beat). Caller commits."""
    gateway = db.session.get(Gateway, gateway_id)
    if gateway is None:
        db.session.add(Gateway(id=gateway_id, host=host[:120], started_at=now, heartbeat_at=now))
    else:
        gateway.heartbeat_at, gateway.stopped_at = now, None
    db.session.flush()


def reap_dead_gateways(now: datetime, interval_seconds: float) -> list[str]:
    """Gateways silent for DEAD_AFTER_HEARTBEATS beats: stopped, their devices offline. Caller commits."""
    limit = now - timedelta(seconds=interval_seconds * DEAD_AFTER_HEARTBEATS)
    dead = list(
        db.session.execute(
            select(Gateway.id).where(Gateway.stopped_at.is_(None), Gateway.heartbeat_at < limit)
        ).scalars()
    )
    for gateway_id in dead:
        release(gateway_id, now)
    return dead


def release(gateway_id: str, now: datetime) -> None:
    """A gateway stops (or was found dead): its devices are offline until they reconnect. Caller commits."""
    db.session.execute(
        update(Gateway)
        .where(Gateway.id == gateway_id)
        .values(stopped_at=now)
        .execution_options(synchronize_session=False)
    )
    for device in db.session.execute(select(DeviceLink.device).where(DeviceLink.gateway_id == gateway_id)).scalars():
        telemetry.record_link(device, False, now, gateway_id=gateway_id)
