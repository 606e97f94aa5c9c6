"""SimDriver: deterministic simulated charging units for demos and tests.

Each port may have a simulated bike plugged in with a charge profile. Power is a
closed-form function of simulated time since the relay closed, so readings are
exact and repeatable for a given clock, seed and speed factor.

The simulated hardware lives outside the worker: with `state_path` its state is kept
in a JSON file (written atomically, guarded by a lock file), so a worker that is
killed and restarted finds relays and bikes as they were, and several processes can
share the same simulated units.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime

from chargeshed.ports.driver import (
    AVAILABLE,
    CHARGING,
    FAULTED,
    FINISHING,
    PREPARING,
    SUSPENDED_EV,
    UNAVAILABLE,
    PortOffline,
    PortReading,
    PortRejected,
)

LITHIUM = "lithium"
LEAD_ACID = "lead_acid"
UNPLUGGED = "unplugged"
OVERLOAD = "overload"
STUCK_RELAY = "stuck_relay"
FAULT = "fault"
PROFILES = (LITHIUM, LEAD_ACID, UNPLUGGED, OVERLOAD, STUCK_RELAY, FAULT)


@dataclass
class Bike:
    """A simulated bike and charger: constant-current watts and minutes, then a taper."""

    profile: str
    cc_watts: int = 220
    cc_minutes: int = 180
    taper_minutes: int = 40
    float_watts: int = 0


@dataclass
class SimPort:
    """Simulated state of one port."""

    bike: Bike | None = None
    relay_on: bool = False
    relay_closed_at: datetime | None = None
    session_ref: str | None = None
    delivered_wh_before: float = 0.0
    available: bool = True
    offline: bool = False
    faulted: str | None = None
    unplug_at: datetime | None = None

    def to_json(self) -> dict:
        """JSON-ready form (datetimes as ISO strings)."""
        data = asdict(self)
        for name in ("relay_closed_at", "unplug_at"):
            data[name] = data[name].isoformat() if data[name] else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> SimPort:
        """Inverse of to_json; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for name in ("relay_closed_at", "unplug_at"):
            if values.get(name):
                values[name] = datetime.fromisoformat(values[name])
        if values.get("bike"):
            values["bike"] = Bike(**values["bike"])
        return cls(**values)


class StateFile:
    """The simulated hardware's state on disk: one JSON file, replaced atomically, with a lock file.

    Every operation reloads the file when another process changed it, so the file is the truth.
    """

    def __init__(self, path: str):
        self.path = path
        self._signature: tuple | None = None
        self._lock_file = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the inter-process lock (a second flock on the same open file would deadlock)."""
        if self._lock_file is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._lock_file = open(self.path + ".lock", "a")  # kept open: flock needs it
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load_if_changed(self) -> dict[str, SimPort] | None:
        """The ports on disk when the file changed since we last read or wrote it, else None."""
        signature = self._stat()
        if signature == self._signature:
            return None
        self._signature = signature
        if signature is None:
            return {}
        with open(self.path, encoding="utf-8") as handle:
            data = json.load(handle)
        return {code: SimPort.from_json(port) for code, port in data.get("ports", {}).items()}

    def save(self, ports: dict[str, SimPort]) -> None:
        """Write all ports to a temporary file and rename it over the old one.

        No fsync: the file must survive the worker being killed, which the rename guarantees; a
        simulator need not survive a power cut.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".sim-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(
                    {"version": 1, "ports": {code: port.to_json() for code, port in ports.items()}},
                    handle,
                    separators=(",", ":"),
                )
            os.replace(tmp, self.path)  # atomic: readers see the old state or the new, never half
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._signature = self._stat()


def bike_for(profile: str, seed: int) -> Bike:
    """A bike of the given profile with deterministic, plausible charger figures."""
    rnd = _unit_floats(seed, 3)
    if profile == LEAD_ACID:
        return Bike(
            LEAD_ACID,
            cc_watts=140 + int(60 * rnd[0]),
            cc_minutes=200 + int(100 * rnd[1]),
            taper_minutes=60,
            float_watts=8,
        )
    if profile == OVERLOAD:
        return Bike(OVERLOAD, cc_watts=1500, cc_minutes=10_000)
    if profile == UNPLUGGED:
        return Bike(UNPLUGGED, cc_watts=0, cc_minutes=0)
    return Bike(
        profile,
        cc_watts=180 + int(120 * rnd[0]),
        cc_minutes=120 + int(120 * rnd[1]),
        taper_minutes=30 + int(20 * rnd[2]),
    )


def _stable_seed(seed: int, port_code: str) -> int:
    """A per-port seed that is the same in every process (unlike hash() of a str)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{port_code}".encode()).digest()[:2], "big")


def _unit_floats(seed: int, count: int) -> list[float]:
    digest = hashlib.sha256(str(seed).encode()).digest()
    return [int.from_bytes(digest[i * 4 : (i + 1) * 4], "big") / 2**32 for i in range(count)]


def power_at(bike: Bike, minutes: float) -> float:
    """Charger power (W) `minutes` after the relay closed."""
    if bike.profile == UNPLUGGED or minutes < 0:
        return 0.0
    if minutes <= bike.cc_minutes:
        return float(bike.cc_watts)
    taper = bike.cc_watts * math.exp(-(minutes - bike.cc_minutes) / bike.taper_minutes)
    if bike.float_watts:
        return max(float(bike.float_watts), taper)
    return taper if taper >= 3 else 0.0


def energy_wh_at(bike: Bike, minutes: float) -> float:
    """Energy (Wh) delivered in `minutes` since the relay closed: the integral of power_at."""
    if bike.profile == UNPLUGGED or minutes <= 0:
        return 0.0
    cc = min(minutes, bike.cc_minutes)
    wh = bike.cc_watts * cc / 60
    if minutes > bike.cc_minutes:
        tail = minutes - bike.cc_minutes
        tau = bike.taper_minutes
        if bike.float_watts:
            # Taper until it meets the float level, then float.
            meet = tau * math.log(bike.cc_watts / bike.float_watts)
            t1 = min(tail, meet)
            wh += bike.cc_watts * tau * (1 - math.exp(-t1 / tau)) / 60
            wh += bike.float_watts * max(0.0, tail - meet) / 60
        else:
            cutoff = tau * math.log(bike.cc_watts / 3)
            t1 = min(tail, cutoff)
            wh += bike.cc_watts * tau * (1 - math.exp(-t1 / tau)) / 60
    return wh


class SimDriver:
    """Simulated charging units, driven by an injectable clock; `SimAdapter` connects them like devices.

    `speed` compresses the charge curve (60 = the curve advances a minute each real second);
    energy is still metered in real time, so power and price tiers stay realistic.
    With `auto_plug`, starting a port with no bike plugs a deterministic random bike,
    so the demo needs no set-up; tests plug bikes explicitly with `plug()`.
    """

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        seed: int = 0,
        speed: float = 1.0,
        auto_plug: bool = True,
        pickup_minutes: float = 90,
        state_path: str | None = None,
    ):
        self.clock = clock
        self.seed = seed
        self.speed = speed
        self.auto_plug = auto_plug
        self.pickup_minutes = pickup_minutes
        self._ports: dict[str, SimPort] = {}
        self._lock = threading.Lock()
        self._file = StateFile(state_path) if state_path else None
        self._dirty = False

    @contextlib.contextmanager
    def _hardware(self) -> Iterator[None]:
        """One operation on the units: up to date with the state file before, saved after a change."""
        with self._lock:
            if self._file is None:
                yield
                return
            with self._file.locked():
                loaded = self._file.load_if_changed()
                if loaded is not None:
                    self._ports = loaded
                self._dirty = False
                yield
                if self._dirty:
                    self._file.save(self._ports)
                    self._dirty = False

    def _port(self, code: str) -> SimPort:
        port = self._ports.get(code)
        if port is None:
            port = self._ports[code] = SimPort()
            self._dirty = True
        return port

    def _sim_minutes(self, since: datetime) -> float:
        return (self.clock() - since).total_seconds() * self.speed / 60

    # Test and demo controls
    def plug(self, port_code: str, profile: str = LITHIUM, bike: Bike | None = None) -> None:
        """Plug a simulated bike into a port."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile}")
        with self._hardware():
            port = self._port(port_code)
            port.bike = bike or bike_for(profile, _stable_seed(self.seed, port_code))
            port.relay_closed_at = None if not port.relay_on else port.relay_closed_at
            self._dirty = True

    def unplug(self, port_code: str) -> None:
        """Take the bike away (power drops to zero at once)."""
        with self._hardware():
            port = self._port(port_code)
            port.delivered_wh_before = self._energy(port)
            port.bike = None
            if not port.relay_on:
                port.relay_closed_at = None
            self._dirty = True

    def set_offline(self, port_code: str, offline: bool = True) -> None:
        """Make a port stop (or resume) answering."""
        with self._hardware():
            self._port(port_code).offline = offline
            self._dirty = True

    def set_fault(self, port_code: str, fault: str | None) -> None:
        """Raise or clear a hardware fault; a fault opens the relay."""
        with self._hardware():
            port = self._port(port_code)
            port.faulted = fault
            if fault and port.bike and port.bike.profile != STUCK_RELAY:
                port.relay_on = False
            self._dirty = True

    # PortDriver
    def start(self, port_code: str, session_ref: str) -> None:
        """Close the relay for a session; repeating the start of the running session changes nothing."""
        with self._hardware():
            port = self._port(port_code)
            if port.offline:
                raise PortOffline(port_code)
            if port.faulted or not port.available:
                raise PortRejected(port.faulted or "unavailable")
            if port.relay_on and port.session_ref == session_ref:
                return
            self._dirty = True
            if port.bike is None and self.auto_plug:
                digest = hashlib.sha256(f"{self.seed}:{session_ref}".encode()).digest()
                roll = digest[0] / 256
                profile = LITHIUM if roll < 0.62 else LEAD_ACID if roll < 0.95 else UNPLUGGED
                port.bike = bike_for(profile, int.from_bytes(digest[1:4], "big"))
            port.relay_on = True
            port.relay_closed_at = self.clock()
            port.session_ref = session_ref
            port.delivered_wh_before = 0.0
            port.unplug_at = None

    def stop(self, port_code: str, reason: str) -> None:
        """Open the relay (a stuck relay ignores this)."""
        with self._hardware():
            port = self._port(port_code)
            if port.offline:
                raise PortOffline(port_code)
            if port.bike and port.bike.profile == STUCK_RELAY:
                return
            self._dirty = True
            if port.relay_on:
                port.delivered_wh_before = self._energy(port)
            port.relay_on = False
            if port.bike is not None and self.auto_plug:
                port.unplug_at = self.clock()

    def set_available(self, port_code: str, available: bool) -> None:
        """Take a port in or out of service."""
        with self._hardware():
            port = self._port(port_code)
            if port.available != available:
                port.available = available
                self._dirty = True

    def read(self, port_code: str) -> PortReading:
        """The port's reading now."""
        with self._hardware():
            port = self._port(port_code)
            if port.offline:
                raise PortOffline(port_code)
            self._maybe_pickup(port)
            watts = self._watts(port)
            energy = int(self._energy(port))
            if port.faulted:
                state = FAULTED
            elif not port.available:
                state = UNAVAILABLE
            elif port.bike is None:
                state = AVAILABLE
            elif not port.relay_on:
                # Plugged in and waiting for a start, or left plugged in after a charge.
                state = FINISHING if port.relay_closed_at is not None else PREPARING
            elif port.bike.profile == FAULT and self._sim_minutes(port.relay_closed_at) >= 1:
                port.faulted = "ground_fault"
                self._dirty = True
                state, watts = FAULTED, 0
            elif watts == 0:
                state = SUSPENDED_EV if energy > 0 else PREPARING
            else:
                state = CHARGING
            return PortReading(state=state, watts=watts, energy_wh=energy, fault=port.faulted, relay_on=port.relay_on)

    def _maybe_pickup(self, port: SimPort) -> None:
        if self.auto_plug and port.unplug_at and self._sim_minutes(port.unplug_at) >= self.pickup_minutes:
            port.bike = None
            port.unplug_at = None
            port.relay_closed_at = None
            self._dirty = True

    def _watts(self, port: SimPort) -> int:
        if not port.relay_on or port.bike is None:
            return 0
        return int(round(power_at(port.bike, self._sim_minutes(port.relay_closed_at))))

    def _energy(self, port: SimPort) -> float:
        if not port.relay_on or port.bike is None:
            return port.delivered_wh_before
        # The curve runs `speed` times faster, but the meter counts real time at the drawn power,
        # so average power (energy / time), which decides the price tier, stays true.
        return energy_wh_at(port.bike, self._sim_minutes(port.relay_closed_at)) / self.speed


class SimAdapter:
    """The simulator as a device behind the gateway boundary: it executes outbox commands and
    publishes its readings into the telemetry store, exactly as a real device's adapter does.

    Synchronous (the simulated units answer at once); `chargeshed.worker` runs it in-process for
    `make run` and tests. Ports bound to the target ``sim`` are addressed by their code.
    """

    scheme = "sim"

    def __init__(self, driver: SimDriver):
        self.driver = driver

    def send(self, command) -> None:
        """Execute one outbox Command; raise PortRejected or PortOffline like a device would.

        A start that the unit accepts is reported as a device-side session start (meter from 0).
        """
        from chargeshed.extensions import db
        from chargeshed.ports import telemetry

        code = command.port_code
        if command.kind == "start":
            self.driver.start(code, command.session_ref)
            telemetry.record_session_event(
                code, telemetry.STARTED, self.driver.clock(), command.session_ref, meter_wh=0
            )
            db.session.commit()
        elif command.kind == "stop":
            self.driver.stop(code, command.reason)
        elif command.kind == "set_available":
            self.driver.set_available(code, command.available)

    def publish(self, port_ids=None) -> int:
        """Push the current reading of every simulated port (or of `port_ids`); silent units send none.

        Readings carry the units' own clock, like a device's. Commits (one batch, like the gateway's
        writer). Returns the number of readings stored.
        """
        from sqlalchemy import select

        from chargeshed.extensions import db
        from chargeshed.ports.telemetry import Reading, record_readings
        from chargeshed.sites.models import PORT_RETIRED, Port

        query = select(Port.code).where(Port.hardware_target == "sim", Port.status != PORT_RETIRED).order_by(Port.id)
        if port_ids is not None:
            query = query.where(Port.id.in_(list(port_ids)))
        batch = []
        now = self.driver.clock()
        for code in db.session.execute(query).scalars():
            try:
                reading = self.driver.read(code)
            except PortOffline:
                continue
            batch.append(
                (
                    code,
                    Reading(
                        at=now,
                        state=reading.state,
                        watts=reading.watts,
                        meter_wh=reading.energy_wh,
                        relay_on=reading.relay_on,
                        fault=reading.fault or "",
                    ),
                )
            )
        stored = record_readings(batch, heard_at=now) if batch else 0
        db.session.commit()
        return stored
