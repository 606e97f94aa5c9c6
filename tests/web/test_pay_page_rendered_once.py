"""The pay page is rendered once per state and reused: it must still follow every change it shows."""

from __future__ import annotations

import re

from sqlalchemy import select

from chargeshed.charging.occupancy import refresh_versions
from chargeshed.extensions import db
from chargeshed.sites.models import PORT_MAINTENANCE, Port
from chargeshed.timeutil import now as clock_now


def _port(code: str) -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


def test_a_reused_page_follows_its_port_and_the_free_ports_nearby(app, client, make_site):
    make_site()
    refresh_versions(clock_now())  # the tick records the site: free ports are reused while it holds
    assert 'data-state="free"' in client.get("/p/T11001").get_data(as_text=True)
    assert 'data-state="free"' in client.get("/p/T11001").get_data(as_text=True)

    _port("T11001").status = PORT_MAINTENANCE
    db.session.commit()
    page = client.get("/p/T11001").get_data(as_text=True)
    assert 'data-state="maintenance"' in page and "/p/T11002" in page

    _port("T11002").status = PORT_MAINTENANCE
    refresh_versions(clock_now())
    db.session.commit()
    page = client.get("/p/T11001").get_data(as_text=True)
    assert "/p/T11002" not in page and "/p/T11003" in page

    client.set_cookie("lang", "en")
    english = client.get("/p/T11001").get_data(as_text=True)
    assert "Under maintenance" in english and "/p/T11003" in english


def test_a_signed_in_page_carries_a_working_csrf_token_of_its_own(app, client, make_site, make_resident, login):
    make_site()
    login(make_resident(balance_fen=1000))
    app.config["WTF_CSRF_ENABLED"] = True
    first = client.get("/p/T11001").get_data(as_text=True)
    again = client.get("/p/T11001").get_data(as_text=True)
    assert "\x00" not in first + again
    token = re.search(r'name="csrf_token" value="([^"]+)"', again).group(1)

    other = app.test_client()
    app.config["WTF_CSRF_ENABLED"] = False
    login_page = other.post("/login", data={"login": make_resident(balance_fen=1000).login, "password": "secret-pass"})
    assert login_page.status_code == 302
    app.config["WTF_CSRF_ENABLED"] = True
    theirs = re.search(r'name="csrf_token" value="([^"]+)"', other.get("/p/T11001").get_data(as_text=True)).group(1)
    assert other.post("/p/T11001/start", data={"csrf_token": token}).status_code == 400  # not theirs

    started = client.post("/p/T11001/start", data={"csrf_token": token})
    assert started.status_code == 302 and "/s/" in started.headers["Location"]
    assert theirs != token
