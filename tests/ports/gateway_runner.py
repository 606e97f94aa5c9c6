"""The gateway process (MQTT adapters only) on its own thread and event loop, for tests."""

from __future__ import annotations

import asyncio
import threading

from tests.ports.emulators.base import BROKER_HOST, BROKER_PORT, unique, wait_for


class GatewayRunner:
    """`flask gateway` as tests run it: the app's gateway with the Shelly and Tasmota adapters on the
    real broker, on the test's clock. `flush()` waits until everything reported so far is stored."""

    def __init__(self, app, clock):
        from chargeshed.ports.gateway import Gateway
        from chargeshed.ports.mqtt import adapters

        app.config.update(MQTT_URL=f"mqtt://{BROKER_HOST}:{BROKER_PORT}", MQTT_CLIENT_ID=unique("gw"))
        self.gateway = Gateway(
            app, adapters(app.config), gateway_id=unique("gw"), clock=clock, poll_seconds=0.1, heartbeat_seconds=5
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.gateway.serve(),), name="gateway", daemon=True
        )
        self.thread.start()
        assert self.gateway.ready.wait(20), "the gateway did not start"
        hub = self.gateway.adapters["shelly"].hub
        wait_for(lambda: hub.link is not None and hub.link.connected.is_set(), 15, "the gateway's broker link")

    def flush(self) -> None:
        """Wait until everything reported so far is stored."""
        asyncio.run_coroutine_threadsafe(self.gateway.flush(), self.loop).result(20)

    def stop(self) -> None:
        """SIGTERM's path: close the adapters, store what is queued, return."""
        self.gateway.stop()
        self.thread.join(20)
        self.loop.close()
