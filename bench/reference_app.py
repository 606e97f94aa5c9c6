"""The reference for the pay-page benchmark: Flask + Flask-SQLAlchemy, one query, one small template.

Served by gunicorn exactly like ChargeShed (`reference_app:create_app()`), on the same database:
GET /p/<code> reads one port row and renders a page of similar size. Nothing else (no session,
no CSRF, no translations, no logging): what a page costs with the bare stack.

GET /signed/p/<code> is the same page for a signed-in user with the bare stack's sign-in: Flask's
session cookie, Flask-Login loading the user (one query by id), the port row with the user's wallet
balance (one query) and a Flask-WTF CSRF token for the page's form. `/signed/login/<id>` signs in.
"""

from __future__ import annotations

import os

from flask import Flask, abort
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import generate_csrf
from sqlalchemy import text

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ port.shed }} · {{ port.number }}</title><link rel="stylesheet" href="/static/css/app.css"></head>
<body><header class="top"><a class="brand" href="/">ChargeShed</a></header><main>
<section class="card port-id"><p class="site">{{ port.site }}</p><h1 class="shed">{{ port.shed }}</h1>
<p class="portno">Port <strong>{{ port.number }}</strong></p><p class="label">{{ port.label }}</p>
<p class="code small">Code {{ port.code }}</p>
<p class="state" data-state="{{ port.state }}">{{ port.state }}</p>
</section>{% for line in lines %}<p class="small">{{ line }}</p>{% endfor %}</main></body></html>"""
LINES = ["Plug in your charger first, then press Start."] * 12


def create_app() -> Flask:
    """The reference app on DATABASE_URL."""
    from chargeshed.config import normalise_database_url

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(os.environ["DATABASE_URL"])
    db = SQLAlchemy(app)
    page = app.jinja_env.from_string(PAGE)  # compiled once, as Flask caches file templates
    query = text(
        "SELECT port.code, port.number, port.label, port.ocpp_state AS state, shed.name AS shed, "
        "site.name AS site FROM port JOIN shed ON shed.id = port.shed_id "
        "JOIN site ON site.id = shed.site_id WHERE port.code = :code"
    )

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.get("/p/<code>")
    def port_page(code: str):
        port = db.session.execute(query, {"code": code.upper()}).first()
        if port is None:
            abort(404)
        return page.render(port=port, lines=LINES)

    _add_signed_in_page(app, db, query)
    return app


class _User(UserMixin):
    def __init__(self, user_id: int):
        self.id = user_id


def _add_signed_in_page(app: Flask, db: SQLAlchemy, query) -> None:
    """The signed-in variant: session, Flask-Login's user load, balance and a CSRF token."""
    app.config["SECRET_KEY"] = "reference-secret"
    logins = LoginManager(app)
    user_query = text('SELECT id FROM "user" WHERE id = :id')
    with_balance = text(
        str(query).replace(
            " FROM port", ", (SELECT balance_fen FROM ledger_account WHERE code = :wallet) AS balance FROM port"
        )
    )
    signed_page = app.jinja_env.from_string(
        PAGE.replace(
            "</main>",
            '<p>{{ port.balance }}</p><form method="post"><input type="hidden" name="csrf_token" '
            'value="{{ csrf }}"><button>Start</button></form></main>',
        )
    )

    @logins.user_loader
    def load(user_id: str):
        row = db.session.execute(user_query, {"id": int(user_id)}).first()
        return _User(row.id) if row else None

    @app.get("/signed/login/<int:user_id>")
    def sign_in(user_id: int):
        login_user(_User(user_id))
        return "ok"

    @app.get("/signed/p/<code>")
    @login_required
    def signed_port_page(code: str):
        port = db.session.execute(with_balance, {"code": code.upper(), "wallet": f"wallet:{current_user.id}"}).first()
        if port is None:
            abort(404)
        return signed_page.render(port=port, lines=LINES, csrf=generate_csrf())
