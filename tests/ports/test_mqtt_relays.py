"""Shelly Gen2+ and Tasmota relays through the real Mosquitto, against emulated devices."""

from __future__ import annotations

import asyncio
import socket

import pytest

from chargeshed.ports import shelly, tasmota
from chargeshed.ports.mqtt import BrokerSettings, CommandRejected, CommandUnanswered, MeterCounter, split_target
from tests.ports.emulators.base import unique, wait_for
from tests.ports.emulators.shelly import ShellyEmulator
from tests.ports.emulators.tasmota import TasmotaEmulator

# Pure parts ---------------------------------------------------------------------------------------


def test_targets_split_into_device_and_channel():
    assert split_target("shelly:shellypro4pm-a8032ab12345/3") == ("shelly", "shellypro4pm-a8032ab12345", 3)
    assert split_target("shelly:site/shed1/pro4pm/0") == ("shelly", "site/shed1/pro4pm", 0)
    assert tasmota.parse_target("tasmota:pow-12") == ("pow-12", 1)
    assert tasmota.parse_target("tasmota:dual-r3/2") == ("dual-r3", 2)
    for bad in ("shelly:nochannel", "shelly:", "pow-12", "tasmota:#/1"):
        with pytest.raises(ValueError):
            (shelly.parse_target if bad.startswith("shelly") else tasmota.parse_target)(bad)


def test_pulse_time_is_seconds_plus_100_and_capped():
    assert tasmota.pulse_time_value(4 * 3600) == 14_500
    assert tasmota.pulse_time_value(12) == 112
    assert tasmota.pulse_time_value(5) == 50  # under 12 s: tenths of a second
    assert tasmota.pulse_time_value(30 * 3600) == 64_900  # the longest Tasmota knows: 18 h
    assert tasmota.pulse_time_value(None) == 0


def test_a_meter_that_goes_back_is_rebased_never_negative_nor_counted_twice():
    meter = MeterCounter()
    assert meter.update("t", 1000.0) == 1000.0
    assert meter.update("t", 1150.0) == 1150.0
    assert meter.update("t", 1100.0) == 1150.0  # Tasmota restarted at its last saved total
    assert meter.update("t", 1150.0) == 1200.0
    # A gateway restart: the stored total is the floor; a lower first figure adds nothing.
    restarted = MeterCounter()
    restarted.floor("t", 1200.0)
    assert restarted.update("t", 1180.0) == 1200.0
    assert restarted.update("t", 1190.0) == 1210.0


def test_broker_settings_from_url_and_config():
    plain = BrokerSettings.from_url("mqtt://127.0.0.1:1883", client_id="gw")
    assert (plain.host, plain.port, plain.tls, plain.username, plain.tls_context()) == (
        "127.0.0.1",
        1883,
        False,
        None,
        None,
    )
    secure = BrokerSettings.from_config({"MQTT_URL": "mqtts://gw%40shed:s3cret@broker.example", "MQTT_CLIENT_ID": "g"})
    assert (secure.host, secure.port, secure.tls, secure.username, secure.password) == (
        "broker.example",
        8883,
        True,
        "gw@shed",
        "s3cret",
    )
    assert secure.tls_context() is not None
    override = BrokerSettings.from_config({"MQTT_URL": "mqtt://h", "MQTT_USERNAME": "u", "MQTT_PASSWORD": "p"})
    assert (override.username, override.password) == ("u", "p")
    assert override.client_id.startswith("chargeshed-")
    with pytest.raises(ValueError):
        BrokerSettings.from_url("http://127.0.0.1")


# Shelly ------------------------------------------------------------------------------------------


def test_shelly_switch_on_with_cap_readings_flow_and_switch_off(mqtt_link, devices):
    runner, readings = mqtt_link()
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    port = shelly.target(device.prefix, 2)
    runner.call(runner.link.watch(port))
    runner.wait_connected()
    readings.wait(port, "online", True)

    device.plug(2, 180.0)
    runner.call(runner.link.switch(port, True, cap_seconds=4 * 3600))
    request = device.calls()[-1]
    assert request["method"] == "Switch.Set"
    assert request["params"] == {"id": 2, "on": True, "toggle_after": 14_400}
    assert request["src"] == runner.link.client_id
    readings.wait(port, "relay_on", True)

    device.advance(3600)
    readings.wait(port, "meter_wh", 180.0)
    assert readings.latest(port, "watts") == 180.0
    assert readings.latest(port, "temperature_c") == 38.5
    assert readings.latest(port, "fault") == ""
    # Only the watched channel is reported: the other three are someone else's business.
    assert {r.target for r in readings} == {port}

    runner.call(runner.link.switch(port, False))
    assert device.calls()[-1]["params"] == {"id": 2, "on": False}
    readings.wait(port, "relay_on", False)
    assert readings.latest(port, "watts") == 0.0


def test_shelly_rpc_errors_and_silence_are_told_apart(mqtt_link, devices):
    runner, readings = mqtt_link(timeout=1.0)
    device = ShellyEmulator(unique("shellyplusplugs"), channels=1).connect()
    devices.append(device)
    runner.wait_connected()
    with pytest.raises(CommandRejected, match="not found"):
        runner.call(runner.link.switch(shelly.target(device.prefix, 5), True, cap_seconds=60))
    # Nobody behind this prefix: the request is never answered.
    with pytest.raises(CommandUnanswered):
        runner.call(runner.link.switch(shelly.target(unique("nobody"), 0), True, cap_seconds=60))


def test_shelly_replies_are_matched_by_id_when_several_are_in_flight(mqtt_link, devices):
    runner, readings = mqtt_link()
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    targets = [shelly.target(device.prefix, channel) for channel in range(4)]
    runner.wait_connected()

    async def all_at_once():
        protocol = runner.link.protocols["shelly"]
        return await asyncio.gather(
            *(protocol.call(runner.link, device.prefix, "Switch.GetStatus", {"id": c}) for c in (3, 1, 0, 2))
        )

    for target in targets:
        runner.call(runner.link.watch(target))
    results = runner.call(all_at_once())
    assert [result["id"] for result in results] == [3, 1, 0, 2]


def test_shelly_cap_ends_the_charge_while_offline_and_the_meter_bills_when_it_returns(mqtt_link, devices):
    runner, readings = mqtt_link()
    device = ShellyEmulator(unique("shellyplusplugs"), channels=1, model="shellyplusplugs").connect()
    devices.append(device)
    port = shelly.target(device.prefix, 0)
    runner.call(runner.link.watch(port))
    runner.wait_connected()
    device.plug(0, 200.0)
    runner.call(runner.link.switch(port, True, cap_seconds=2 * 3600))
    device.advance(1800)
    readings.wait(port, "meter_wh", 100.0)

    device.go_offline()  # the broker publishes the retained last will
    readings.wait(port, "online", False)
    with pytest.raises(CommandUnanswered, match="offline"):
        runner.call(runner.link.switch(port, False))
    device.advance(3 * 3600)  # offline: toggle_after opens the relay after the paid 2 h
    assert device.switches[0].output is False

    device.come_back()
    readings.wait(port, "online", True)
    readings.wait(port, "meter_wh", 400.0)  # 2 h at 200 W, nothing after the cap
    assert readings.latest(port, "relay_on") is False


def test_shelly_counter_reset_by_reboot_mid_charge(mqtt_link, devices):
    runner, readings = mqtt_link()
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    port = shelly.target(device.prefix, 0)
    runner.call(runner.link.watch(port))
    runner.wait_connected()
    device.switches[0].energy_wh = 5000.0  # the counter had been running long before this charge
    device.plug(0, 240.0)
    runner.call(runner.link.switch(port, True, cap_seconds=3600 * 6))
    device.advance(3600)
    readings.wait(port, "meter_wh", 5240.0)

    device.reboot()  # counter back to 0, relay open
    readings.wait(port, "meter_wh", 0.0)
    runner.call(runner.link.switch(port, True, cap_seconds=3600 * 5))
    device.advance(1800)
    readings.wait(port, "meter_wh", 120.0)
    # Shelly's counter is passed as the device says (since boot): the telemetry store counts from 0
    # after a drop, so the 5240 before and the 120 after are each billed once.
    assert [r.meter_wh for r in readings.of(port) if r.meter_wh is not None][-1] == 120.0


def test_shelly_overpower_is_a_fault(mqtt_link, devices):
    runner, readings = mqtt_link()
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    port = shelly.target(device.prefix, 1)
    runner.call(runner.link.watch(port))
    runner.wait_connected()
    runner.call(runner.link.switch(port, True, cap_seconds=600))
    device.overpower(1)
    readings.wait(port, "fault", "overload")
    assert readings.latest(port, "relay_on") is False


def test_malformed_payloads_are_logged_and_ignored(mqtt_link, devices, caplog):
    runner, readings = mqtt_link()
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    plug = TasmotaEmulator(unique("pow")).connect()
    devices.extend([device, plug])
    port, relay = shelly.target(device.prefix, 0), tasmota.target(plug.topic)
    runner.call(runner.link.watch(port))
    runner.call(runner.link.watch(relay))
    runner.wait_connected()
    readings.wait(port, "online", True)
    readings.wait(relay, "online", True)

    caplog.set_level("WARNING", logger="chargeshed.ports.mqtt")
    device.publish_raw("events/rpc", b"{not json")
    device.publish_raw("status/switch:0", b'{"apower": "lots"}')
    device.publish_raw("status/switch:0", b"[1, 2]")
    device.publish_raw("online", b"maybe")
    device.publish_raw("events/rpc", b'{"method": "NotifyStatus", "params": []}')
    plug.publish_raw(f"tele/{plug.topic}/SENSOR", b'{"ENERGY": {"Total": "x"}}')
    plug.publish_raw(f"tele/{plug.topic}/SENSOR", b"\xff\xfe")
    plug.publish_raw(f"stat/{plug.topic}/POWER", b"HALF")
    runner.call(runner.link.publish(f"{runner.link.client_id}/rpc", b'{"result": {}}'))
    wait_for(lambda: len([r for r in caplog.records if "malformed" in r.getMessage()]) >= 9, what="nine log lines")

    # The link is still alive and reading.
    device.plug(0, 90.0)
    runner.call(runner.link.switch(port, True, cap_seconds=600))
    device.advance(600)
    readings.wait(port, "meter_wh", 15.0)
    assert all(r.watts is None or isinstance(r.watts, float) for r in readings)


# Tasmota -----------------------------------------------------------------------------------------


def test_tasmota_pulse_time_then_power_on_sensor_readings_and_off(mqtt_link, devices):
    runner, readings = mqtt_link()
    plug = TasmotaEmulator(unique("sonoff-pow")).connect()
    devices.append(plug)
    port = tasmota.target(plug.topic)
    runner.call(runner.link.watch(port))
    runner.wait_connected()
    readings.wait(port, "online", True)

    plug.plug(1, 150.0)
    runner.call(runner.link.switch(port, True, cap_seconds=3 * 3600))
    assert plug.switching == [("PulseTime1", "10900"), ("POWER1", "ON")]  # the cap is set before switching on
    readings.wait(port, "relay_on", True)
    plug.advance(2 * 3600)
    readings.wait(port, "meter_wh", 300.0)
    assert readings.latest(port, "watts") == 150.0

    runner.call(runner.link.switch(port, False))
    assert plug.switching[-1] == ("POWER1", "OFF")
    readings.wait(port, "relay_on", False)


def test_tasmota_second_relay_of_a_two_channel_meter(mqtt_link, devices):
    runner, readings = mqtt_link()
    plug = TasmotaEmulator(unique("dual-r3"), relays=2).connect()
    devices.append(plug)
    port = tasmota.target(plug.topic, 2)
    runner.call(runner.link.watch(port))
    runner.wait_connected()
    plug.plug(1, 500.0)  # someone else's load on relay 1
    plug.plug(2, 100.0)
    runner.call(runner.link.switch(port, True, cap_seconds=3600))
    plug.advance(1800)
    readings.wait(port, "meter_wh", 50.0)
    assert readings.latest(port, "watts") == 100.0
    assert {r.target for r in readings} == {port}


def test_tasmota_pulse_time_ends_the_charge_offline_and_it_bills_on_return(mqtt_link, devices):
    runner, readings = mqtt_link()
    plug = TasmotaEmulator(unique("sonoff-pow")).connect()
    devices.append(plug)
    port = tasmota.target(plug.topic)
    runner.call(runner.link.watch(port))
    runner.wait_connected()
    plug.plug(1, 120.0)
    runner.call(runner.link.switch(port, True, cap_seconds=3600))
    plug.go_offline()
    readings.wait(port, "online", False)  # LWT Offline, retained, from the broker
    plug.advance(5 * 3600)
    assert plug.relays[0].on is False  # PulseTime opened it after the paid hour

    plug.come_back()
    readings.wait(port, "online", True)
    plug.sensor()
    readings.wait(port, "meter_wh", 120.0)


def test_tasmota_reboot_going_back_to_the_saved_total_is_not_billed_twice(mqtt_link, devices):
    runner, readings = mqtt_link()
    plug = TasmotaEmulator(unique("sonoff-pow")).connect()
    devices.append(plug)
    port = tasmota.target(plug.topic)
    runner.call(runner.link.watch(port))
    runner.wait_connected()
    plug.plug(1, 200.0)
    runner.call(runner.link.switch(port, True, cap_seconds=4 * 3600))
    plug.advance(3600)
    plug.save_totals()
    plug.advance(1800)
    readings.wait(port, "meter_wh", 300.0)
    plug.reboot()  # the device total goes back to 200 Wh
    plug.sensor()
    readings.wait(port, "device_meter_wh", 200.0)
    runner.call(runner.link.switch(port, True, cap_seconds=3600))
    plug.advance(1800)
    readings.wait(port, "device_meter_wh", 300.0)
    assert readings.latest(port, "meter_wh") == 400.0  # 300 before, 100 after


def test_tasmota_unknown_command_and_max_power(mqtt_link, devices):
    runner, readings = mqtt_link()
    plug = TasmotaEmulator(unique("sonoff-pow")).connect()
    devices.append(plug)
    runner.wait_connected()
    with pytest.raises(CommandRejected):
        runner.call(runner.link.switch(tasmota.target(plug.topic, 3), True, cap_seconds=60))
    port = tasmota.target(plug.topic)
    runner.call(runner.link.switch(port, True, cap_seconds=600))
    plug.plug(1, 2400.0)
    plug.max_power_reached(1)
    readings.wait(port, "fault", "overload")
    assert readings.latest(port, "relay_on") is False


# The broker itself -------------------------------------------------------------------------------


def test_broker_down_means_backoff_and_reconnect_not_a_crash(mqtt_link, devices, broker, caplog):
    """A TCP relay in front of Mosquitto stands in for the broker: closed, the link retries; back, it works."""
    relay = _TcpRelay(broker)
    caplog.set_level("WARNING", logger="chargeshed.ports.mqtt")
    runner, readings = mqtt_link(port=relay.port, min_backoff=0.05, max_backoff=0.2)
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    devices.append(device)
    port = shelly.target(device.prefix, 0)
    runner.call(runner.link.watch(port))
    runner.wait_connected()

    relay.stop()  # broker gone: connections cut, new ones refused
    wait_for(lambda: not runner.link.connected.is_set(), what="the link to notice")
    with pytest.raises(CommandUnanswered):
        runner.call(runner.link.switch(port, True, cap_seconds=60))
    wait_for(lambda: len([r for r in caplog.records if "retrying" in r.getMessage()]) >= 2, what="retries")

    relay.start()
    runner.wait_connected(connections=2)
    device.plug(0, 60.0)
    runner.call(runner.link.switch(port, True, cap_seconds=600))
    device.advance(600)
    readings.wait(port, "meter_wh", 10.0)  # subscriptions came back with the connection
    relay.stop()


class _TcpRelay:
    """Forwards a local ephemeral port to the broker; stop() closes everything, start() listens again."""

    def __init__(self, broker):
        self.broker = broker
        self.port = 0
        self.server = None
        self.pipes: list[socket.socket] = []
        self.start()

    def start(self):
        import threading

        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen()
        self.port = server.getsockname()[1]
        self.server = server

        def accept():
            while True:
                try:
                    client, _ = server.accept()
                except OSError:
                    return
                upstream = socket.create_connection(self.broker)
                self.pipes += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        if self.server is not None:
            try:
                self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
            except OSError:
                pass
            self.server.close()
            self.server = None
        for s in self.pipes:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self.pipes = []
