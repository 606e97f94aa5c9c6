"""Time helpers: the database stores naive UTC; pages show the compound's local time.

`now()` is the application's clock. It knows nothing of Flask: whoever runs the code installs a clock
with `use_clock()` (the app factory does it for every app context, reading `app.extensions['clock']`
so tests and the demo can set a fake one); the worker, the gateway and the CLI run under the app's
context, and plain scripts may call `use_clock()` themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

Clock = Callable[[], datetime]
_clock: ContextVar[Clock | None] = ContextVar("chargeshed_clock", default=None)


def utcnow() -> datetime:
    """Current time as naive UTC (the storage convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_local(moment: datetime | None) -> datetime | None:
    """A stored naive-UTC datetime as an aware Asia/Shanghai datetime."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC).astimezone(LOCAL_TZ)


def now() -> datetime:
    """The installed clock's time (see `use_clock`), else utcnow()."""
    clock = _clock.get()
    return clock() if clock is not None else utcnow()


def install_clock(clock: Clock | None) -> Token:
    """Make `clock` the answer of now() in the current context; returns the token for `reset_clock`."""
    return _clock.set(clock)


def reset_clock(token: Token) -> None:
    """Undo an `install_clock`."""
    _clock.reset(token)


@contextmanager
def use_clock(clock: Clock | None) -> Iterator[None]:
    """now() answers from `clock` inside the block."""
    token = install_clock(clock)
    try:
        yield
    finally:
        reset_clock(token)
