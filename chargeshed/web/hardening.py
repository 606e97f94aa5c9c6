"""Security headers, proxy awareness, request ids and structured (JSON) logs.

Behind a TLS-terminating reverse proxy set PROXY_FIX=1 (the number of proxies), so the app
trusts X-Forwarded-Proto/-For/-Host from it: requests then count as HTTPS, HSTS is sent and
the limiter sees the real client address. With PUBLIC_BASE_URL=https://… cookies are Secure.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime

from flask import Flask, abort, request
from flask_login import user_logged_in
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

log = logging.getLogger("chargeshed.request")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Endpoints that take a JSON body; every other endpoint takes forms, and JSON to them is a 415.
JSON_ENDPOINTS = frozenset({"stripe_webhook.webhook", "health.csp_report"})
# Database ids are 32-bit on every engine we run on: a larger <int:...> in a URL is simply not found.
MAX_URL_INT = 2**31 - 1  # chargeshed.web.bounds.INT_MAX
# Where a page leaves the id of the user it served, for the request's log line.
ENVIRON_USER_ID = "chargeshed.user_id"
# The id of the request being served in this thread (None outside one).
_request_id: ContextVar[str | None] = ContextVar("chargeshed_request_id", default=None)
# LogRecord attributes that are not "extra" fields.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def content_security_policy(extra_form_action: str = "") -> str:
    """CSP without 'unsafe-inline': scripts and styles only from our own origin.

    Browsers report what it blocks (with the first characters of a blocked inline style or script)
    to /csp-report, which logs it: a violation seen by a user is found in the logs, not guessed at.
    """
    return (
        "default-src 'self'; script-src 'self' 'report-sample'; style-src 'self' 'report-sample'; "
        f"img-src 'self' data:; connect-src 'self'; form-action 'self'{extra_form_action}; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'; report-uri /csp-report"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def install_request_id_factory() -> None:
    """Stamp every log record made while serving a request with that request's id (once per process).

    Records get the attribute `request_id` this way, so it must not be passed in `extra`.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "stamps_request_id", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = _request_id.get()
        if request_id is not None:
            record.request_id = request_id
        return record

    factory.stamps_request_id = True
    logging.setLogRecordFactory(factory)


class BoundedIntConverter(IntegerConverter):
    """<int:...> that only matches values a database id column can hold (else the route 404s)."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_URL_INT)
        super().__init__(map, *args, **kwargs)


def reject_malformed_input() -> None:
    """Refuse input no form or page can use: NUL characters (PostgreSQL cannot store them), JSON to forms."""
    if "\x00" in request.path or any("\x00" in value for value in request.args.values()):
        abort(400)
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.is_json:
        if request.endpoint not in JSON_ENDPOINTS:
            abort(415)
        return
    if any("\x00" in value for value in request.form.values()):
        abort(400)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current sys.stderr (which test runners and servers may swap)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure_logging(app: Flask) -> None:
    """Send the app's logs (and the worker's) to stderr, as JSON lines unless LOG_FORMAT=text.

    Installed once per process on the root logger. Under TESTING no handler is installed (tests
    read records through pytest's caplog), but records still carry the request id.
    """
    install_request_id_factory()
    root = logging.getLogger()
    if app.testing or any(getattr(handler, "chargeshed", False) for handler in root.handlers):
        return
    # No format of ours (nor gunicorn's) prints the caller's file and line: skip the stack walk that
    # finds them for every record (the logging module's documented switch; it costs about as much
    # as writing the line).
    logging._srcfile = None
    handler = _StderrHandler()
    handler.chargeshed = True
    if app.config.get("LOG_FORMAT", "json") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    logging.getLogger("chargeshed").setLevel(str(app.config.get("LOG_LEVEL", "INFO")).upper())
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)


def init_app(app: Flask) -> None:
    """Add headers to every response, refuse malformed input, log each request with an id.

    Runs before the blueprints are registered, so their <int:...> routes get the bounded converter.
    """
    from chargeshed.extensions import csrf
    from chargeshed.web import bounds, scan_front

    configure_logging(app)
    bounds.init_app(app)
    app.url_map.converters["int"] = BoundedIntConverter
    scan_front.init_app(app)
    stripe_form = " https://checkout.stripe.com" if app.config["PAYMENTS"] == "stripe" else ""
    app.wsgi_app = RequestEdge(
        app.wsgi_app,
        content_security_policy(stripe_form),
        int(app.config.get("HSTS_SECONDS") or 0),
        private_cookies=(app.config["SESSION_COOKIE_NAME"], app.config.get("REMEMBER_COOKIE_NAME", "remember_token")),
    )
    proxies = int(app.config.get("PROXY_FIX") or 0)
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies)
    # Flask-WTF's documented manual mode: the token is checked here, for the methods that change
    # something, instead of in its own hook that inspects every request (a GET included).
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False

    @app.before_request
    def check_request():
        if request.method in app.config["WTF_CSRF_METHODS"] and app.config["WTF_CSRF_ENABLED"]:
            csrf.protect(apply_exemptions=True)
        reject_malformed_input()

    @user_logged_in.connect_via(app)
    def _log_who_signed_in(_app, user, **_extra) -> None:
        note_user(user.id)


def note_user(user_id: int) -> None:
    """Name the signed-in user in this request's log line (the user loader and sign-in call it)."""
    request.environ[ENVIRON_USER_ID] = user_id


class RequestEdge:
    """WSGI middleware around the whole app (inside any proxy fix): what every response gets.

    Each request gets an id (the caller's X-Request-Id if well formed), which every log record made
    while it is served carries and the response sends back; every response gets the security
    headers it did not set itself (and HSTS over HTTPS when configured), and "private, no-store"
    when the request carries a session (or the response starts one) unless the page chose its own
    caching; every request is logged in one line when its response starts. Done on the WSGI status
    and header list, so a page answered in front of Flask (web/scan_front.py) gets exactly the same
    as one Flask renders.
    """

    def __init__(self, wsgi_app, csp: str, hsts_seconds: int = 0, private_cookies: tuple[str, ...] = ()):
        self.wsgi_app = wsgi_app
        self.private_cookies = private_cookies
        self.always = tuple(
            (name.lower(), name, value)
            for name, value in (
                ("Content-Security-Policy", csp),
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "same-origin"),
                ("X-Frame-Options", "DENY"),
                ("Cross-Origin-Opener-Policy", "same-origin"),
                ("Permissions-Policy", "camera=(), geolocation=(), microphone=()"),
            )
        )
        self.hsts = f"max-age={hsts_seconds}; includeSubDomains" if hsts_seconds else None

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        token = _request_id.set(request_id)

        def respond(status, headers, exc_info=None):
            sent = {name.lower(): value for name, value in headers}
            headers = [header for header in headers if header[0].lower() != "x-request-id"]
            headers += [(name, value) for lowered, name, value in self.always if lowered not in sent]
            if self.hsts and environ.get("wsgi.url_scheme") == "https" and "strict-transport-security" not in sent:
                headers.append(("Strict-Transport-Security", self.hsts))
            if "cache-control" not in sent and ("set-cookie" in sent or self._carries_session(environ)):
                # A page for someone signed in (or being signed in) is personal: no browser or proxy
                # may keep a copy.
                headers.append(("Cache-Control", "private, no-store"))
            headers.append(("X-Request-Id", request_id))
            size = sent.get("content-length")
            log_request(
                environ.get("REQUEST_METHOD", ""),
                _logged_path(environ),
                int(status[:3]),
                environ.get("REMOTE_ADDR"),
                environ.get(ENVIRON_USER_ID),
                int(size) if size and size.isdigit() else None,
                started,
            )
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, respond)
        finally:
            _request_id.reset(token)

    def _carries_session(self, environ) -> bool:
        """Whether the request sends a session or remember-me cookie."""
        cookies = environ.get("HTTP_COOKIE")
        if not cookies:
            return False
        return any(part.split("=", 1)[0].strip() in self.private_cookies for part in cookies.split(";"))


def _logged_path(environ) -> str:
    """The request's path as Flask's request.path gives it (WSGI carries it as latin-1 text)."""
    path = environ.get("PATH_INFO", "") or "/"
    return path if path.isascii() else path.encode("latin-1").decode("utf-8", "replace")


def request_id_for(offered: str) -> str:
    """The id a request is logged under: the caller's X-Request-Id if well formed, else a new one."""
    return offered if REQUEST_ID_RE.match(offered) else secrets.token_hex(8)


def log_request(
    method: str,
    path: str,
    status: int,
    remote: str | None,
    user_id: int | None,
    size: int | None,
    started: float,
) -> None:
    """The one log line of a served request (`started`: its time.perf_counter() on arrival)."""
    log.info(
        "request",
        extra={
            "method": method,
            "path": path,
            "status": status,
            "remote": remote,
            "user_id": user_id,
            "bytes": size,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
