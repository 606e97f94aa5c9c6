"""Template filters and globals shared by every page."""

from __future__ import annotations

from flask import Flask
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from chargeshed.money.format import format_fen
from chargeshed.timeutil import to_local

END_REASONS = {
    "full": _l("Full"),
    "time_up": _l("Time used up"),
    "hold_exhausted": _l("Prepaid amount used up"),
    "unplugged": _l("Unplugged"),
    "overload": _l("Overload – power too high"),
    "overheat": _l("Overheat – the port cut the power"),
    "user_stop": _l("Stopped by you"),
    "staff_stop": _l("Stopped by staff"),
    "port_fault": _l("Port fault"),
    "offline": _l("Port went offline"),
    "start_failed": _l("Start failed"),
    "over_pass_tier": _l("Power above the monthly pass's tier"),
}

# A port's fault code in words (codes a device reports as it names them are shown as they are).
FAULT_WORDS = {
    "overload": _l("Overload cut-off"),
    "overheat": _l("Overheat"),
    "stuck_relay": _l("Stuck relay (power on with no charge)"),
}


def fault_words(fault: str | None) -> str:
    """A fault code (possibly several, comma-separated) in words: "overload" → 过载断电."""
    if not fault:
        return ""
    return ", ".join(str(FAULT_WORDS.get(code, code.replace("_", " "))) for code in fault.split(",") if code)


# A whole OCPP station's own state (StatusNotification on connector 0), in words.
STATION_STATES = {
    "Available": _l("Station working"),
    "Faulted": _l("Station fault"),
    "Unavailable": _l("Station disabled"),
}


def station_words(state: str | None) -> str:
    """A station's reported state in words; an unknown word is shown as the station sent it."""
    if not state:
        return "–"
    return str(STATION_STATES.get(state, state))


SESSION_STATES = {
    "pending": _l("Starting…"),
    "charging": _l("Charging"),
    "ended": _l("Ended"),
    "failed": _l("Did not start"),
}

PORT_STATES = {
    "free": _l("Free"),
    "charging": _l("Charging"),
    "occupied": _l("Occupied – bike still plugged in"),
    "fault": _l("Fault"),
    "offline": _l("Offline"),
    "maintenance": _l("Under maintenance"),
    "retired": _l("Retired"),
}


def local_time(moment, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format a stored UTC time in the compound's time zone."""
    local = to_local(moment)
    return local.strftime(fmt) if local else "–"


def duration(seconds: int) -> str:
    """Seconds as H:MM:SS."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def duration_words(seconds: int) -> str:
    """A duration in words, never as a clock: "12 小时", "1 小时 5 分钟", "45 分钟", "30 秒"."""
    seconds = max(0, int(seconds))
    hours, minutes = seconds // 3600, seconds % 3600 // 60
    if hours and minutes:
        return _("%(h)s h %(m)s min", h=hours, m=minutes)
    if hours:
        return _("%(h)s h", h=hours)
    if minutes:
        return _("%(m)s min", m=minutes)
    return _("%(s)s s", s=seconds)


def init_app(app: Flask) -> None:
    """Register filters and globals."""
    app.jinja_env.filters["yuan"] = format_fen
    app.jinja_env.filters["localtime"] = local_time
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["duration_words"] = duration_words
    app.jinja_env.filters["fault_words"] = fault_words
    app.jinja_env.filters["station_words"] = station_words
    app.jinja_env.globals.update(
        get_locale=get_locale, END_REASONS=END_REASONS, SESSION_STATES=SESSION_STATES, PORT_STATES=PORT_STATES
    )


def warm_up(app: Flask) -> None:
    """Compile every template and load every language's catalogue, once, in this process.

    The web server calls it in its master before forking workers, so a worker (and each one
    recycled later) serves its first pages as fast as its thousandth, and shares the result.
    """
    from flask_babel import force_locale, get_translations

    for name in app.jinja_env.list_templates(extensions=["html", "txt", "svg", "xml"]):
        app.jinja_env.get_template(name)
    if "babel" in app.extensions:
        with app.test_request_context("/"):
            for language in app.config.get("LANGUAGES", ()):
                with force_locale(language):
                    get_translations()
