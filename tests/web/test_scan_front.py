"""An anonymous scan is answered from the page Flask last rendered for that port's current state."""

from __future__ import annotations

import logging

import pytest
from flask import request_started
from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.ports.telemetry import OFFLINE_AFTER_SECONDS
from chargeshed.sites.models import PORT_MAINTENANCE, PORT_RETIRED, Port


def _port(code: str) -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


@pytest.fixture
def through_flask(app):
    """The paths of the requests that reached Flask's request handling."""
    seen: list[str] = []

    def record(sender, **_extra):
        from flask import request

        seen.append(request.path)

    request_started.connect(record, app)
    yield seen
    request_started.disconnect(record, app)


def _headers(response) -> dict:
    return {name: value for name, value in response.headers.items() if name != "X-Request-Id"}


def test_a_second_anonymous_scan_gets_the_same_page_without_the_request_machinery(
    app, client, make_site, through_flask, caplog
):
    make_site()
    caplog.set_level(logging.INFO, logger="chargeshed.request")
    first = client.get("/p/T11001", headers={"X-Request-Id": "scan-one"})
    second = client.get("/p/T11001", headers={"X-Request-Id": "scan-two"})

    assert first.status_code == second.status_code == 200
    assert second.get_data() == first.get_data() and 'data-state="free"' in second.get_data(as_text=True)
    assert _headers(second) == _headers(first)
    assert "Content-Security-Policy" in second.headers and "Set-Cookie" not in second.headers
    assert (first.headers["X-Request-Id"], second.headers["X-Request-Id"]) == ("scan-one", "scan-two")
    assert through_flask == ["/p/T11001"]  # the second came from the kept copy
    logged = [r for r in caplog.records if r.getMessage() == "request" and r.path == "/p/T11001"]
    assert [(r.request_id, r.status) for r in logged] == [("scan-one", 200), ("scan-two", 200)]


def test_the_kept_page_follows_the_port_and_the_passing_time(app, client, clock, make_site, through_flask):
    make_site()
    assert 'data-state="free"' in client.get("/p/T11002").get_data(as_text=True)

    _port("T11002").status = PORT_MAINTENANCE
    db.session.commit()
    assert 'data-state="maintenance"' in client.get("/p/T11002").get_data(as_text=True)

    port = _port("T11003")
    port.last_seen_at = clock.now  # heard from just now
    db.session.commit()
    assert 'data-state="free"' in client.get("/p/T11003").get_data(as_text=True)
    assert 'data-state="free"' in client.get("/p/T11003").get_data(as_text=True)
    clock.advance(seconds=OFFLINE_AFTER_SECONDS + 1)  # nothing stored changes: only the time passes
    assert 'data-state="offline"' in client.get("/p/T11003").get_data(as_text=True)
    assert through_flask == ["/p/T11002", "/p/T11002", "/p/T11003", "/p/T11003"]


@pytest.mark.parametrize(
    "how",
    [
        {"cookie": ("lang", "en")},
        {"query_string": {"from": "sticker"}},
        {"headers": {"HX-Request": "true"}},
    ],
    ids=["cookie", "query", "htmx"],
)
def test_a_scan_with_a_cookie_a_query_or_from_htmx_is_rendered_for_itself(app, client, make_site, through_flask, how):
    make_site()
    client.get("/p/T11001")  # kept
    how = dict(how)
    if "cookie" in how:
        client.set_cookie(*how.pop("cookie"))
    response = client.get("/p/T11001", **how)
    assert response.status_code == 200
    assert through_flask == ["/p/T11001", "/p/T11001"]


def test_an_unknown_or_malformed_code_is_still_a_clear_404(app, client, make_site, through_flask):
    make_site()
    assert client.get("/p/NOPE404").status_code == 404
    assert client.get("/p/NOPE404").status_code == 404
    assert client.get("/p/" + "X" * 40).status_code == 404
    assert through_flask == ["/p/NOPE404", "/p/NOPE404", "/p/" + "X" * 40]


def test_a_retired_port_is_never_answered_as_it_was(app, client, make_site):
    make_site()
    assert 'data-state="free"' in client.get("/p/T11001").get_data(as_text=True)
    _port("T11001").status = PORT_RETIRED
    db.session.commit()
    assert 'data-state="free"' not in client.get("/p/T11001").get_data(as_text=True)


def test_the_front_gives_way_when_the_database_cannot_answer(app, client, make_site, monkeypatch, through_flask):
    make_site()
    client.get("/p/T11001")

    def broken(*_args, **_kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr("chargeshed.web.scan_front.load_scan", broken)
    assert client.get("/p/T11001").status_code == 200  # Flask's own statement still answers
    assert through_flask == ["/p/T11001", "/p/T11001"]


def test_free_ports_listed_before_the_site_has_a_version_are_never_answered_stale(app, client, make_site):
    make_site()  # no tick has recorded the site yet: its free ports carry no version
    _port("T11001").status = PORT_MAINTENANCE
    db.session.commit()
    assert "/p/T11002" in client.get("/p/T11001").get_data(as_text=True)

    _port("T11002").status = PORT_MAINTENANCE  # the scanned port's own row does not change
    db.session.commit()
    page = client.get("/p/T11001").get_data(as_text=True)
    assert "/p/T11002" not in page and "/p/T11003" in page
