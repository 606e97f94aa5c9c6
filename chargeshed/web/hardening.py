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
from datetime import UTC, datetime

from flask import Flask, abort, g, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

log = logging.getLogger("chargeshed.request")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Endpoints that take a JSON body; every other endpoint takes forms, and JSON to them is a 415.
JSON_ENDPOINTS = frozenset({"stripe_webhook.webhook", "health.csp_report"})
# Database ids are 32-bit on every engine we run on: a larger <int:...> in a URL is simply not found.
MAX_URL_INT = 2**31 - 1  # chargeshed.web.bounds.INT_MAX
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
        if has_request_context():
            record.request_id = g.get("request_id", "")
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
    from chargeshed.web import bounds, scan_front

    configure_logging(app)
    bounds.init_app(app)
    app.url_map.converters["int"] = BoundedIntConverter
    scan_front.init_app(app)
    proxies = int(app.config.get("PROXY_FIX") or 0)
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies)
    stripe_form = " https://checkout.stripe.com" if app.config["PAYMENTS"] == "stripe" else ""
    csp = content_security_policy(stripe_form)
    hsts_seconds = int(app.config.get("HSTS_SECONDS") or 0)

    @app.before_request
    def start_request():
        g.request_id = request_id_for(request.headers.get("X-Request-Id", ""))
        g.request_started = time.perf_counter()
        reject_malformed_input()

    # Sent on every response unless the view set its own; built once.
    always = tuple(
        (name, name.lower(), value)
        for name, value in (
            ("Content-Security-Policy", csp),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "same-origin"),
            ("X-Frame-Options", "DENY"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
            ("Permissions-Policy", "camera=(), geolocation=(), microphone=()"),
        )
    )

    @app.after_request
    def secure_headers(response):
        headers = response.headers
        present = {name.lower() for name in headers.keys()}
        for name, lowered, value in always:
            if lowered not in present:
                headers.add(name, value)
        if "cache-control" not in present and request.endpoint != "static" and _signed_in():
            # Pages of a signed-in person carry personal data: no browser or proxy may keep a copy.
            headers["Cache-Control"] = "private, no-store"
        if hsts_seconds and request.is_secure:
            headers.setdefault("Strict-Transport-Security", f"max-age={hsts_seconds}; includeSubDomains")
        headers["X-Request-Id"] = g.get("request_id", "")
        if "request_started" in g:
            log_request(
                request.method,
                request.path,
                response.status_code,
                request.remote_addr,
                _user_id(),
                response.calculate_content_length(),
                g.request_started,
            )
        return response


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
    **extra,
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
            **extra,
        },
    )


def _signed_in() -> bool:
    """True when a user is signed in, or the request's cookies name one (checked without the database)."""
    from flask import session

    if getattr(g.get("_login_user"), "is_authenticated", False):
        return True
    return "_user_id" in session or "remember_token" in request.cookies


def _user_id() -> int | None:
    """The signed-in user's id if Flask-Login already loaded one for this request (no extra query)."""
    user = g.get("_login_user")
    return getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
