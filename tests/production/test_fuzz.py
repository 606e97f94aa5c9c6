"""Fuzz every route in app.url_map: random forms, JSON, bytes, files, query strings and URL values.

Whoever asks (nobody, a resident, each staff role) and whatever they send, the answer is never a 5xx.
Runs on SQLite and, with CHARGESHED_TEST_PG=1 (and on CI), on PostgreSQL, whose 32-bit integers and
date arithmetic fail where SQLite's do not: the values at those edges are sent to every route.
"""

from __future__ import annotations

import io
import re
from urllib.parse import quote

from flask import g
from flask_wtf import FlaskForm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.routing import AnyConverter, IntegerConverter

from chargeshed.accounts.models import (
    ROLE_ADMIN,
    ROLE_OPERATOR_STAFF,
    ROLE_PATROL,
    ROLE_RESIDENT,
    ROLE_SITE_MANAGER,
    User,
)
from chargeshed.charging import sessions as svc
from chargeshed.extensions import db

AUDIENCES = (None, ROLE_RESIDENT, ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF, ROLE_PATROL)
NASTY = [
    "",
    " ",
    "0",
    "-1",
    "1.5",
    "1e309",
    "NaN",
    "９",
    "99999999999999999999999",
    "2147483647",
    "2147483648",
    "-2147483649",
    "9223372036854775808",
    "2026-02-30",
    "9999-12-31",
    "9999-12",
    "0001-01-01",
    "10000-01-01",
    "2026-13",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../etc/passwd",
    "\x00",
    "a\x00b",
    "\u202e",
    "𠜎" * 40,
    "x" * 5000,
    "on",
    "true",
    "zh_CN",
    "en",
    "/",
    "//evil.example",
    "https://evil.example/",
]
QUERY_KEYS = [
    "page",
    "next",
    "month",
    "site",
    "type",
    "show",
    "building",
    "unit",
    "floor",
    "from",
    "to",
    "q",
    "status",
    "shed",
    "session_id",
    "lang",
    "duplicate_of",
    "request_key",
    "date_from",
    "date_to",
    "port",
]
# Numbers and dates at the edges of what PostgreSQL stores or Python's dates can add to.
EDGES = ["2147483648", "-2147483649", "99999999999999999999", "9999-12-31"]


def _form_fields() -> list[str]:
    """Every field name of every form class in the app (so the fuzz reaches form handling)."""
    names: set[str] = set()
    pending = list(FlaskForm.__subclasses__())
    while pending:
        form = pending.pop()
        pending.extend(form.__subclasses__())
        names.update(name for name in dir(form) if hasattr(getattr(form, name), "field_class"))
    return sorted(names) + ["csrf_token", "amount", "reason", "note", "photos", "photo"]


TEXT = st.one_of(st.sampled_from(NASTY), st.text(max_size=40), st.integers(-(10**12), 10**12).map(str))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _routes(app) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, rule))
    return found


def _url_value(data, converter):
    if isinstance(converter, IntegerConverter):
        return str(data.draw(st.one_of(st.integers(1, 4), st.integers(0, 2**80), st.just(2**31), st.just(2**63))))
    if isinstance(converter, AnyConverter):
        return quote(data.draw(st.sampled_from(sorted(converter.items)) | st.text(max_size=6)), safe="")
    return quote(
        data.draw(
            st.one_of(
                st.sampled_from(
                    [
                        "T11001",
                        "T11002",
                        "t11001",
                        "en",
                        "zh_CN",
                        "csv",
                        "pdf",
                        "xlsx",
                        "2026-11",
                        "start",
                        "close",
                    ]
                ),
                TEXT,
            )
        ),
        safe="",
    )


def _build_path(data, rule) -> str:
    path = rule.rule
    for name, converter in rule._converters.items():
        path = re.sub(r"<(?:[^:<>]+:)?" + re.escape(name) + r">", lambda _m, c=converter: _url_value(data, c), path)
    return path


def _body(data, fields: list[str]) -> dict:
    """Keyword arguments for the test client: a form, multipart with files, JSON or raw bytes."""
    kind = data.draw(st.sampled_from(["form", "multipart", "json", "bytes", "empty"]))
    if kind == "empty":
        return {}
    if kind == "json":
        return {"json": data.draw(JSON)}
    if kind == "bytes":
        return {
            "data": data.draw(st.binary(max_size=300)),
            "content_type": data.draw(
                st.sampled_from(
                    [
                        "application/octet-stream",
                        "application/json",
                        "application/x-www-form-urlencoded",
                        "text/plain",
                    ]
                )
            ),
        }
    form = data.draw(st.dictionaries(st.one_of(st.sampled_from(fields), st.text(max_size=8)), TEXT, max_size=8))
    if kind == "multipart":
        for name in data.draw(st.lists(st.sampled_from(["photos", "photo", "file"]), max_size=3)):
            content = data.draw(st.one_of(st.binary(max_size=200), st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)))
            form[name] = (
                io.BytesIO(content),
                data.draw(st.sampled_from(["a.png", "a.jpg", "../x.php", "", "x"])),
            )
        return {"data": form, "content_type": "multipart/form-data"}
    return {"data": form}


def _people(make_resident) -> dict:
    from werkzeug.security import generate_password_hash

    from chargeshed.accounts.models import User
    from chargeshed.sites.models import Operator, Site

    site, operator = db.session.get(Site, 1), db.session.get(Operator, 1)
    people = {ROLE_RESIDENT: make_resident(balance_fen=2000).id}
    for role in AUDIENCES[2:]:
        user = User(
            login=f"fuzz-{role}",
            role=role,
            password_hash=generate_password_hash("x", "pbkdf2:sha256:1"),
            site_id=site.id,
            operator_id=operator.id if role == ROLE_OPERATOR_STAFF else None,
        )
        db.session.add(user)
        db.session.commit()
        people[role] = user.id
    return people


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_input_on_any_route_gets_a_server_error(app, make_site, make_resident, data):
    if not hasattr(app, "fuzz_people"):
        make_site(sheds=(3, 2))
        app.fuzz_people = _people(make_resident)
        from chargeshed.sites.models import Port

        svc.start_session(app.fuzz_people[ROLE_RESIDENT], db.session.get(Port, 1))
    fields = _form_fields()
    for method, rule in _routes(app):
        path = _build_path(data, rule)
        query = data.draw(st.dictionaries(st.sampled_from(QUERY_KEYS + fields), TEXT, max_size=4))
        role = data.draw(st.sampled_from(AUDIENCES))
        client = app.test_client()
        g.pop("_login_user", None)  # requests share the test's app context: forget the last user
        if role is not None:
            with client.session_transaction() as session:
                session["_user_id"] = db.session.get(User, app.fuzz_people[role]).get_id()
                session["_fresh"] = True
        headers = data.draw(st.sampled_from([{}, {"HX-Request": "true"}, {"Accept": "application/json"}]))
        kwargs = _body(data, fields) if method != "GET" else {}
        response = client.open(path, method=method, query_string=query, headers=headers, **kwargs)
        assert response.status_code < 500, f"{method} {path} as {role} -> {response.status_code}"
        db.session.rollback()


def _sign_in_as(client, app, role) -> None:
    g.pop("_login_user", None)
    if role is not None:
        with client.session_transaction() as session:
            session["_user_id"] = db.session.get(User, app.fuzz_people[role]).get_id()
            session["_fresh"] = True


def test_numbers_and_dates_at_the_edges_on_every_route_get_no_server_error(app, make_site, make_resident):
    """Every route, every query key and form field set to one edge value, as each kind of visitor."""
    make_site(sheds=(3, 2))
    app.fuzz_people = _people(make_resident)
    fields = _form_fields()
    failures = []
    for value in EDGES:
        for method, rule in _routes(app):
            path = re.sub(
                r"<(?:int:)?[^<>]*>", lambda m, v=value: v if m[0].startswith("<int:") else "T11001", rule.rule
            )
            for role in (None, ROLE_RESIDENT, ROLE_ADMIN):
                client = app.test_client()
                _sign_in_as(client, app, role)
                query = dict.fromkeys(QUERY_KEYS, value)
                kwargs = {"data": dict.fromkeys(fields, value)} if method != "GET" else {}
                response = client.open(path, method=method, query_string=query, **kwargs)
                if response.status_code >= 500:
                    failures.append(f"{method} {path} as {role} with {value!r} -> {response.status_code}")
                db.session.rollback()
    assert failures == []
