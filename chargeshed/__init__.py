"""ChargeShed: shared e-bike charging sheds for housing compounds."""

from __future__ import annotations

import os

from flask import Flask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(config: dict | None = None) -> Flask:
    """Build the application: configuration, extensions, blueprints, CLI."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("CHARGESHED_INSTANCE", os.path.join(ROOT, "instance")),
        instance_relative_config=True,
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    from chargeshed import config as settings

    app.config.from_mapping(settings.defaults(app.instance_path))
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_mapping(settings.from_environment())
    if config:
        app.config.from_mapping(config)
    app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    settings.check_safe_to_serve(app.config)
    os.makedirs(app.instance_path, exist_ok=True)

    _init_extensions(app)
    _register_blueprints(app)
    from chargeshed import cli

    cli.register(app)
    return app


def _init_extensions(app: Flask) -> None:
    from datetime import timedelta

    from flask_babel import lazy_gettext as _l

    from chargeshed import assets, i18n, models  # noqa: F401  (models: register every table)
    from chargeshed.extensions import babel, csrf, db, htmx, limiter, login_manager, migrate, nest_sqlite_savepoints
    from chargeshed.ports.runtime import init_ports
    from chargeshed.web import hardening, jinja, render_cache, sessions

    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "sqlite":
                nest_sqlite_savepoints(engine)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"))
    csrf.init_app(app)
    babel.init_app(app, locale_selector=i18n.select_locale, default_translation_directories="translations")
    i18n.install_template_gettext(app)
    limiter.init_app(app)
    htmx.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    # Flask-Login's own messages are English literals: ours go through the catalogue, shown in the page's language.
    login_manager.login_message = _l("Please sign in to open this page.")
    login_manager.needs_refresh_message = _l("Please sign in again to continue.")
    login_manager.localize_callback = str
    app.config["REMEMBER_COOKIE_DURATION"] = timedelta(days=app.config["REMEMBER_COOKIE_DURATION_DAYS"])
    app.config["REMEMBER_COOKIE_HTTPONLY"] = True
    app.config["REMEMBER_COOKIE_SAMESITE"] = "Lax"
    app.config["REMEMBER_COOKIE_SECURE"] = app.config["SESSION_COOKIE_SECURE"]

    @login_manager.user_loader
    def load_user(cookie_id: str):
        from flask import g

        from chargeshed.accounts.services import user_by_id, user_for_cookie
        from chargeshed.web.hardening import note_user

        # A revoked cookie, or a deactivated account, is signed out on its very next request. A page
        # that reads its own row along with the user says how in g.read_user (see web/resident.py).
        user = user_for_cookie(cookie_id, g.get("read_user", user_by_id))
        if user is not None:
            note_user(user.id)
        return user

    _install_clock(app)
    init_ports(app)
    jinja.init_app(app)
    render_cache.init_app(app)
    sessions.init_app(app)
    hardening.init_app(app)
    assets.init_app(app)


def _app_clock(app: Flask):
    """The app's clock: app.extensions['clock'] when a test or the demo set one, else real UTC."""
    from chargeshed import timeutil

    def clock():
        fake = app.extensions.get("clock")
        return fake() if fake is not None else timeutil.utcnow()

    return clock


def _clock_pushed(app: Flask, **_extra) -> None:
    """Signal receiver: each app context of a ChargeShed app injects that app's clock into timeutil."""
    from flask import g

    from chargeshed import timeutil

    if "chargeshed_clock" in app.extensions:
        g.setdefault("_clock_tokens", []).append(timeutil.install_clock(app.extensions["chargeshed_clock"]))


def _install_clock(app: Flask) -> None:
    """timeutil.now() follows this app's clock inside its app contexts (timeutil never reads the app)."""
    from flask import appcontext_pushed, g

    from chargeshed import timeutil

    app.extensions["chargeshed_clock"] = _app_clock(app)
    appcontext_pushed.connect(_clock_pushed)

    @app.teardown_appcontext
    def _uninstall_clock(_error=None) -> None:
        for token in reversed(g.pop("_clock_tokens", [])):
            timeutil.reset_clock(token)


def _register_blueprints(app: Flask) -> None:
    from chargeshed.web import (
        auth,
        errors,
        hardware,
        health,
        manage,
        operator,
        passes,
        refunds,
        resident,
        safety,
        safety_report,
        staff,
        stripe_webhook,
    )

    for module in (
        health,
        auth,
        resident,
        passes,
        stripe_webhook,
        manage,
        hardware,
        staff,
        operator,
        refunds,
        safety_report,
        safety,
    ):
        app.register_blueprint(module.bp)
    errors.init_app(app)
