"""Language choice: the resident's saved choice, a cookie, else zh_CN."""

from __future__ import annotations

from flask import current_app, request
from flask_login import current_user

LANG_COOKIE = "lang"


def select_locale() -> str:
    """Flask-Babel locale selector."""
    languages = current_app.config["LANGUAGES"]
    chosen = request.cookies.get(LANG_COOKIE) if request else None
    if chosen in languages:
        return chosen
    if current_user and getattr(current_user, "locale", None) in languages:
        return current_user.locale
    return current_app.config["BABEL_DEFAULT_LOCALE"]
