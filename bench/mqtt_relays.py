"""MQTT relays: how many device reports the gateway's broker link takes per second, and how long a
report takes from the device's publish to the telemetry sink (through the real Mosquitto).

1,000 Shelly channels (250 Pro 4PM) are watched; one publisher plays all devices and sends NotifyStatus
frames at RATE messages/s (QoS 1; default 500/s, i.e. every channel reporting every 2 s). Prints the
rate achieved, p50/p99 publish → sink latency and the CPU time per message (publisher and link in one
process). Needs Mosquitto on 127.0.0.1:1883 (MQTT_URL to change).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time

import paho.mqtt.client as mqtt

from chargeshed.ports.mqtt import BrokerSettings, MqttLink
from chargeshed.ports.shelly import ShellyProtocol

DEVICES = 250
CHANNELS = 4
MESSAGES = int(os.environ.get("MESSAGES", "5000"))
RATE = float(os.environ.get("RATE", "500"))


def main() -> None:
    url = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
    run = f"bench{os.getpid()}"
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def sink(reading):
        if reading.watts is None:
            return
        sequence = int(reading.watts)
        started = sent_at.pop(sequence, None)
        if started is not None:
            latencies.append(time.perf_counter() - started)
            if len(latencies) == MESSAGES:
                done.set()

    settings = BrokerSettings.from_url(url, client_id=f"{run}-gw")
    protocol = ShellyProtocol(settings.client_id)
    link = MqttLink(settings, [protocol], sink)
    link._refresh = _no_refresh  # the bench devices answer no RPC
    for device in range(DEVICES):
        for channel in range(CHANNELS):
            protocol.watch(f"shelly:{run}-{device}/{channel}")
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(_start(link), loop).result(10)
    while not link.connected.is_set():
        time.sleep(0.05)

    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{run}-devices")
    publisher.max_inflight_messages_set(1000)
    publisher.connect(settings.host, settings.port)
    publisher.loop_start()
    cpu_before = time.process_time()
    started = time.perf_counter()
    for sequence in range(1, MESSAGES + 1):
        device, channel = sequence % DEVICES, sequence % CHANNELS
        frame = {
            "src": f"{run}-{device}",
            "dst": f"{run}-{device}/events",
            "method": "NotifyStatus",
            "params": {
                "ts": 1.0,
                f"switch:{channel}": {"id": channel, "apower": sequence, "aenergy": {"total": sequence / 10}},
            },
        }
        pause = started + sequence / RATE - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        sent_at[sequence] = time.perf_counter()
        publisher.publish(f"{run}-{device}/events/rpc", json.dumps(frame), qos=1)
    finished = done.wait(120)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    publisher.disconnect()
    publisher.loop_stop()
    if not finished:
        print(f"only {len(latencies)} of {MESSAGES} reports arrived")
    latencies.sort()
    print(
        f"{len(latencies)} NotifyStatus reports from {DEVICES * CHANNELS} channels at {RATE:.0f}/s asked: "
        f"{len(latencies) / elapsed:,.0f} messages/s taken"
    )
    print(
        f"publish -> sink latency: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms"
    )
    print(f"process CPU (publisher and link together): {cpu / len(latencies) * 1e6:.0f} us per message")


async def _start(link: MqttLink) -> None:
    asyncio.get_running_loop().create_task(link.run())


async def _no_refresh(protocol, target) -> None:
    return None


if __name__ == "__main__":
    main()
