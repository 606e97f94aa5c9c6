"""OCPP 1.6J central system: the websocket server charging stations connect to.

Stations connect to ``ws(s)://HOST/ocpp/<charge_point_id>`` with subprotocol ``ocpp1.6`` and HTTP basic
auth (security profile 1: username = the charge point id, password = its AuthorizationKey). The
protocol work happens here; everything that touches the database goes through an `OcppBackend`
(coroutines that never block the event loop: the gateway's adapter queues telemetry writes and runs
the few lookups that need an answer in database threads). Messages of one station are
handled in the order they arrive (so offline-queued Start/MeterValues/Stop settle in order); a slow
station never holds up another.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
import http
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import ocpp.messages
from ocpp.exceptions import FormationViolationError, OCPPError, PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as _ChargePoint
from ocpp.v16 import call, call_result
from ocpp.v16.datatypes import ChargingProfile, ChargingSchedule, ChargingSchedulePeriod
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    AvailabilityType,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
    MessageTrigger,
    RegistrationStatus,
)
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.headers import build_www_authenticate_basic

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
PATH_PREFIX = "/ocpp/"
REALM = "ChargeShed OCPP"
# Heartbeat interval given at boot: the telemetry store wants word from a device every minute.
HEARTBEAT_SECONDS = 60
METER_SAMPLE_SECONDS = 60
SAMPLED_DATA = "Energy.Active.Import.Register,Power.Active.Import"
# How long a command waits for the station's answer (one outstanding call per station at a time).
# (under the gateway's own send timeout, so a silent station's call ends here first).
CALL_TIMEOUT_SECONDS = 8

# A reply that took this long is logged (with the action) as well as counted.
SLOW_REPLY_SECONDS = 0.5
# How often the event loop's lag is probed for the stats line (a sleeper woken late: every frame
# waiting in the loop's queue waits that long before its handler starts).
LAG_PROBE_SECONDS = 0.05

# The device-side cap a RemoteStartTransaction carries (see cap_profile): up to the cap, a limit
# above any outlet's own (no limit in practice); from the cap on, 0 A until the transaction ends.
UNLIMITED_AMPS = 32.0

# CallError codes some stations answer a RemoteStartTransaction carrying a chargingProfile with when
# they do not do charging profiles (others answer status Rejected).
PROFILE_REFUSALS = ("NotSupported", "NotImplemented")
# A station that refused a chargingProfile is asked again with one after this long (a refusal may
# have been passing: its profile slots full, a setting since changed), and at its next boot.
PROFILE_RETRY_SECONDS = 24 * 3600

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"

# StopTransaction reasons (OCPP 1.6 §7.41) → the reasons a device stop is recorded with in the
# telemetry store (the supervisor turns them into session end reasons). An absent reason means
# Local: the spec lets a station omit it then.
STOP_REASONS = {
    "Local": "local",
    "Remote": "remote",
    "EVDisconnected": "unplugged",
    "DeAuthorized": "remote",
    "UnlockCommand": "remote",
    "EmergencyStop": "fault",
    "PowerLoss": "power_loss",
    "Reboot": "power_loss",
    "HardReset": "power_loss",
    "SoftReset": "power_loss",
    "Other": "other",
}


def cap_profile(cap_seconds: int, id_tag: str = "") -> ChargingProfile:
    """The TxProfile that ends a charge on the station after `cap_seconds`, even without us.

    Relative to the transaction's start: no limit in practice until the cap (UNLIMITED_AMPS), 0 A
    from the cap on. The schedule has no `duration` on purpose: OCPP 1.6 lets a station fall back to
    its default limits once a schedule's duration is over, while without one "the last period will
    continue until the end of the transaction" (ChargingSchedule, §7.13), so the zero period holds.
    Its id is the session's number; the station drops a TxProfile when its transaction ends.
    """
    digits = "".join(ch for ch in id_tag if ch.isdigit())
    return ChargingProfile(
        charging_profile_id=int(digits[-9:]) if digits else 1,
        stack_level=0,
        charging_profile_purpose=ChargingProfilePurposeType.tx_profile,
        charging_profile_kind=ChargingProfileKindType.relative,
        charging_schedule=ChargingSchedule(
            charging_rate_unit=ChargingRateUnitType.amps,
            charging_schedule_period=[
                ChargingSchedulePeriod(start_period=0, limit=UNLIMITED_AMPS),
                ChargingSchedulePeriod(start_period=int(cap_seconds), limit=0.0),
            ],
        ),
    )


def stop_reason(ocpp_reason: str | None) -> str:
    """The device stop reason for a StopTransaction reason (unknown values count as Other)."""
    return STOP_REASONS.get(ocpp_reason or "Local", STOP_REASONS["Other"])


def tls_context(cert: str, key: str | None = None) -> ssl.SSLContext:
    """Security profile 2: TLS 1.2 or newer, with the central system's certificate chain (PEM files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key or None)
    return context


class BadFrame(Exception):
    """A frame the backend refuses: unknown connector, negative meter. Answered with a CallError."""


class StationNotConnected(Exception):
    """No gateway connection to this charge point right now."""


class CommandRefused(Exception):
    """The station answered a command with Rejected / NotSupported or a CallError (`code`: the
    CallError's code, or "" for a status answer)."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class MeterSample:
    """One meterValue element: when, the energy register (Wh) and the power (W), either may be absent."""

    at: datetime
    energy_wh: int | None = None
    watts: int | None = None
    context: str = ""


@dataclass(frozen=True)
class Started:
    """The answer to a StartTransaction: our transaction id and whether the idTag is accepted."""

    transaction_id: int
    accepted: bool


class OcppBackend(Protocol):
    """What the central system needs from the rest of the system. Every method is a coroutine that
    must not block the event loop (database work goes to threads). Methods raise BadFrame for input
    they refuse (unknown connector, …): the station gets a CallError."""

    async def check_key(self, charge_point_id: str, key: str) -> bool:
        """True when the charge point is registered and `key` is its AuthorizationKey."""

    async def link(self, charge_point_id: str, online: bool, at: datetime) -> None:
        """The station connected (or booted, or sent a heartbeat) or its connection closed."""

    async def status(self, charge_point_id: str, connector: int, status: str, error_code: str, at: datetime) -> None:
        """A StatusNotification; connector 0 is the whole station."""

    async def authorize(self, charge_point_id: str, id_tag: str) -> bool:
        """True when the idTag is one we issued for a start that is still wanted."""

    async def start_transaction(
        self, charge_point_id: str, connector: int, id_tag: str, meter_start_wh: int, at: datetime
    ) -> Started:
        """Record a started transaction (the same one again returns the same id)."""

    async def meter_values(
        self, charge_point_id: str, connector: int, transaction_id: int | None, samples: list[MeterSample]
    ) -> None:
        """Store meter samples; transaction_id is None when the station sent none (or 0)."""

    async def stop_transaction(
        self,
        charge_point_id: str,
        transaction_id: int,
        meter_stop_wh: int | None,
        at: datetime,
        reason: str,
        samples: list[MeterSample],
    ) -> bool:
        """Record a stopped transaction; False when the id was never issued (logged, nothing moves)."""

    async def profiles_refused(self, charge_point_id: str, at: datetime) -> None:
        """The station refused a chargingProfile on RemoteStartTransaction and took the start without."""

    async def profiles_taken(self, charge_point_id: str) -> None:
        """A station that had refused charging profiles booted (its firmware may have changed) or
        accepted one again: forget the refusal."""


def parse_time(value: Any, default: datetime | None = None) -> datetime:
    """An OCPP timestamp as naive UTC (the storage convention); `default` (or now) when unreadable.

    A time in the future (a station clock running ahead) is taken as now.
    """
    now = _utcnow()
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            return min(moment, now)
    return default or now


def _number(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _pick(values: list[tuple[str, Decimal]]) -> Decimal | None:
    """The value without a phase, else the sum of the line phases (some firmware sends only those)."""
    whole = [v for phase, v in values if not phase]
    if whole:
        return whole[-1]
    lines = [v for phase, v in values if phase in ("L1", "L2", "L3")]
    return sum(lines) if lines else None


def parse_meter_values(meter_value: Any, default_at: datetime | None = None) -> list[MeterSample]:
    """Parse a meterValue list (snake_case keys, as the ocpp library passes them) into samples.

    Tolerant of what firmware sends: unknown measurands, contexts and phases are ignored, energy in
    Wh or kWh, power in W or kW. A negative energy or power raises BadFrame.
    """
    samples = []
    for element in meter_value if isinstance(meter_value, list) else []:
        if not isinstance(element, dict):
            continue
        energy: list[tuple[str, Decimal]] = []
        power: list[tuple[str, Decimal]] = []
        context = ""
        for item in element.get("sampled_value") or []:
            if not isinstance(item, dict):
                continue
            measurand = item.get("measurand") or ENERGY
            number = _number(item.get("value"))
            if measurand not in (ENERGY, POWER) or number is None:
                continue
            if number < 0:
                raise BadFrame(f"negative {measurand} {item.get('value')}")
            unit = item.get("unit") or ("Wh" if measurand == ENERGY else "W")
            scale = 1000 if unit in ("kWh", "kW") else 1
            target = energy if measurand == ENERGY else power
            target.append((item.get("phase") or "", number * scale))
            context = item.get("context") or context
        wh, w = _pick(energy), _pick(power)
        if wh is None and w is None:
            continue
        samples.append(
            MeterSample(
                at=parse_time(element.get("timestamp"), default_at),
                energy_wh=None if wh is None else int(wh),
                watts=None if w is None else int(w),
                context=context,
            )
        )
    return samples


@dataclass
class FrameTimes:
    """Frame received → reply sent, in seconds, per reporting window (bounded memory)."""

    limit: int = 500_000
    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        """Keep a sample while below the limit."""
        if len(self.samples) < self.limit:
            self.samples.append(seconds)

    def take(self) -> dict:
        """Count, p50, p99 and max (ms) of the window, and start a new window."""
        samples, self.samples = sorted(self.samples), []
        if not samples:
            return {"frames": 0}

        def ms(value: float) -> float:
            return round(value * 1000, 2)

        return {
            "frames": len(samples),
            "p50_ms": ms(samples[len(samples) // 2]),
            "p99_ms": ms(samples[min(len(samples) - 1, int(len(samples) * 0.99))]),
            "max_ms": ms(samples[-1]),
        }


class Station(_ChargePoint):
    """One connected charge point (the ocpp library's ChargePoint, on our side of the socket)."""

    def __init__(self, charge_point_id: str, connection: ServerConnection, system: CentralSystem):
        super().__init__(charge_point_id, connection, response_timeout=system.call_timeout, logger=_quiet)
        self.system = system
        self.backend = system.backend

    async def route_message(self, raw_msg):
        """Answer every call, also unparsable frames (the library drops those silently); time the reply."""
        started = time.perf_counter()
        frame = None
        try:
            frame = json.loads(raw_msg)
        except (ValueError, TypeError):
            pass
        if not (
            isinstance(frame, list)
            and len(frame) >= 3
            and frame[0] in (2, 3, 4)
            and isinstance(frame[1], str)
            and (frame[0] != 2 or (len(frame) == 4 and isinstance(frame[2], str) and isinstance(frame[3], dict)))
        ):
            log.warning(
                "malformed OCPP frame from %s: %.200s",
                self.id,
                raw_msg,
                extra={"event": "ocpp.malformed", "charge_point": self.id},
            )
            unique_id = frame[1] if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str) else "-1"
            error = FormationViolationError(details={"cause": "not an OCPP-J frame"})
            await self._send(json.dumps([4, unique_id, error.code, error.description, error.details]))
            return
        await super().route_message(raw_msg)
        if frame[0] == 2:
            elapsed = time.perf_counter() - started
            self.system.frame_times.add(elapsed)
            if elapsed >= SLOW_REPLY_SECONDS:
                log.warning(
                    "slow reply to %s %s: %.0f ms",
                    self.id,
                    frame[2],
                    elapsed * 1000,
                    extra={
                        "event": "ocpp.slow_reply",
                        "charge_point": self.id,
                        "action": frame[2],
                        "ms": round(elapsed * 1000),
                    },
                )

    async def _handle_call(self, msg):
        """Log schema violations and other refused calls in one clear line (the library answers them)."""
        try:
            return await super()._handle_call(msg)
        except OCPPError as error:
            log.warning(
                "OCPP %s from %s refused: %s %s",
                msg.action,
                self.id,
                error.code,
                error.details,
                extra={"event": "ocpp.call_error", "charge_point": self.id, "action": msg.action},
            )
            raise

    def _refuse(self, action: str, problem: Exception):
        log.warning(
            "OCPP %s from %s refused: %s",
            action,
            self.id,
            problem,
            extra={"event": "ocpp.refused", "charge_point": self.id, "action": action},
        )
        return PropertyConstraintViolationError(description=str(problem)[:200])

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **_):
        """Accept, then (after the reply) set the meter sample interval and the measurands we bill from."""
        await self.backend.link(self.id, True, _utcnow())
        await self.system.booted(self.id)
        log.info(
            "station %s booted (%s %s)",
            self.id,
            charge_point_vendor,
            charge_point_model,
            extra={"event": "ocpp.boot", "charge_point": self.id},
        )
        self.system.spawn(self.configure(), self.id)
        return call_result.BootNotification(
            current_time=_iso(_utcnow()), interval=self.system.heartbeat_seconds, status=RegistrationStatus.accepted
        )

    async def configure(self) -> None:
        """ChangeConfiguration for metering; a refusal is logged (some firmware fixes these values)."""
        for key, value in (
            ("MeterValueSampleInterval", str(self.system.meter_sample_seconds)),
            ("MeterValuesSampledData", SAMPLED_DATA),
        ):
            try:
                result = await self.call(call.ChangeConfiguration(key=key, value=value), suppress=False)
                status = result.status
            except (TimeoutError, OCPPError, ConnectionClosed) as exc:
                status = repr(exc)
            if status != "Accepted":
                log.warning(
                    "station %s: ChangeConfiguration %s → %s",
                    self.id,
                    key,
                    status,
                    extra={"event": "ocpp.configure", "charge_point": self.id},
                )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_):
        """Heartbeat: the station is alive."""
        await self.backend.link(self.id, True, _utcnow())
        return call_result.Heartbeat(current_time=_iso(_utcnow()))

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str, timestamp=None, **_):
        """A connector's (or, for 0, the station's) status."""
        try:
            await self.backend.status(self.id, connector_id, status, error_code, parse_time(timestamp))
        except BadFrame as problem:
            raise self._refuse("StatusNotification", problem) from None
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **_):
        """Accepted for the idTags of our own RemoteStartTransactions that are still wanted."""
        accepted = await self.backend.authorize(self.id, id_tag)
        status = AuthorizationStatus.accepted if accepted else AuthorizationStatus.invalid
        return call_result.Authorize(id_tag_info={"status": status})

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_):
        """Our transaction id; Invalid (with an id, as the spec wants) for an idTag we do not know."""
        if meter_start < 0:
            raise self._refuse("StartTransaction", BadFrame(f"negative meterStart {meter_start}"))
        try:
            started = await self.backend.start_transaction(
                self.id, connector_id, id_tag, meter_start, parse_time(timestamp)
            )
        except BadFrame as problem:
            raise self._refuse("StartTransaction", problem) from None
        status = AuthorizationStatus.accepted if started.accepted else AuthorizationStatus.invalid
        return call_result.StartTransaction(transaction_id=started.transaction_id, id_tag_info={"status": status})

    @on(Action.meter_values, skip_schema_validation=True)
    async def on_meter_values(self, connector_id=None, meter_value=None, transaction_id=None, **_):
        """Samples of the register and power; lenient, as firmware in the field sends all sorts."""
        if not _is_int(connector_id) or not isinstance(meter_value, list):
            raise self._refuse("MeterValues", BadFrame("connectorId and meterValue are required"))
        try:
            samples = parse_meter_values(meter_value)
            transaction = transaction_id if _is_int(transaction_id) and transaction_id > 0 else None
            await self.backend.meter_values(self.id, connector_id, transaction, samples)
        except BadFrame as problem:
            raise self._refuse("MeterValues", problem) from None
        return call_result.MeterValues()

    @on(Action.stop_transaction, skip_schema_validation=True)
    async def on_stop_transaction(
        self, meter_stop=None, timestamp=None, transaction_id=None, reason=None, transaction_data=None, **_
    ):
        """Always accepted (a station retries a refused stop for ever); bad input is logged, not billed.

        Checked by hand rather than by the schema, so an odd measurand in transactionData does not
        turn a queued stop into an error."""
        if not _is_int(transaction_id) or not _is_int(meter_stop):
            raise self._refuse("StopTransaction", BadFrame("transactionId and meterStop must be integers"))
        at = parse_time(timestamp)
        try:
            samples = parse_meter_values(transaction_data, at)
        except BadFrame as problem:
            log.warning(
                "station %s: StopTransaction %s transactionData ignored: %s",
                self.id,
                transaction_id,
                problem,
                extra={"event": "ocpp.refused", "charge_point": self.id},
            )
            samples = []
        if meter_stop < 0:
            log.warning(
                "station %s: StopTransaction %s with negative meterStop %s: not billed from it",
                self.id,
                transaction_id,
                meter_stop,
                extra={"event": "ocpp.refused", "charge_point": self.id},
            )
            meter_stop = None
        known = await self.backend.stop_transaction(
            self.id, transaction_id, meter_stop, at, stop_reason(reason), samples
        )
        if not known:
            log.warning(
                "station %s: StopTransaction for transaction %s we never issued",
                self.id,
                transaction_id,
                extra={"event": "ocpp.unknown_transaction", "charge_point": self.id},
            )
        return call_result.StopTransaction()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_):
        """Vendor extensions: none known."""
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, **_):
        """Acknowledged only."""
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status(self, **_):
        """Acknowledged only."""
        return call_result.DiagnosticsStatusNotification()


class CentralSystem:
    """The websocket server and the stations connected to it."""

    def __init__(
        self,
        backend: OcppBackend,
        *,
        heartbeat_seconds: int = HEARTBEAT_SECONDS,
        meter_sample_seconds: int = METER_SAMPLE_SECONDS,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        stats_seconds: float = 60,
    ):
        self.backend = backend
        # Validate schemas on the loop: the library's default hands every frame to a thread and back
        # (two hops, each waiting for the GIL behind the gateway's database threads); OCPP 1.6 payloads
        # are small enough to check in a fraction of a millisecond.
        ocpp.messages.ASYNC_VALIDATION = False
        _quiet.setLevel(logging.WARNING)
        if _refusals_logged_already not in _quiet.filters:
            _quiet.addFilter(_refusals_logged_already)
        self.heartbeat_seconds = heartbeat_seconds
        self.meter_sample_seconds = meter_sample_seconds
        self.call_timeout = call_timeout
        self.stations: dict[str, Station] = {}
        self.frame_times = FrameTimes()
        self.loop_lag = FrameTimes()
        self.gc_pauses = FrameTimes()  # the interpreter's collections of its oldest generation
        self._gc_started = 0.0
        self.stats_seconds = stats_seconds
        self.server: Server | None = None
        self._tasks: set[asyncio.Task] = set()
        # Hooks for the gateway: called (on the loop) when a station connects or its connection ends.
        self.on_connect: Callable[[str], None] | None = None
        self.on_disconnect: Callable[[str], None] | None = None
        # Stations known to refuse a RemoteStartTransaction that carries a chargingProfile, with the
        # loop time they were found to (or connected so known): they are started without one (no
        # device-side cap) until PROFILE_RETRY_SECONDS later or their next boot. Filled by
        # remote_start and by the gateway (`refuses_profiles`).
        self.without_profiles: dict[str, float] = {}

    def spawn(self, coro, name: str = "") -> asyncio.Task:
        """Run a coroutine beside the message loop (never call a station from inside its handler)."""
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self, host: str, port: int, *, ssl=None) -> Server:
        """Listen; port 0 picks a free port (see `port`)."""
        self.server = await serve(
            self._handle,
            host,
            port,
            subprotocols=[SUBPROTOCOL],
            process_request=self._authenticate,
            ssl=ssl,
            ping_interval=60,
            ping_timeout=60,
            max_size=2**20,
        )
        if self.stats_seconds:
            self.spawn(self._report_loop(), "ocpp-stats")
            self.spawn(self._lag_loop(), "ocpp-loop-lag")
            gc.callbacks.append(self._gc_timer)
        return self.server

    async def _report_loop(self) -> None:
        """Every `stats_seconds`: stations connected and how fast their calls were answered."""
        while True:
            await asyncio.sleep(self.stats_seconds)
            figures = self.frame_times.take()
            lag, collections = self.loop_lag.take(), self.gc_pauses.take()
            figures.update(
                loop_lag_p99_ms=lag.get("p99_ms"),
                loop_lag_max_ms=lag.get("max_ms"),
                gc_full=collections["frames"],
                gc_max_ms=collections.get("max_ms"),
            )
            log.info(
                "ocpp: %d stations, %s",
                len(self.stations),
                figures,
                extra={"event": "ocpp.frames", "stations": len(self.stations), **figures},
            )

    def _gc_timer(self, phase: str, info: dict) -> None:
        """gc callback: how long each collection of the oldest generation held the interpreter."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.add(time.perf_counter() - self._gc_started)

    async def _lag_loop(self) -> None:
        """Probe how late the event loop wakes a sleeper (reported with the frame times)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_SECONDS
            await asyncio.sleep(LAG_PROBE_SECONDS)
            self.loop_lag.add(loop.time() - due)

    @property
    def port(self) -> int:
        """The TCP port listened on."""
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every station connection."""
        if self._gc_timer in gc.callbacks:
            gc.callbacks.remove(self._gc_timer)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    @staticmethod
    def charge_point_id(path: str) -> str | None:
        """The id in /ocpp/<id> (without query string), or None for any other path."""
        path = path.split("?", 1)[0]
        if not path.startswith(PATH_PREFIX):
            return None
        cp_id = path[len(PATH_PREFIX) :]
        return cp_id if cp_id and "/" not in cp_id and len(cp_id) <= 64 else None

    async def _authenticate(self, connection: ServerConnection, request):
        """Security profile 1: basic auth, username = the id in the path, password = its AuthorizationKey."""
        cp_id = self.charge_point_id(request.path)
        if cp_id is None:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Unknown path\n")
        username = password = None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
                username, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        if username != cp_id or not password or not await self.backend.check_key(cp_id, password):
            log.warning(
                "station %s refused at the handshake (%s)",
                cp_id,
                "no credentials" if username is None else "wrong id or key",
                extra={"event": "ocpp.auth_refused", "charge_point": cp_id},
            )
            response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "Invalid credentials\n")
            response.headers["WWW-Authenticate"] = build_www_authenticate_basic(REALM)
            return response
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        cp_id = self.charge_point_id(connection.request.path)
        station = Station(cp_id, connection, self)
        old = self.stations.get(cp_id)
        self.stations[cp_id] = station
        if old is not None:
            log.info(
                "station %s reconnected: closing its old connection",
                cp_id,
                extra={"event": "ocpp.replaced", "charge_point": cp_id},
            )
            self.spawn(old._connection.close(code=1000, reason="replaced by a newer connection"))
        log.info("station %s connected", cp_id, extra={"event": "ocpp.connect", "charge_point": cp_id})
        try:
            await self.backend.link(cp_id, True, _utcnow())
            if self.on_connect:
                self.on_connect(cp_id)
            await station.start()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("station %s: connection handler failed", cp_id)
        finally:
            if self.stations.get(cp_id) is station:
                del self.stations[cp_id]
                log.info("station %s disconnected", cp_id, extra={"event": "ocpp.disconnect", "charge_point": cp_id})
                try:
                    await self.backend.link(cp_id, False, _utcnow())
                except Exception:
                    log.exception("station %s: could not record the disconnect", cp_id)
                if self.on_disconnect:
                    self.on_disconnect(cp_id)

    def refuses_profiles(self, cp_id: str, refuses: bool) -> None:
        """Known from before (the registry): the station refuses charging profiles, or not."""
        if refuses:
            self.without_profiles.setdefault(cp_id, asyncio.get_running_loop().time())
        else:
            self.without_profiles.pop(cp_id, None)

    async def booted(self, cp_id: str) -> None:
        """A boot may bring new firmware: a station that refused charging profiles is asked with one
        again at its next start (and the registry forgets the refusal)."""
        if self.without_profiles.pop(cp_id, None) is None:
            return
        try:
            await self.backend.profiles_taken(cp_id)
        except Exception:
            log.exception("station %s: could not record that it may take charging profiles again", cp_id)

    def _station(self, cp_id: str) -> Station:
        station = self.stations.get(cp_id)
        if station is None:
            raise StationNotConnected(cp_id)
        return station

    async def _call(self, cp_id: str, payload) -> Any:
        """Send one call; a CallError or a timeout becomes CommandRefused / asyncio.TimeoutError."""
        station = self._station(cp_id)
        try:
            return await station.call(payload, suppress=False)
        except OCPPError as error:
            raise CommandRefused(f"{error.code}: {error.description}", error.code) from None
        except ConnectionClosed:
            raise StationNotConnected(cp_id) from None

    @staticmethod
    def _accepted(result, what: str) -> None:
        if getattr(result, "status", None) != "Accepted":
            raise CommandRefused(f"{what}: {getattr(result, 'status', result)}")

    async def remote_start(self, cp_id: str, connector: int, id_tag: str, cap_seconds: int | None = None) -> bool:
        """RemoteStartTransaction, with the device-side cap as its TxProfile when `cap_seconds` is
        given (see cap_profile); raises CommandRefused unless Accepted. Returns whether the cap went.

        A station that does not do charging profiles answers a start carrying one with Rejected (or
        a CallError NotSupported / NotImplemented): the start is sent once more without it, and when
        that is accepted the station is remembered (`without_profiles`, and the backend's
        `profiles_refused`) so its later starts go without a profile at once — until its next boot
        or PROFILE_RETRY_SECONDS later, when a start carries the profile again; accepted, the
        refusal is forgotten (the backend's `profiles_taken`).
        """
        plain = call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector)
        now = asyncio.get_running_loop().time()
        refused_at = self.without_profiles.get(cp_id)
        if not cap_seconds or (refused_at is not None and now - refused_at < PROFILE_RETRY_SECONDS):
            self._accepted(await self._call(cp_id, plain), "RemoteStartTransaction")
            return False
        capped = call.RemoteStartTransaction(
            id_tag=id_tag, connector_id=connector, charging_profile=cap_profile(cap_seconds, id_tag)
        )
        try:
            result = await self._call(cp_id, capped)
        except CommandRefused as refused:
            if refused.code not in PROFILE_REFUSALS:
                raise
            answer = refused.code
        else:
            if getattr(result, "status", None) == "Accepted":
                if self.without_profiles.pop(cp_id, None) is not None:
                    log.info(
                        "station %s took a chargingProfile again: started with the device-side cap",
                        cp_id,
                        extra={"event": "ocpp.profiles_again", "charge_point": cp_id},
                    )
                    try:
                        await self.backend.profiles_taken(cp_id)
                    except Exception:  # the start went out: a failed record must not make it fail
                        log.exception("station %s: could not record that it takes charging profiles", cp_id)
                return True
            answer = str(getattr(result, "status", result))
        self._accepted(await self._call(cp_id, plain), "RemoteStartTransaction")
        self.without_profiles[cp_id] = now
        log.warning(
            "station %s answered a RemoteStartTransaction with a chargingProfile %s and accepted it without: "
            "started without a device-side cap, and so from now on",
            cp_id,
            answer,
            extra={"event": "ocpp.no_profiles", "charge_point": cp_id, "answer": answer},
        )
        try:
            await self.backend.profiles_refused(cp_id, _utcnow())
        except Exception:  # the start went out: a failed record must not make it fail (or resend it)
            log.exception("station %s: could not record that it refuses charging profiles", cp_id)
        return False

    async def remote_stop(self, cp_id: str, transaction_id: int) -> None:
        """RemoteStopTransaction; raises CommandRefused unless Accepted."""
        self._accepted(
            await self._call(cp_id, call.RemoteStopTransaction(transaction_id=transaction_id)), "RemoteStopTransaction"
        )

    async def change_availability(self, cp_id: str, connector: int, available: bool) -> str:
        """ChangeAvailability; returns Accepted or Scheduled (applies after the running transaction)."""
        kind = AvailabilityType.operative if available else AvailabilityType.inoperative
        result = await self._call(cp_id, call.ChangeAvailability(connector_id=connector, type=kind))
        if result.status not in ("Accepted", "Scheduled"):
            raise CommandRefused(f"ChangeAvailability: {result.status}")
        return result.status

    async def change_configuration(self, cp_id: str, key: str, value: str) -> str:
        """ChangeConfiguration; returns Accepted or RebootRequired."""
        result = await self._call(cp_id, call.ChangeConfiguration(key=key, value=value))
        if result.status not in ("Accepted", "RebootRequired"):
            raise CommandRefused(f"ChangeConfiguration {key}: {result.status}")
        return result.status

    async def trigger_message(self, cp_id: str, message: str, connector: int | None = None) -> None:
        """TriggerMessage (e.g. StatusNotification, MeterValues, Heartbeat)."""
        self._accepted(
            await self._call(
                cp_id, call.TriggerMessage(requested_message=MessageTrigger(message), connector_id=connector)
            ),
            "TriggerMessage",
        )


def adapters(config) -> list:
    """The gateway's OCPP adapter (chargeshed.ports.gateway loads this); none when OCPP_LISTEN is "off"."""
    if str(config.get("OCPP_LISTEN") or "").lower() == "off":
        return []
    from chargeshed.ports.ocpp_adapter import OcppAdapter

    return [OcppAdapter.from_config(config)]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


# The ocpp library logs every frame at INFO, and a traceback for every CallError it answers; we log
# refusals in one line ourselves and keep its other warnings and errors.
_quiet = logging.getLogger("chargeshed.ports.ocpp.frames")


def _refusals_logged_already(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], OCPPError))
