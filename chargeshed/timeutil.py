"""Time helpers: the database stores naive UTC; pages show the compound's local time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    """Current time as naive UTC (the storage convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_local(moment: datetime | None) -> datetime | None:
    """A stored naive-UTC datetime as an aware Asia/Shanghai datetime."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC).astimezone(LOCAL_TZ)


def now() -> datetime:
    """The app's clock (tests and demos may install one as app.extensions['clock']), else utcnow()."""
    from flask import current_app, has_app_context

    if has_app_context():
        clock = current_app.extensions.get("clock")
        if clock is not None:
            return clock()
    return utcnow()
