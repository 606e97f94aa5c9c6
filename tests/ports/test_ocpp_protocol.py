"""The OCPP 1.6J central system against a station built on the ocpp library's client side, over real
sockets; the database side is an in-memory backend so these tests look only at the protocol."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import subprocess
from datetime import datetime

import pytest
from ocpp.exceptions import PropertyConstraintViolationError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chargeshed.ports.ocpp import (
    BadFrame,
    CentralSystem,
    CommandRefused,
    MeterSample,
    Started,
    StationNotConnected,
    parse_meter_values,
    stop_reason,
    tls_context,
)
from tests.ports.ocpp_station import NoProfileStation, stamp, station_connected, url

KEY = "0123456789abcdef0123"


class MemoryBackend:
    """Records what the central system reports; knows one station with two connectors."""

    def __init__(self):
        self.keys = {"CP1": KEY, "CP2": KEY}
        self.connectors = 2
        self.links: list[tuple[str, bool]] = []
        self.statuses: list[tuple] = []
        self.samples: list[tuple] = []
        self.stops: list[tuple] = []
        self.issued_tags = {"S1"}
        self.transactions: dict[tuple, int] = {}
        self.refused_profiles: list[str] = []

    async def check_key(self, cp_id, key):
        return self.keys.get(cp_id) == key

    async def link(self, cp_id, online, at):
        self.links.append((cp_id, online))

    def _connector(self, connector, allow_zero=False):
        if not (0 if allow_zero else 1) <= connector <= self.connectors:
            raise BadFrame(f"unknown connector {connector}")

    async def status(self, cp_id, connector, status, error_code, at):
        self._connector(connector, allow_zero=True)
        self.statuses.append((cp_id, connector, status, error_code))

    async def authorize(self, cp_id, id_tag):
        return id_tag in self.issued_tags

    async def start_transaction(self, cp_id, connector, id_tag, meter_start_wh, at):
        self._connector(connector)
        key = (cp_id, connector, id_tag, meter_start_wh, at)
        transaction = self.transactions.setdefault(key, 100 + len(self.transactions))
        return Started(transaction, id_tag in self.issued_tags)

    async def meter_values(self, cp_id, connector, transaction_id, samples):
        self._connector(connector, allow_zero=True)
        self.samples.append((cp_id, connector, transaction_id, samples))

    async def stop_transaction(self, cp_id, transaction_id, meter_stop_wh, at, reason, samples):
        if transaction_id not in self.transactions.values():
            return False
        self.stops.append((cp_id, transaction_id, meter_stop_wh, at, reason, samples))
        return True

    async def profiles_refused(self, cp_id, at):
        self.refused_profiles.append(cp_id)

    async def profiles_taken(self, cp_id):
        self.refused_profiles.remove(cp_id)


def run(scenario, backend=None, **options):
    """Run `scenario(system, port)` against a central system listening on an ephemeral port."""
    backend = backend or MemoryBackend()

    async def main():
        system = CentralSystem(backend, **options)
        await system.start("127.0.0.1", 0)
        try:
            return await asyncio.wait_for(scenario(system, system.port), 30)
        finally:
            await system.close()

    return asyncio.run(main())


async def until(condition, timeout=5.0):
    """Wait for a condition the other side makes true."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


def test_boot_is_accepted_and_metering_is_configured_after_the_reply():
    backend = MemoryBackend()

    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY) as station:
            booted = await station.boot()
            assert booted.status == "Accepted" and booted.interval == 60
            interval = await station.next_asked("ChangeConfiguration")
            sampled = await station.next_asked("ChangeConfiguration")
            assert interval == {"key": "MeterValueSampleInterval", "value": "60"}
            assert sampled == {
                "key": "MeterValuesSampledData",
                "value": "Energy.Active.Import.Register,Power.Active.Import",
            }
            beat = await station.call(__import__("ocpp.v16.call", fromlist=["Heartbeat"]).Heartbeat())
            assert beat.current_time.endswith("Z")
            await station.status(0, "Available")
            await station.status(2, "Charging")
        await until(lambda: ("CP1", False) in backend.links)

    run(scenario, backend)
    assert ("CP1", True) in backend.links
    assert backend.statuses == [("CP1", 0, "Available", "NoError"), ("CP1", 2, "Charging", "NoError")]


@pytest.mark.parametrize(
    "cp_id, key, path_id",
    [
        ("CP1", "wrong-key-000000000", "CP1"),  # wrong AuthorizationKey
        ("CP9", KEY, "CP9"),  # charge point never registered
        ("CP2", KEY, "CP1"),  # username is another station than the path
        ("CP1", None, "CP1"),  # no credentials at all
    ],
)
def test_wrong_credentials_are_refused_at_the_handshake(cp_id, key, path_id, caplog):
    async def scenario(system, port):
        auth = f"{cp_id}:{key}@" if key else ""
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{auth}127.0.0.1:{port}/ocpp/{path_id}", subprotocols=["ocpp1.6"])
        return refused.value.response.status_code

    with caplog.at_level(logging.WARNING, "chargeshed.ports.ocpp"):
        assert run(scenario) == 401
    assert "refused at the handshake" in caplog.text


def test_a_client_without_the_ocpp_subprotocol_or_on_another_path_is_refused():
    async def scenario(system, port):
        with pytest.raises(InvalidStatus) as no_protocol:
            await connect(url(port, "CP1", KEY))
        with pytest.raises(InvalidStatus) as elsewhere:
            await connect(f"ws://CP1:{KEY}@127.0.0.1:{port}/other/CP1", subprotocols=["ocpp1.6"])
        return no_protocol.value.response.status_code, elsewhere.value.response.status_code

    assert run(scenario) == (400, 404)


def test_malformed_and_schema_invalid_frames_get_a_call_error_and_the_connection_stays(caplog):
    async def scenario(system, port):
        async with connect(url(port, "CP1", KEY), subprotocols=["ocpp1.6"]) as ws:
            answers = []
            for frame in (
                "this is not json",
                json.dumps({"not": "a list"}),
                json.dumps([2, "7", "Heartbeat"]),
                json.dumps([2, "8", "StartTransaction", {"connectorId": 1}]),
                json.dumps(
                    [
                        2,
                        "9",
                        "StartTransaction",
                        {"connectorId": "one", "idTag": "S1", "meterStart": 1, "timestamp": stamp()},
                    ]
                ),
                json.dumps([2, "10", "NoSuchAction", {}]),
            ):
                await ws.send(frame)
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            await ws.send(json.dumps([2, "11", "Heartbeat", {}]))
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            return answers

    with caplog.at_level(logging.WARNING, "chargeshed.ports.ocpp"):
        answers = run(scenario)
    assert [a[0] for a in answers] == [4, 4, 4, 4, 4, 4, 3]
    assert answers[0][1:3] == ["-1", "FormationViolation"]
    assert answers[2][1:3] == ["7", "FormationViolation"]
    assert answers[3][1] == "8" and answers[3][2] in (
        "OccurenceConstraintViolation",
        "FormationViolation",
        "OccurrenceConstraintViolation",
        "ProtocolError",
    )
    assert answers[4][1] == "9" and answers[4][2] in ("TypeConstraintViolation", "FormationViolation")
    assert answers[5][1:3] == ["10", "NotSupported"]
    assert answers[6][1] == "11" and answers[6][2]["currentTime"]
    assert "malformed OCPP frame from CP1" in caplog.text
    assert "StartTransaction from CP1 refused" in caplog.text


def test_a_repeated_start_transaction_gets_the_same_id_and_an_unknown_tag_is_invalid():
    async def scenario(system, port):
        at = datetime(2026, 12, 1, 8, 0, 0)
        async with station_connected(port, "CP1", KEY) as station:
            first = await station.start_transaction(1, "S1", 1200, at)
        async with station_connected(port, "CP1", KEY) as station:  # after a reconnect, sent again
            again = await station.start_transaction(1, "S1", 1200, at)
            stranger = await station.start_transaction(2, "NOBODY", 50, at)
        return first, again, stranger

    first, again, stranger = run(scenario)
    assert first.id_tag_info["status"] == "Accepted"
    assert again.transaction_id == first.transaction_id
    assert stranger.id_tag_info["status"] == "Invalid" and stranger.transaction_id != first.transaction_id


def test_the_newest_connection_wins_and_commands_reach_it():
    backend = MemoryBackend()

    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY) as old:
            async with station_connected(port, "CP1", KEY) as new:
                await until(lambda: old._connection.state.name == "CLOSED")
                await system.remote_start("CP1", 2, "S1")
                assert await new.next_asked("RemoteStartTransaction") == {"id_tag": "S1", "connector_id": 2}
                assert old.asked.empty()
                assert list(system.stations) == ["CP1"]
        await until(lambda: not system.stations)
        with pytest.raises(StationNotConnected):
            await system.remote_stop("CP1", 100)

    run(scenario, backend)
    # The replaced connection's end did not mark the station offline while the new one was up.
    assert backend.links[-1] == ("CP1", False)
    assert backend.links.count(("CP1", False)) == 1


def test_commands_are_sent_and_refusals_and_silence_are_reported():
    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY) as station:
            await system.remote_stop("CP1", 100)
            assert await station.next_asked("RemoteStopTransaction") == {"transaction_id": 100}
            assert await system.change_availability("CP1", 1, False) == "Accepted"
            assert (await station.next_asked("ChangeAvailability"))["type"] == "Inoperative"
            assert await system.change_configuration("CP1", "HeartbeatInterval", "120") == "Accepted"
            await system.trigger_message("CP1", "StatusNotification", 1)
            assert (await station.next_asked("TriggerMessage"))["requested_message"] == "StatusNotification"
            station.answer = "Rejected"
            with pytest.raises(CommandRefused):
                await system.remote_start("CP1", 1, "S1")
            station.silent = True
            with pytest.raises(TimeoutError):
                await system.remote_start("CP1", 1, "S1")

    run(scenario, call_timeout=0.5)


@pytest.mark.parametrize("refusal", ["Rejected", "NotSupported", "NotImplemented"])
def test_a_station_refusing_charging_profiles_is_started_without_one_from_then_on(refusal, caplog):
    backend = MemoryBackend()

    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY, station_cls=NoProfileStation) as station:
            station.refusal = refusal
            first = await system.remote_start("CP1", 1, "S1", cap_seconds=3600)
            second = await system.remote_start("CP1", 2, "S2", cap_seconds=3600)
            return first, second, station.profiles

    with caplog.at_level(logging.WARNING, logger="chargeshed.ports.ocpp"):
        first, second, profiles = run(scenario, backend)
    # Refused with the cap, accepted once more without; the next start goes without it at once.
    assert (first, second) == (False, False)
    assert profiles[0]["charging_profile_purpose"] == "TxProfile"
    assert profiles[1:] == [None, None]
    assert backend.refused_profiles == ["CP1"]
    assert [r.answer for r in caplog.records if getattr(r, "event", "") == "ocpp.no_profiles"] == [refusal]


def test_a_start_refused_with_and_without_a_profile_fails_and_profiles_stay_on():
    backend = MemoryBackend()

    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY) as station:
            station.answer = "Rejected"
            with pytest.raises(CommandRefused):
                await system.remote_start("CP1", 1, "S1", cap_seconds=3600)
            station.answer = "Accepted"
            assert await system.remote_start("CP1", 1, "S1", cap_seconds=3600) is True
            return station.profiles

    profiles = run(scenario, backend)
    # A station that is busy (not one without profiles) refuses both; its next start still carries the cap.
    assert [p is not None for p in profiles] == [True, False, True]
    assert backend.refused_profiles == []


def test_meter_values_are_read_tolerantly():
    backend = MemoryBackend()

    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY) as station:
            await station.meter(
                1,
                0,
                wh=6.294,
                w=182,
                unit="kWh",
                extra=[
                    {"value": "231", "measurand": "Voltage", "unit": "V"},
                    {"value": "12", "measurand": "Some.Vendor.Thing", "context": "Odd"},
                ],
            )
            await station.meter(1, None, wh=6300)
            await station.meter(2, 100, w=0.4)

    run(scenario, backend)
    assert [(c, t, [(s.energy_wh, s.watts) for s in samples]) for _, c, t, samples in backend.samples] == [
        (1, None, [(6294, 182)]),
        (1, None, [(6300, None)]),
        (2, 100, [(None, 0)]),
    ]


def test_bad_input_is_refused_with_a_clear_log_line_and_moves_nothing(caplog):
    backend = MemoryBackend()

    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY) as station:
            with pytest.raises(PropertyConstraintViolationError):
                await station.start_transaction(7, "S1", 0)  # no connector 7
            with pytest.raises(PropertyConstraintViolationError):
                await station.start_transaction(1, "S1", -5)  # negative meter
            with pytest.raises(PropertyConstraintViolationError):
                await station.meter(1, None, wh=-3)
            with pytest.raises(PropertyConstraintViolationError):
                await station.meter(9, None, wh=3)
            # A stop for a transaction we never issued is accepted (else the station retries it for ever).
            assert await station.stop_transaction(4242, 900, "Local") is not None
            await station.call(__import__("ocpp.v16.call", fromlist=["Heartbeat"]).Heartbeat())

    with caplog.at_level(logging.WARNING, "chargeshed.ports.ocpp"):
        run(scenario, backend)
    assert backend.stops == [] and backend.samples == [] and backend.transactions == {}
    assert "unknown connector 7" in caplog.text and "negative meterStart -5" in caplog.text
    assert "transaction 4242 we never issued" in caplog.text


def test_queued_offline_messages_are_all_accepted_in_order_with_their_own_timestamps():
    backend = MemoryBackend()
    t0 = datetime(2026, 12, 1, 8, 0, 0)

    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY) as station:
            started = await station.start_transaction(1, "S1", 1000, t0)
        # Offline for a while; on reconnect the station delivers its queue in order.
        async with station_connected(port, "CP1", KEY) as station:
            await station.meter(1, started.transaction_id, wh=1100, w=200, at=t0.replace(minute=30))
            data = [
                {
                    "timestamp": stamp(t0.replace(hour=9)),
                    "sampledValue": [
                        {
                            "value": "1.25",
                            "unit": "kWh",
                            "measurand": "Energy.Active.Import.Register",
                            "context": "Transaction.End",
                        },
                        {"value": "3", "measurand": "Current.Offered"},
                    ],
                }
            ]
            stopped = await station.stop_transaction(
                started.transaction_id, 1250, "EVDisconnected", t0.replace(hour=9), data
            )
        return started, stopped

    started, stopped = run(scenario, backend)
    assert stopped is not None
    [(cp_id, transaction, meter_stop, at, reason, samples)] = backend.stops
    assert (transaction, meter_stop, at, reason) == (started.transaction_id, 1250, t0.replace(hour=9), "unplugged")
    assert samples == [MeterSample(t0.replace(hour=9), 1250, None, "Transaction.End")]
    assert backend.samples[0][3][0].at == t0.replace(minute=30)


def test_stop_reasons_map_to_our_end_reasons():
    assert [
        stop_reason(r)
        for r in (
            None,
            "Local",
            "Remote",
            "EVDisconnected",
            "PowerLoss",
            "EmergencyStop",
            "Other",
            "Firmware says what",
        )
    ] == ["local", "local", "remote", "unplugged", "power_loss", "fault", "other", "other"]


def test_parse_meter_values_sums_phases_and_skips_garbage():
    samples = parse_meter_values(
        [
            {
                "timestamp": "2026-12-01T08:00:00+08:00",
                "sampled_value": [
                    {"value": "100", "measurand": "Power.Active.Import", "phase": "L1"},
                    {"value": "50", "measurand": "Power.Active.Import", "phase": "L2"},
                    {"value": "NaN"},
                    {"value": "x"},
                ],
            },
            {"timestamp": "garbage", "sampled_value": [{"value": "17"}]},
            "not a dict",
        ],
        default_at=datetime(2026, 1, 1),
    )
    assert samples == [
        MeterSample(datetime(2026, 12, 1, 0, 0), None, 150, ""),
        MeterSample(datetime(2026, 1, 1), 17, None, ""),
    ]


def test_a_closed_socket_during_a_command_reports_the_station_gone():
    async def scenario(system, port):
        async with station_connected(port, "CP1", KEY) as station:
            station.silent = True
            pending = asyncio.create_task(system.remote_start("CP1", 1, "S1"))
            await station.next_asked("RemoteStartTransaction")
            await station._connection.close()
            with pytest.raises((StationNotConnected, TimeoutError, ConnectionClosed)):
                await pending

    run(scenario, call_timeout=3)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_security_profile_2_tls_1_2_with_the_key_checked_as_before(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificate")
    cert, key = tmp_path / "cs.pem", tmp_path / "cs.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    trusted = ssl.create_default_context(cafile=str(cert))
    old_tls = ssl.create_default_context(cafile=str(cert))
    old_tls.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old_tls.maximum_version = ssl.TLSVersion.TLSv1_1

    async def main():
        system = CentralSystem(MemoryBackend())
        await system.start("127.0.0.1", 0, ssl=tls_context(str(cert), str(key)))
        port = system.port
        try:
            async with connect(
                f"wss://CP1:{KEY}@localhost:{port}/ocpp/CP1", subprotocols=["ocpp1.6"], ssl=trusted
            ) as ws:
                await ws.send(json.dumps([2, "1", "Heartbeat", {}]))
                assert json.loads(await ws.recv())[0] == 3
                assert ws.protocol.state.name == "OPEN"
            with pytest.raises(InvalidStatus):
                await connect(f"wss://CP1:wrong@localhost:{port}/ocpp/CP1", subprotocols=["ocpp1.6"], ssl=trusted)
            with pytest.raises((ssl.SSLError, OSError)):
                await connect(f"wss://CP1:{KEY}@localhost:{port}/ocpp/CP1", subprotocols=["ocpp1.6"], ssl=old_tls)
            with pytest.raises(Exception):  # noqa: B017  (plain ws:// to a TLS port: no websocket at all)
                await connect(url(port, "CP1", KEY), subprotocols=["ocpp1.6"], open_timeout=5)
        finally:
            await system.close()

    asyncio.run(asyncio.wait_for(main(), 60))
