"""A device's MQTT connection for the emulators: a paho client with a last will, that can drop like a
device losing power or Wi-Fi (the socket closed without DISCONNECT, so the broker sends the will)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 1883
_serial = itertools.count(1)


def unique(name: str) -> str:
    """A topic-safe name unique to this test run (other tests share the broker)."""
    return f"{name}-{os.getpid()}-{next(_serial)}-{time.monotonic_ns() % 10**8}"


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll until `condition()` is truthy (returns it); fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class DeviceConnection:
    """Connects, subscribes, publishes; `drop()` cuts the socket so the broker publishes the will."""

    def __init__(
        self,
        client_id: str,
        will: tuple[str, str],
        subscriptions: list[str],
        on_message,
        on_connected,
        host: str = BROKER_HOST,
        port: int = BROKER_PORT,
    ):
        self.client_id = client_id
        self.will = will
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.on_connected = on_connected
        self.host, self.port = host, port
        self.client: mqtt.Client | None = None
        self.ready = threading.Event()

    def connect(self) -> None:
        """Connect (blocking until subscribed and announced)."""
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True, reconnect_on_failure=False
        )
        client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        self.ready.clear()

        def connected(client, userdata, flags, reason_code, properties):
            for topic in self.subscriptions:
                client.subscribe(topic, qos=1)
            self.on_connected()
            self.ready.set()

        client.on_connect = connected
        client.on_message = lambda client, userdata, message: self.on_message(message.topic, message.payload)
        self.client = client
        client.connect(self.host, self.port, keepalive=5)
        client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError(f"{self.client_id} could not connect to the broker")

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 (silently dropped while offline, like a device's)."""
        client = self.client
        if client is None:
            return
        info = client.publish(topic, payload, qos=1, retain=retain)
        if threading.current_thread() is not getattr(client, "_thread", None):
            info.wait_for_publish(5)  # never inside paho's own callbacks: its thread delivers the ack

    def drop(self) -> None:
        """Lose the connection abruptly: no DISCONNECT, so the broker publishes the last will."""
        client, self.client = self.client, None
        if client is None:
            return
        client.loop_stop()
        sock = client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Disconnect cleanly (end of test)."""
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
