"""The gateway's OCPP 1.6J adapter: the central system wired to the telemetry store and the outbox.

Readings, status and links are handed to the gateway's Reporter (queued, stored in order, in
batches, off the event loop). The few messages that need an answer from the database — the
handshake's key check, Authorize, Start/StopTransaction (our transaction ids), a MeterValues for
a transaction this gateway has not seen — wait for it in the gateway's database threads. The device
session events that follow from Start and Stop go through the same ordered queue as the readings,
so they settle in the station's order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from chargeshed.ports import ocpp_store, targets
from chargeshed.ports.driver import FAULT_OVERHEAT, FAULT_OVERLOAD
from chargeshed.ports.gateway import Adapter, CommandRejected, DeviceUnreachable, Reporter
from chargeshed.ports.models import CMD_SET_AVAILABLE, CMD_START, CMD_STOP
from chargeshed.ports.ocpp import (
    BadFrame,
    CentralSystem,
    CommandRefused,
    MeterSample,
    Started,
    StationNotConnected,
    tls_context,
)
from chargeshed.ports.outbox import Command
from chargeshed.ports.telemetry import Reading

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9000"
# Connector statuses in which the outlet is switched on.
RELAY_ON = ("Charging", "SuspendedEV")
# StatusNotification errorCodes that are our overload / overheat faults (others are kept as sent).
OCPP_FAULTS = {"OverCurrentFailure": FAULT_OVERLOAD, "HighTemperature": FAULT_OVERHEAT}


def parse_listen(value: str) -> tuple[str, int]:
    """ "host:port" (IPv6 in brackets) → (host, port)."""
    host, _, port = (value or DEFAULT_LISTEN).rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class OcppAdapter(Adapter):
    """OCPP stations, reached over the websocket this gateway holds (commands are routed here)."""

    scheme = targets.OCPP
    routed = True

    def __init__(self, host: str, port: int, *, tls=None, **options):
        self.host, self.port, self.tls = host, port, tls
        self.options = options
        self.system: CentralSystem | None = None
        self.reporter: Reporter | None = None
        self._connectors: dict[str, int] = {}
        self._transactions: dict[tuple[str, int], int] = {}  # (station, transaction id) → connector

    @classmethod
    def from_config(cls, config: Mapping) -> OcppAdapter:
        """OCPP_LISTEN host:port; OCPP_TLS_CERT (+ OCPP_TLS_KEY) for wss:// (security profile 2);
        OCPP_STATS_SECONDS: how often the answer times are logged (event ocpp.frames)."""
        host, port = parse_listen(config.get("OCPP_LISTEN") or DEFAULT_LISTEN)
        cert = config.get("OCPP_TLS_CERT")
        return cls(
            host,
            port,
            tls=tls_context(cert, config.get("OCPP_TLS_KEY")) if cert else None,
            stats_seconds=float(config.get("OCPP_STATS_SECONDS") or 60),
        )

    # Adapter
    async def start(self, reporter: Reporter) -> None:
        """Listen for stations."""
        self.reporter = reporter
        self.system = CentralSystem(self, **self.options)
        await self.system.start(self.host, self.port, ssl=self.tls)
        log.info(
            "OCPP central system listening on %s:%s",
            self.host,
            self.system.port,
            extra={"event": "ocpp.listen", "port": self.system.port, "tls": self.tls is not None},
        )

    async def close(self) -> None:
        """Close every station connection."""
        if self.system is not None:
            await self.system.close()

    async def send(self, command: Command) -> None:
        """RemoteStartTransaction (idTag = the session reference; the device-side cap as its TxProfile),
        RemoteStopTransaction of the session's
        transaction, or ChangeAvailability."""
        cp_id, connector = command.target.device_id, command.target.channel
        try:
            if command.kind == CMD_START:
                if command.attempts and await self.reporter.run_db(
                    ocpp_store.session_started, cp_id, connector, command.session_ref
                ):
                    return  # sent before (the answer or its record was lost): the station runs it already
                await self.system.remote_start(cp_id, connector, command.session_ref, command.cap_seconds)
            elif command.kind == CMD_STOP:
                transaction = await self.reporter.run_db(
                    ocpp_store.open_transaction, cp_id, connector, command.session_ref
                )
                if transaction is not None:
                    await self.system.remote_stop(cp_id, transaction)
                # No transaction: the station never started (if it does later, its idTag is no longer wanted).
            elif command.kind == CMD_SET_AVAILABLE:
                await self.system.change_availability(cp_id, connector, command.available)
            else:
                raise CommandRejected(f"unknown command {command.kind}")
        except CommandRefused as refused:
            raise CommandRejected(str(refused)) from None
        except StationNotConnected:
            raise DeviceUnreachable(f"station {cp_id} is not connected to this gateway") from None

    # OcppBackend
    def _check_connector(self, cp_id: str, connector: int, *, station_ok: bool = False) -> None:
        count = self._connectors.get(cp_id, 0)
        if not (0 if station_ok else 1) <= connector <= count:
            raise BadFrame(f"unknown connector {connector} (station {cp_id} has {count})")

    async def check_key(self, charge_point_id: str, key: str) -> bool:
        """Registered and the right key; remembers how many connectors the station has and whether
        it takes charging profiles (another gateway may have found out that it does not)."""
        registered = await self.reporter.run_db(ocpp_store.check_key, charge_point_id, key)
        if registered is None:
            return False
        self._connectors[charge_point_id] = registered.connectors
        self.system.refuses_profiles(charge_point_id, not registered.takes_profiles)
        return True

    async def profiles_refused(self, charge_point_id: str, at: datetime) -> None:
        """Stored on the station's registry row (pages and `chargers list` say "no device-side cap")."""
        await self.reporter.run_db(ocpp_store.profiles_refused, charge_point_id, at)

    async def profiles_taken(self, charge_point_id: str) -> None:
        """The refusal is cleared from the registry row (a boot, or a profile accepted again)."""
        await self.reporter.run_db(ocpp_store.profiles_taken, charge_point_id)

    async def link(self, charge_point_id: str, online: bool, at: datetime) -> None:
        """Online (connected, booted, heartbeat) or offline."""
        self.reporter.link(ocpp_store.device_for(charge_point_id), online)

    async def status(self, charge_point_id: str, connector: int, status: str, error_code: str, at: datetime) -> None:
        """Connector 0: the station's own state; others: the port's state, fault and relay."""
        self._check_connector(charge_point_id, connector, station_ok=True)
        if connector == 0:
            self.reporter.link(ocpp_store.device_for(charge_point_id), True, state=status)
            return
        fault = "" if error_code in ("NoError", "", None) else OCPP_FAULTS.get(error_code, error_code)
        self.reporter.reading(
            ocpp_store.target_for(charge_point_id, connector),
            Reading(at=at, state=status, fault=fault, relay_on=status in RELAY_ON),
        )

    async def authorize(self, charge_point_id: str, id_tag: str) -> bool:
        """Only our own session references."""
        return await self.reporter.run_db(ocpp_store.wanted, charge_point_id, None, id_tag)

    async def start_transaction(
        self, charge_point_id: str, connector: int, id_tag: str, meter_start_wh: int, at: datetime
    ) -> Started:
        """Our transaction id; for our idTag the device session starts (queued after earlier reports)."""
        self._check_connector(charge_point_id, connector)
        recorded = await self.reporter.run_db(
            ocpp_store.start_transaction, charge_point_id, connector, id_tag, meter_start_wh, at
        )
        started = recorded.started
        self._transactions[(charge_point_id, started.transaction_id)] = connector
        if started.accepted and recorded.new:
            target = ocpp_store.target_for(charge_point_id, connector)
            self.reporter.session_started(target, id_tag, at, meter_start_wh)
            # Energy is offered from now, whether or not the station sends StatusNotification Charging.
            self.reporter.reading(target, Reading(at=at, state="Charging", relay_on=True))
        return started

    async def meter_values(
        self, charge_point_id: str, connector: int, transaction_id: int | None, samples: list[MeterSample]
    ) -> None:
        """Readings of the connector; samples of a transaction we never issued are dropped (logged)."""
        self._check_connector(charge_point_id, connector, station_ok=True)
        if transaction_id is not None:
            known = self._transactions.get((charge_point_id, transaction_id))
            if known is None:
                known = await self.reporter.run_db(ocpp_store.transaction_connector, charge_point_id, transaction_id)
                if known is not None:
                    self._transactions[(charge_point_id, transaction_id)] = known
            if known != connector:
                log.warning(
                    "station %s: MeterValues for transaction %s we never issued on connector %s: ignored",
                    charge_point_id,
                    transaction_id,
                    connector,
                    extra={"event": "ocpp.unknown_transaction", "charge_point": charge_point_id},
                )
                return
        if connector == 0:
            return  # the station's main meter is not a port
        self._report_samples(ocpp_store.target_for(charge_point_id, connector), samples)

    def _report_samples(self, target: str, samples: list[MeterSample]) -> None:
        for sample in samples:
            self.reporter.reading(target, Reading(at=sample.at, watts=sample.watts, meter_wh=sample.energy_wh))

    async def stop_transaction(
        self,
        charge_point_id: str,
        transaction_id: int,
        meter_stop_wh: int | None,
        at: datetime,
        reason: str,
        samples: list[MeterSample],
    ) -> bool:
        """The device session ends at the station's time and meter (queued after earlier reports);
        False for an id never issued."""
        stopped = await self.reporter.run_db(
            ocpp_store.stop_transaction, charge_point_id, transaction_id, meter_stop_wh, at, reason
        )
        self._transactions.pop((charge_point_id, transaction_id), None)
        if stopped is None:
            return False
        if stopped.session_ref is not None and stopped.new:
            target = ocpp_store.target_for(charge_point_id, stopped.connector)
            self._report_samples(target, [sample for sample in samples if sample.at <= at])
            self.reporter.session_stopped(target, stopped.session_ref, at, meter_stop_wh, reason)
            self.reporter.reading(target, Reading(at=at, watts=0, relay_on=False))
        return True
