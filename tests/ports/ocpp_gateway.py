"""A real gateway process body (chargeshed.ports.gateway.Gateway with the OCPP adapter) running in a
thread of its own, on the test's app and clock, listening on an ephemeral port."""

from __future__ import annotations

import asyncio
import threading

from chargeshed.ports.gateway import Gateway
from chargeshed.ports.ocpp_adapter import OcppAdapter


class RunningGateway:
    """`with RunningGateway(app, clock) as gateway:` … `gateway.port`, `await gateway.flush()`."""

    def __init__(self, app, clock=None, *, gateway_id: str = "gw-test", call_timeout: float = 3):
        self.app = app
        self.adapter = OcppAdapter("127.0.0.1", 0, call_timeout=call_timeout, stats_seconds=0)
        options = {"clock": clock} if clock is not None else {}
        self.gateway = Gateway(app, [self.adapter], gateway_id=gateway_id, poll_seconds=0.2, **options)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name=f"gateway-{gateway_id}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            await self.gateway.serve()

        try:
            asyncio.run(main())
        except BaseException as exc:  # shown by __exit__
            self.error = exc

    def __enter__(self) -> RunningGateway:
        self.thread.start()
        if not self.gateway.ready.wait(30):
            raise RuntimeError(f"gateway did not start: {self.error!r}")
        return self

    @property
    def port(self) -> int:
        """The OCPP listening port."""
        return self.adapter.system.port

    async def flush(self) -> None:
        """Wait (from another event loop) until everything the gateway was told is stored."""
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.gateway.flush(), self.loop))

    def stop(self) -> None:
        """Stop as on SIGTERM and wait for the thread."""
        self.gateway.stop()
        self.thread.join(60)

    def __exit__(self, *exc) -> None:
        if self.thread.is_alive():
            self.stop()
        assert self.error is None, self.error
