"""A charge point that is not our code: the ocpp library's client side over a websockets client.

It answers our commands as a station would (configurable status) and records what it was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from ocpp import exceptions as ocpp_errors
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect


def stamp(moment: datetime | None = None) -> str:
    """An OCPP timestamp (UTC, Z)."""
    moment = moment or datetime.now(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds") + "Z"


class Station(ChargePoint):
    """A charge point that records every command it receives (queue `asked`) and accepts them."""

    def __init__(self, cp_id, connection):
        super().__init__(cp_id, connection, response_timeout=10)
        self.asked: asyncio.Queue = asyncio.Queue()
        self.answer = "Accepted"
        self.silent = False
        self.configuration: dict[str, str] = {}
        self.profiles: list[dict | None] = []  # the chargingProfile of each RemoteStartTransaction
        self.clock = None  # a callable giving the station's time (naive UTC); real time when None

    async def _asked(self, action: str, **payload):
        self.asked.put_nowait((action, payload))
        if self.silent:
            await asyncio.sleep(3600)

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag, connector_id=None, charging_profile=None, **_):
        self.profiles.append(charging_profile)  # as received, checked by the library against the schema
        await self._asked("RemoteStartTransaction", id_tag=id_tag, connector_id=connector_id)
        return call_result.RemoteStartTransaction(status=self.answer)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id, **_):
        await self._asked("RemoteStopTransaction", transaction_id=transaction_id)
        return call_result.RemoteStopTransaction(status=self.answer)

    @on(Action.change_configuration)
    async def on_change_configuration(self, key, value, **_):
        self.configuration[key] = value
        await self._asked("ChangeConfiguration", key=key, value=value)
        return call_result.ChangeConfiguration(status=self.answer)

    @on(Action.change_availability)
    async def on_change_availability(self, connector_id, type, **_):
        await self._asked("ChangeAvailability", connector_id=connector_id, type=type)
        return call_result.ChangeAvailability(status=self.answer)

    @on(Action.trigger_message)
    async def on_trigger_message(self, requested_message, connector_id=None, **_):
        await self._asked("TriggerMessage", requested_message=requested_message, connector_id=connector_id)
        return call_result.TriggerMessage(status=self.answer)

    async def next_asked(self, action: str, timeout: float = 10) -> dict:
        """The next command of this action (others before it are skipped)."""
        while True:
            got, payload = await asyncio.wait_for(self.asked.get(), timeout)
            if got == action:
                return payload

    # What a station sends
    async def boot(self):
        return await self.call(call.BootNotification(charge_point_vendor="Acme", charge_point_model="Shed10"))

    def time(self, at: datetime | None = None) -> str:
        """A timestamp on the station's clock."""
        return stamp(at or (self.clock() if self.clock else None))

    async def authorize(self, id_tag: str):
        return await self.call(call.Authorize(id_tag=id_tag))

    async def status(self, connector: int, status: str, error_code: str = "NoError", at: datetime | None = None):
        return await self.call(
            call.StatusNotification(
                connector_id=connector, error_code=error_code, status=status, timestamp=self.time(at)
            )
        )

    async def start_transaction(self, connector: int, id_tag: str, meter_start: int, at: datetime | None = None):
        return await self.call(
            call.StartTransaction(
                connector_id=connector, id_tag=id_tag, meter_start=meter_start, timestamp=self.time(at)
            ),
            suppress=False,
        )

    async def meter(
        self,
        connector: int,
        transaction_id: int | None,
        *,
        wh=None,
        w=None,
        at=None,
        unit: str = "Wh",
        extra: list | None = None,
    ):
        sampled = list(extra or [])
        if wh is not None:
            sampled.append(
                {
                    "value": str(wh),
                    "measurand": "Energy.Active.Import.Register",
                    "unit": unit,
                    "context": "Sample.Periodic",
                }
            )
        if w is not None:
            sampled.append({"value": str(w), "measurand": "Power.Active.Import", "unit": "W"})
        return await self.call(
            call.MeterValues(
                connector_id=connector,
                transaction_id=transaction_id,
                meter_value=[{"timestamp": self.time(at), "sampled_value": sampled}],
            ),
            suppress=False,
            skip_schema_validation=True,
        )

    async def stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        reason: str | None = None,
        at: datetime | None = None,
        transaction_data: list | None = None,
    ):
        return await self.call(
            call.StopTransaction(
                meter_stop=meter_stop,
                timestamp=self.time(at),
                transaction_id=transaction_id,
                reason=reason,
                transaction_data=transaction_data,
            ),
            suppress=False,
            skip_schema_validation=True,
        )


class NoProfileStation(Station):
    """A station without charging profiles: it refuses a RemoteStartTransaction that carries one,
    with status Rejected or, when `refusal` names a CallError code, with that CallError; it accepts
    the same start without a profile."""

    refusal = "Rejected"

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag, connector_id=None, charging_profile=None, **_):
        self.profiles.append(charging_profile)
        await self._asked("RemoteStartTransaction", id_tag=id_tag, connector_id=connector_id)
        if charging_profile is None:
            return call_result.RemoteStartTransaction(status=self.answer)
        if self.refusal == "NotSupported":
            raise ocpp_errors.NotSupportedError(description="chargingProfile is not supported")
        if self.refusal == "NotImplemented":
            raise ocpp_errors.NotImplementedError(description="SmartCharging is not implemented")
        return call_result.RemoteStartTransaction(status=self.refusal)


def url(port: int, cp_id: str, key: str | None, host: str = "127.0.0.1") -> str:
    """The station's websocket URL, with basic-auth credentials when a key is given."""
    auth = f"{cp_id}:{key}@" if key is not None else ""
    return f"ws://{auth}{host}:{port}/ocpp/{cp_id}"


@contextlib.asynccontextmanager
async def station_connected(port: int, cp_id: str, key: str | None, *, station_cls=Station):
    """A connected station running its message loop; closed on exit."""
    websocket = await connect(url(port, cp_id, key), subprotocols=["ocpp1.6"], open_timeout=10)
    station = station_cls(cp_id, websocket)
    loop = asyncio.get_running_loop().create_task(station.start())
    try:
        yield station
    finally:
        loop.cancel()
        with contextlib.suppress(BaseException):
            await loop
        await websocket.close()


class StationThread:
    """A connected station running in a thread of its own event loop, for tests whose main thread is
    busy elsewhere (a browser): `with StationThread(port, cp_id, key) as st: st.do(lambda s: s.boot())`."""

    def __init__(self, port: int, cp_id: str, key: str, clock=None):
        import threading

        self.port, self.cp_id, self.key, self.clock = port, cp_id, key, clock
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"station-{cp_id}", daemon=True)
        self._context = None
        self.station: Station | None = None

    def do(self, action, timeout: float = 30):
        """Run `action(station)` (a coroutine function) on the station's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(action(self.station), self.loop).result(timeout)

    def __enter__(self) -> StationThread:
        self.thread.start()
        self._context = station_connected(self.port, self.cp_id, self.key)

        async def enter():
            return await self._context.__aenter__()

        self.station = asyncio.run_coroutine_threadsafe(enter(), self.loop).result(30)
        self.station.clock = self.clock
        return self

    def __exit__(self, *exc) -> None:
        async def leave():
            await self._context.__aexit__(None, None, None)

        asyncio.run_coroutine_threadsafe(leave(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
