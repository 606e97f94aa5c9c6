"""The state a person sees for a port: its hardware state, its live session and the offline debounce."""

from __future__ import annotations

from datetime import datetime

from chargeshed.charging.sessions import port_offline
from chargeshed.ports.driver import FAULTED, FINISHING, OFFLINE_STATE, SUSPENDED_EV, UNAVAILABLE
from chargeshed.sites.models import PORT_MAINTENANCE, PORT_RETIRED, Port


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
    return display_state(port, live_session is not None, port_offline(port, now))
