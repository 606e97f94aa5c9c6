"""Port lookup and the state a person sees for a port."""

from __future__ import annotations

from datetime import datetime

from flask import abort
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from chargeshed.extensions import db
from chargeshed.ports.driver import FAULTED, FINISHING, OFFLINE_STATE, SUSPENDED_EV, UNAVAILABLE
from chargeshed.sites.codes import normalise_code
from chargeshed.sites.models import PORT_MAINTENANCE, PORT_RETIRED, Port, Shed


def get_port_by_code_or_404(code: str) -> Port:
    """The port with this code (shed and tariff loaded), or a 404."""
    port = db.session.execute(
        select(Port).where(Port.code == normalise_code(code))
        .options(joinedload(Port.shed).joinedload(Shed.tariff), joinedload(Port.shed).joinedload(Shed.site))
    ).scalar_one_or_none()
    if port is None:
        abort(404)
    return port


def display_state(port: Port, has_live_session: bool, offline: bool) -> str:
    """free, charging, occupied, fault, offline, maintenance or retired."""
    if port.status == PORT_RETIRED:
        return "retired"
    if port.status == PORT_MAINTENANCE or port.ocpp_state == UNAVAILABLE:
        return "maintenance"
    if offline or port.ocpp_state == OFFLINE_STATE:
        return "offline"
    if port.fault or port.ocpp_state == FAULTED:
        return "fault"
    if has_live_session:
        return "charging"
    if port.ocpp_state in (FINISHING, SUSPENDED_EV):
        return "occupied"
    return "free"


def port_state_now(port: Port, live_session, now: datetime) -> str:
    """display_state with the offline debounce applied."""
    from chargeshed.charging.sessions import port_offline

    return display_state(port, live_session is not None, port_offline(port, now))
