"""Flask's signed-cookie sessions, without the per-request set-up a request without a session never needs."""

from __future__ import annotations

import copy
import time
from functools import lru_cache

from flask import Flask, current_app, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import generate_csrf
from itsdangerous import BadSignature

# Distinct cookie values whose checked contents each process keeps (a signed-in phone sends the same
# cookie on every request until the session changes).
VERIFIED_COOKIES = 1024
# Signed CSRF tokens each process keeps, one per session's raw token and secret.
SIGNED_CSRF_TOKENS = 1024


class CookieSessionInterface(SecureCookieSessionInterface):
    """The same cookies as Flask's, signed the same way.

    The differences are only in cost: the signing serializer is built once per secret key (Flask
    builds it on every request); a request that carries no session cookie gets an empty session
    without reading any key; a cookie value already checked is not checked again (its contents and
    signing time are kept, its age is still checked on every request); an empty, unchanged session is left
    alone on the way out (Flask reads every cookie setting first).
    """

    def __init__(self):
        self._serializer: tuple[tuple, object] | None = None

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._serializer
        if made is None or made[0] != keys:
            made = self._serializer = (keys, super().get_signing_serializer(app))
        return made[1]

    def open_session(self, app: Flask, request):
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        checked = _checked(serializer, value)
        max_age = app.permanent_session_lifetime.total_seconds()
        if checked is None or time.time() - checked[1] > max_age:
            return self.session_class()
        data = checked[0]
        # Each request gets its own copy: a list in it (flashed messages) may be appended to.
        return self.session_class(
            copy.deepcopy(data) if any(isinstance(v, list | dict) for v in data.values()) else data
        )

    def save_session(self, app: Flask, session, response) -> None:
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


@lru_cache(maxsize=VERIFIED_COOKIES)
def _checked(serializer, value: str) -> tuple[dict, float] | None:
    """A cookie's contents and signing time if its signature is good, else None; kept per process."""
    try:
        data, signed_at = serializer.loads(value, return_timestamp=True)
    except BadSignature:
        return None
    return data, signed_at.timestamp()


def csrf_token() -> str:
    """Flask-WTF's CSRF token for this session, signed once per process while tokens never expire.

    Flask-WTF signs the session's token afresh on every request (a timestamp and an HMAC); with
    WTF_CSRF_TIME_LIMIT unset every such signature of the same token stays valid, so the first is
    reused. With a time limit, or before the session has a token, it is Flask-WTF's own call.
    """
    config = current_app.config
    raw = session.get(config["WTF_CSRF_FIELD_NAME"])
    if raw is None or config["WTF_CSRF_TIME_LIMIT"] is not None:
        return generate_csrf()
    return _signed_csrf(config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key, raw)


@lru_cache(maxsize=SIGNED_CSRF_TOKENS)
def _signed_csrf(secret_key: str, raw: str) -> str:
    """generate_csrf() for this secret, in a session whose raw token is `raw` (the cache's key)."""
    return generate_csrf(secret_key=secret_key)


def init_app(app: Flask) -> None:
    """Use these sessions."""
    app.session_interface = CookieSessionInterface()
