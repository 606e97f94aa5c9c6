"""Language choice: the resident's saved choice, a cookie, else zh_CN."""

from __future__ import annotations

from functools import cache

from babel import Locale
from flask import current_app, request
from flask_login import current_user

LANG_COOKIE = "lang"


@cache
def parsed_locale(code: str) -> Locale:
    """The babel Locale for a configured language code, parsed once per process."""
    return Locale.parse(code)


def select_locale() -> Locale:
    """Flask-Babel locale selector; returns a parsed Locale so Flask-Babel does not parse it again."""
    languages = current_app.config["LANGUAGES"]
    chosen = request.cookies.get(LANG_COOKIE) if request else None
    if chosen not in languages:
        locale = getattr(current_user, "locale", None) if current_user else None
        chosen = locale if locale in languages else current_app.config["BABEL_DEFAULT_LOCALE"]
    return parsed_locale(chosen)
