"""Security headers, HTTPS behind a proxy, cookie flags, request ids and structured logs."""

from __future__ import annotations

import json
import logging

import pytest

from chargeshed.config import from_environment, normalise_database_url
from chargeshed.extensions import db
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
    response = app.test_client().get(
        "/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    )
    assert "Strict-Transport-Security" in response.headers


def test_cookies_are_secure_httponly_and_samesite_when_served_over_https(app, client, make_resident):
    app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True)
    user = make_resident()
    response = client.post(
        "/login", base_url="https://localhost", data={"login": user.login, "password": "secret-pass", "remember": "y"}
    )
    assert response.status_code == 302
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    for name in ("session", "remember_token"):
        flags = cookies[name].lower()
        assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags, cookies[name]


def test_an_https_public_url_turns_secure_cookies_on_unless_told_otherwise():
    assert from_environment({"PUBLIC_BASE_URL": "https://charge.example.cn"})["SESSION_COOKIE_SECURE"] is True
    assert (
        from_environment({"PUBLIC_BASE_URL": "https://charge.example.cn", "SESSION_COOKIE_SECURE": "0"})[
            "SESSION_COOKIE_SECURE"
        ]
        is False
    )
    assert "SESSION_COOKIE_SECURE" not in from_environment({"PUBLIC_BASE_URL": "http://127.0.0.1:5000"})


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgres://u:p@db/cs", "postgresql+psycopg://u:p@db/cs"),
        ("postgresql://u@db:5433/cs", "postgresql+psycopg://u@db:5433/cs"),
        ("postgresql+psycopg://u@db/cs", "postgresql+psycopg://u@db/cs"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
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


def test_each_request_is_logged_with_who_made_it(client, make_site, make_resident, caplog):
    make_site()
    me = make_resident(balance_fen=1000)
    caplog.set_level(logging.INFO, logger="chargeshed.request")
    client.get("/p/T11001", headers={"X-Request-Id": "before"})
    client.post("/login", data={"login": me.login, "password": "secret-pass"}, headers={"X-Request-Id": "login"})
    client.get("/p/T11001", headers={"X-Request-Id": "after"})
    client.get("/p/%E6%97%A0", headers={"X-Request-Id": "unknown"})
    logged = {r.request_id: r for r in caplog.records if r.name == "chargeshed.request"}
    assert [logged[i].user_id for i in ("before", "login", "after")] == [None, me.id, me.id]
    assert (logged["login"].method, logged["login"].status) == ("POST", 302)
    assert (logged["unknown"].path, logged["unknown"].status) == ("/p/无", 404)


@pytest.mark.parametrize("offered", ["a b", "x" * 65, 'id"} {"level": "forged', "é"])
def test_an_unusable_request_id_is_replaced(client, offered):
    answered = client.get("/healthz", headers={"X-Request-Id": offered}).headers["X-Request-Id"]
    assert answered != offered and len(answered) == 16 and answered.isalnum()


def test_money_events_are_logged_with_session_user_and_ledger_ids(client, make_site, make_resident, login, caplog):
    caplog.set_level(logging.INFO)
    make_site()
    me = login(make_resident(balance_fen=1000))
    started = client.post("/p/T11001/start", headers={"X-Request-Id": "start-1"})
    session_id = int(started.headers["Location"].rsplit("/", 1)[1])
    client.post(f"/s/{session_id}/stop", headers={"X-Request-Id": "stop-1"})
    events = {getattr(r, "event", None): r for r in caplog.records if getattr(r, "event", None)}
    start, end = events["session.start"], events["session.fail"]  # stopped before the port confirmed
    assert (start.session_id, start.user_id, start.hold_fen, start.ledger_ref) == (
        session_id,
        me.id,
        300,
        f"hold:{session_id}",
    )
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

        record = logging.LogRecord("chargeshed.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    record.session_id = 12
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["msg"] == "failed here" and line["session_id"] == 12 and "ValueError: boom" in line["exc"]


# --- Starting safely -------------------------------------------------------------------------------


def _production_config(tmp_path, **overrides) -> dict:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "CHARGESHED_ENV": "production",
        "SECRET_KEY": "a-real-secret-from-the-environment",
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379",
        **overrides,
    }


def test_the_app_refuses_to_start_outside_demo_with_the_built_in_key_or_a_per_process_limit(tmp_path):
    from chargeshed import create_app
    from chargeshed.config import DEFAULT_SECRET_KEY

    with pytest.raises(RuntimeError, match="SECRET_KEY is not set"):
        create_app(_production_config(tmp_path, SECRET_KEY=DEFAULT_SECRET_KEY))
    with pytest.raises(RuntimeError, match="SECRET_KEY is not set"):
        create_app(_production_config(tmp_path, SECRET_KEY=""))
    with pytest.raises(RuntimeError, match="RATELIMIT_STORAGE_URI is memory://"):
        create_app(_production_config(tmp_path, RATELIMIT_STORAGE_URI="memory://"))
    assert create_app(_production_config(tmp_path)).config["SECRET_KEY"] != DEFAULT_SECRET_KEY
    demo = create_app(
        _production_config(
            tmp_path, CHARGESHED_ENV="demo", SECRET_KEY=DEFAULT_SECRET_KEY, RATELIMIT_STORAGE_URI="memory://"
        )
    )
    assert demo.config["SECRET_KEY"] == DEFAULT_SECRET_KEY


def test_gunicorn_exits_with_a_clear_message_when_no_secret_key_is_set(tmp_path):
    import subprocess

    from tests.production.live import FLASK, ROOT, free_port, process_env

    env = process_env(
        f"sqlite:///{tmp_path / 'g.db'}",
        str(tmp_path / "instance"),
        CHARGESHED_ENV="production",
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379",
    )
    del env["SECRET_KEY"]
    result = subprocess.run(
        FLASK + ["serve", "--gunicorn", "--workers", "1", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "refuses to start: SECRET_KEY is not set" in result.stdout + result.stderr


def test_gunicorn_believes_no_forwarded_proto_without_proxy_fix(tmp_path):
    from tests.production.live import Browser, WebServer, process_env

    env = process_env(f"sqlite:///{tmp_path / 'g.db'}", str(tmp_path / "instance"))
    server = WebServer(env, str(tmp_path / "web.log"), workers=1, threads=2).start()
    try:
        reply = Browser(server.base).request("GET", "/healthz", headers={"X-Forwarded-Proto": "https"})
    finally:
        server.stop()
    assert "Strict-Transport-Security" not in reply.headers


# --- Sign-in guessing ------------------------------------------------------------------------------


def _limited_app(tmp_path, storage: str, prefix: str = ""):
    from chargeshed import create_app
    from chargeshed.extensions import db

    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'limit.sqlite3'}",
            "SECRET_KEY": "test",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": storage,
            "RATELIMIT_KEY_PREFIX": prefix,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def test_guesses_at_one_account_from_many_addresses_are_limited_too(tmp_path):
    app = _limited_app(tmp_path, "memory://")
    client = app.test_client()
    statuses = [
        client.post(
            "/login",
            data={"login": "13800000001", "password": f"guess{n}"},
            environ_base={"REMOTE_ADDR": f"203.0.113.{n}"},
        ).status_code
        for n in range(11)
    ]
    assert statuses[:10] == [200] * 10 and statuses[10] == 429
    # Another account from a fresh address is not affected.
    other = client.post(
        "/login", data={"login": "13800000002", "password": "x"}, environ_base={"REMOTE_ADDR": "198.51.100.1"}
    )
    assert other.status_code == 200


def test_two_web_processes_share_the_sign_in_limit_through_redis(tmp_path):
    import secrets

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except redis.RedisError:
        from tests.conftest import skip_or_fail

        skip_or_fail("Redis not reachable at 127.0.0.1:6379")
    prefix = f"test-{secrets.token_hex(6)}"
    workers = [_limited_app(tmp_path, "redis://127.0.0.1:6379", prefix) for _ in range(2)]
    clients = [worker.test_client() for worker in workers]
    statuses = [
        clients[n % 2].post("/login", data={"login": "admin", "password": f"guess{n}"}).status_code for n in range(12)
    ]
    assert statuses[:10] == [200] * 10 and statuses[10:] == [429, 429]


# --- Caching and errors ----------------------------------------------------------------------------


def test_pages_of_a_signed_in_person_are_never_stored(client, make_site, make_resident, login):
    make_site()
    anonymous = client.get("/p/T11001")
    assert "no-store" not in anonymous.headers.get("Cache-Control", "")
    me = login(make_resident(balance_fen=1000))
    started = client.post("/p/T11001/start")
    session_path = started.headers["Location"]
    for path in (
        "/",
        "/wallet",
        "/history",
        session_path,
        "/wallet/cashout",
        "/bikes",
        "/p/T11001",
        "/account/password",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "private, no-store", path
    assert client.get("/static/css/app.css").headers.get("Cache-Control") != "private, no-store"
    assert me.id


def test_a_signed_in_visitor_gets_our_500_page_with_headers_when_the_database_is_down(
    app, client, make_resident, login
):
    login(make_resident())
    assert client.get("/wallet").status_code == 200
    db.session.remove()  # end the test's own transaction, or PostgreSQL waits for it to drop the tables
    db.drop_all()  # every query now fails, the one loading the signed-in user included
    response = client.get("/wallet")
    assert response.status_code == 500
    assert "Content-Security-Policy" in response.headers and response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "private, no-store"
    page = response.get_data(as_text=True)
    assert "<html" in page and ("出错了" in page or "Something went wrong" in page)


def _csp_records(caplog):
    return [r for r in caplog.records if getattr(r, "event", None) == "csp.violation"]


def test_csp_reports_are_logged_with_what_was_blocked_and_where(client, caplog):
    assert "report-uri /csp-report" in client.get("/login").headers["Content-Security-Policy"]
    report = {
        "csp-report": {
            "document-uri": "https://shed.example/manage/sites/1",
            "violated-directive": "style-src-elem",
            "blocked-uri": "inline",
            "source-file": "https://shed.example/static/vendor/htmx.min.js",
            "line-number": 1,
            "script-sample": ".htmx-indicator{opacity:0}",
        }
    }
    caplog.set_level(logging.WARNING)
    response = client.post("/csp-report", data=json.dumps(report), content_type="application/csp-report")
    assert response.status_code == 204
    (record,) = _csp_records(caplog)
    assert record.violated_directive == "style-src-elem"
    assert record.source_file.endswith("htmx.min.js") and record.script_sample == ".htmx-indicator{opacity:0}"

    modern = [
        {
            "type": "csp-violation",
            "body": {
                "documentURL": "https://shed.example/",
                "effectiveDirective": "script-src-elem",
                "blockedURL": "inline",
                "sample": "alert(1)",
            },
        }
    ]
    response = client.post("/csp-report", data=json.dumps(modern), content_type="application/reports+json")
    assert response.status_code == 204
    assert _csp_records(caplog)[-1].violated_directive == "script-src-elem"


def test_csp_report_endpoint_refuses_what_is_not_a_report(client, caplog):
    assert client.post("/csp-report", data="not json", content_type="application/csp-report").status_code == 400
    assert client.post("/csp-report", data="{}", content_type="application/csp-report").status_code == 400
    huge = json.dumps({"csp-report": {"script-sample": "x" * 20_000}})
    assert client.post("/csp-report", data=huge, content_type="application/csp-report").status_code == 413
    assert _csp_records(caplog) == []


def test_favicon_is_answered_without_an_error(client):
    # Browsers ask for it on PDFs and images (a 404 shows as a console error there).
    assert client.get("/favicon.ico").status_code == 204
