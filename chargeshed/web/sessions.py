"""Flask's signed-cookie sessions, without the per-request set-up a request without a session never needs."""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface


class CookieSessionInterface(SecureCookieSessionInterface):
    """The same cookies as Flask's, signed the same way.

    Two differences, both only in cost: the signing serializer is built once per secret key (Flask
    builds it on every request), and a request that carries no session cookie gets an empty session
    without reading any key. An empty, unchanged session is left alone on the way out (Flask reads
    every cookie setting first).
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
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session, response) -> None:
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    """Use these sessions."""
    app.session_interface = CookieSessionInterface()
