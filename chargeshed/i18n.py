"""Language choice: the resident's saved choice, a cookie, else zh_CN."""

from __future__ import annotations

from functools import cache

from babel import Locale
from flask import Flask, current_app, g, request
from flask_babel import get_translations
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


def current_translations():
    """The current request's translations, looked up once per locale in use and then reused.

    Flask-Babel resolves the domain, locale and catalogue on every call; a page makes dozens of
    calls. The cache sits on Flask-Babel's own per-request namespace and is keyed by the locale
    object itself, so `force_locale` (which swaps that object) is still obeyed.
    """
    ctx = getattr(g, "_flask_babel", None) if g else None
    locale = getattr(ctx, "babel_locale", None)
    cached = getattr(ctx, "chargeshed_translations", None)
    if locale is not None and cached is not None and cached[0] is locale:
        return cached[1]
    translations = get_translations()
    ctx = getattr(g, "_flask_babel", None) if g else None
    if ctx is not None and getattr(ctx, "babel_locale", None) is not None:
        ctx.chargeshed_translations = (ctx.babel_locale, translations)
    return translations


def install_template_gettext(app: Flask) -> None:
    """Templates translate through `current_translations` (same catalogues, same Markup escaping)."""
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: current_translations().ugettext(s),
        ngettext=lambda s, p, n: current_translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: current_translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: current_translations().unpgettext(c, s, p, n),
    )
