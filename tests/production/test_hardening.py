"""Security headers, HTTPS behind a proxy, cookie flags, request ids and structured logs."""

from __future__ import annotations

import json
import logging

import pytest

from chargeshed.config import from_environment, normalise_database_url
from chargeshed.web.hardening import JsonFormatter


def test_every_page_sends_the_security_headers(client, make_site):
    make_site()
    for path in ("/p/T11001", "/login", "/nope"):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in headers  # plain HTTP: HSTS would be meaningless


def test_hsts_only_over_https_and_a_forwarded_proto_is_believed_only_behind_proxy_fix(app, client):
    assert "Strict-Transport-Security" in client.get("/healthz", base_url="https://localhost").headers
    spoofed = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in spoofed.headers  # no trusted proxy configured

    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1)  # what PROXY_FIX=1 installs
    proxied = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_proxy_fix_setting_trusts_one_proxy(tmp_path):
    from chargeshed import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "PROXY_FIX": 1})
    response = app.test_client().get("/healthz", headers={"X-Forwarded-Proto": "https",
                                                          "X-Forwarded-For": "203.0.113.9"})
    assert "Strict-Transport-Security" in response.headers


def test_cookies_are_secure_httponly_and_samesite_when_served_over_https(app, client, make_resident):
    app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True)
    user = make_resident()
    response = client.post("/login", base_url="https://localhost",
                           data={"login": user.login, "password": "secret-pass", "remember": "y"})
    assert response.status_code == 302
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    for name in ("session", "remember_token"):
        flags = cookies[name].lower()
        assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags, cookies[name]


def test_an_https_public_url_turns_secure_cookies_on_unless_told_otherwise():
    assert from_environment({"PUBLIC_BASE_URL": "https://charge.example.cn"})["SESSION_COOKIE_SECURE"] is True
    assert from_environment({"PUBLIC_BASE_URL": "https://charge.example.cn",
                             "SESSION_COOKIE_SECURE": "0"})["SESSION_COOKIE_SECURE"] is False
    assert "SESSION_COOKIE_SECURE" not in from_environment({"PUBLIC_BASE_URL": "http://127.0.0.1:5000"})


@pytest.mark.parametrize("given, expected", [
    ("postgres://u:p@db/cs", "postgresql+psycopg://u:p@db/cs"),
    ("postgresql://u@db:5433/cs", "postgresql+psycopg://u@db:5433/cs"),
    ("postgresql+psycopg://u@db/cs", "postgresql+psycopg://u@db/cs"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_database_urls_without_a_driver_use_psycopg(given, expected):
    assert normalise_database_url(given) == expected


def test_each_request_is_logged_with_its_id(client, caplog):
    caplog.set_level(logging.INFO, logger="chargeshed.request")
    response = client.get("/healthz", headers={"X-Request-Id": "edge-7f3a"})
    assert response.headers["X-Request-Id"] == "edge-7f3a"
    record = next(r for r in caplog.records if r.name == "chargeshed.request")
    assert (record.request_id, record.method, record.path) == ("edge-7f3a", "GET", "/healthz")
    assert record.status == 200
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "edge-7f3a" and line["status"] == 200 and line["msg"] == "request"


@pytest.mark.parametrize("offered", ["a b", "x" * 65, "id\"} {\"level\": \"forged", "é"])
def test_an_unusable_request_id_is_replaced(client, offered):
    answered = client.get("/healthz", headers={"X-Request-Id": offered}).headers["X-Request-Id"]
    assert answered != offered and len(answered) == 16 and answered.isalnum()


def test_money_events_are_logged_with_session_user_and_ledger_ids(client, make_site, make_resident, login,
                                                                  caplog):
    caplog.set_level(logging.INFO)
    make_site()
    me = login(make_resident(balance_fen=1000))
    started = client.post("/p/T11001/start", headers={"X-Request-Id": "start-1"})
    session_id = int(started.headers["Location"].rsplit("/", 1)[1])
    client.post(f"/s/{session_id}/stop", headers={"X-Request-Id": "stop-1"})
    events = {getattr(r, "event", None): r for r in caplog.records if getattr(r, "event", None)}
    start, end = events["session.start"], events["session.fail"]  # stopped before the port confirmed
    assert (start.session_id, start.user_id, start.hold_fen, start.ledger_ref) == (session_id, me.id, 300,
                                                                                    f"hold:{session_id}")
    assert start.request_id == "start-1" and end.request_id == "stop-1"
    assert (end.ledger_ref, end.refund_fen, end.cost_fen) == (f"settle:{session_id}", 300, 0)


def test_json_and_nul_bytes_sent_to_forms_are_refused_not_crashed(client, make_site, make_resident, login):
    make_site()
    login(make_resident(balance_fen=1000))
    assert client.post("/p/T11001/start", json=[None]).status_code == 415
    assert client.post("/bikes", data={"plate": "湘B\x0012345"}).status_code == 400
    assert client.get("/p/T11001", query_string={"next": "\x00"}).status_code == 400
    assert client.get(f"/s/{2**31}").status_code == 404  # beyond any id column: not found, not an overflow


def test_the_json_formatter_writes_one_parseable_line_with_extras_and_exceptions():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("chargeshed.x", logging.ERROR, __file__, 1, "failed %s", ("here",),
                                   sys.exc_info())
    record.session_id = 12
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["msg"] == "failed here" and line["session_id"] == 12 and "ValueError: boom" in line["exc"]
