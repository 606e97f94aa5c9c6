"""The reference for the pay-page benchmark: Flask + Flask-SQLAlchemy, one query, one small template.

Served by gunicorn exactly like ChargeShed (`reference_app:create_app()`), on the same database:
GET /p/<code> reads one port row and renders a page of similar size. Nothing else (no session,
no CSRF, no translations, no logging): what a page costs with the bare stack.
"""

from __future__ import annotations

import os

from flask import Flask, abort
from flask_sqlalchemy import SQLAlchemy
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

    return app
