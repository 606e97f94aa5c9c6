"""The PortDriver protocol: how the supervisor talks to charging hardware."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# OCPP 1.6 connector statuses used here.
AVAILABLE = "Available"
PREPARING = "Preparing"
CHARGING = "Charging"
SUSPENDED_EV = "SuspendedEV"
FINISHING = "Finishing"
FAULTED = "Faulted"
UNAVAILABLE = "Unavailable"
# Not an OCPP status: our debounced "not heard from" state.
OFFLINE_STATE = "Offline"

# Fault codes every protocol maps its own words to (other codes are kept as the device sent them).
FAULT_OVERLOAD = "overload"  # the device's power protection opened the relay (Shelly overpower, MaxPower)
FAULT_OVERHEAT = "overheat"  # the device's temperature protection opened the relay (Shelly overtemp)


class PortRejected(Exception):
    """The port refused a command (faulted, unavailable, unknown)."""


class PortOffline(Exception):
    """The port (or its charging unit) did not answer."""


@dataclass(frozen=True)
class PortReading:
    """What a port reports: OCPP status, power now, energy this session, fault code."""

    state: str
    watts: int
    energy_wh: int
    fault: str | None = None
    relay_on: bool = False


class PortDriver(Protocol):
    """Hardware access; ports are addressed by their stable code."""

    def start(self, port_code: str, session_ref: str) -> None:
        """Close the relay for a session; raise PortRejected or PortOffline."""

    def stop(self, port_code: str, reason: str) -> None:
        """Open the relay; raise PortOffline when unreachable."""

    def set_available(self, port_code: str, available: bool) -> None:
        """Take a port in or out of service at the hardware."""

    def read(self, port_code: str) -> PortReading:
        """Current reading; raise PortOffline when unreachable."""
