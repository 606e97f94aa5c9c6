"""The back office in Chromium: occupancy grid and charts at phone and laptop widths, and live polling.

Screenshots go to $CHARGESHED_SHOTS (default: the test's temporary directory) for a look by eye.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.charging.sessions import start_session
from chargeshed.extensions import db
from chargeshed.ports.sim import Bike
from chargeshed.sites.models import Port
from tests.e2e.conftest import PageProblems, browser  # noqa: F401  (the shared Chromium fixture)
from tests.manage.conftest import PASSWORD
from tests.manage.test_usage import MONDAY, book, local

pytestmark = pytest.mark.browser

VIEWPORTS = {"phone": {"width": 390, "height": 844}, "laptop": {"width": 1280, "height": 800}}


class StatusLog:
    """WSGI middleware noting (path, status) of every response the server sends."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app
        self.seen: list[tuple[str, int]] = []

    def __call__(self, environ, start_response):
        def noting(status, headers, *args):
            self.seen.append((environ["PATH_INFO"], int(status.split()[0])))
            return start_response(status, headers, *args)

        return self.wsgi_app(environ, noting)


@pytest.fixture
def live_server(app, monkeypatch):
    """The test app (CSRF on, polling every second) served from a background thread."""
    import chargeshed.web.manage as manage_views

    monkeypatch.setattr(manage_views, "POLL_SECONDS", 1)
    app.config["WTF_CSRF_ENABLED"] = True
    app.wsgi_app = StatusLog(app.wsgi_app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def compound(app, make_site, make_resident, make_staff, driver, clock, tick):
    """Two sheds with live charges, a fault and two weeks of history."""
    site = make_site(sheds=(12, 8))
    ports = db.session.execute(select(Port).order_by(Port.shed_id, Port.number)).scalars().all()
    resident = make_resident(balance_fen=20000)
    for n in range(14):
        day = MONDAY - timedelta(days=7) + timedelta(days=n)
        for i in range(n % 5 + 2):
            book(resident, ports[i], local(day, 18 + i % 4), 90 + 20 * i)
    tick()
    for port in ports[:5]:
        driver.plug(port.code, bike=Bike("lithium", cc_watts=230, cc_minutes=600, taper_minutes=30))
        start_session(resident.id, port)
    driver.set_fault(ports[7].code, "ground_fault")
    clock.advance(minutes=20)
    tick()
    return site, ports, make_staff(ROLE_SITE_MANAGER, site=site)


def shots_dir(tmp_path) -> str:
    path = os.environ.get("CHARGESHED_SHOTS") or str(tmp_path)
    os.makedirs(path, exist_ok=True)
    return path


def test_occupancy_and_charts_fit_phone_and_laptop(browser, live_server, compound, tmp_path):  # noqa: F811
    site, _ports, manager = compound
    for name, viewport in VIEWPORTS.items():
        context = browser.new_context(viewport=viewport, locale="en-GB")
        context.add_cookies([{"name": "lang", "value": "en", "url": live_server}])
        page = context.new_page()
        problems = PageProblems(page)
        page.goto(f"{live_server}/login")
        page.fill("input[name=login]", manager.login)
        page.fill("input[name=password]", PASSWORD)
        page.click("button.primary")
        page.wait_for_url(f"{live_server}/manage/sites/{site.id}")
        assert page.locator("a.cell").count() == 20
        assert page.locator('a.cell[data-state="charging"]').count() == 5
        assert page.locator('a.cell[data-state="fault"]').count() == 1
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        page.screenshot(path=os.path.join(shots_dir(tmp_path), f"occupancy-{name}.png"), full_page=True)

        page.goto(f"{live_server}/manage/usage?date_from=2026-11-09&date_to=2026-11-22")
        assert page.locator("svg.chart").count() >= 7
        assert page.locator('[data-testid="heatmap"]').count() == 2
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        page.screenshot(path=os.path.join(shots_dir(tmp_path), f"usage-{name}.png"), full_page=True)
        assert problems.messages == []
        context.close()


def test_the_grid_polls_with_304s_and_shows_changes(app, browser, live_server, compound, driver, tick):  # noqa: F811
    site, ports, manager = compound
    context = browser.new_context(viewport=VIEWPORTS["laptop"])
    page = context.new_page()
    problems = PageProblems(page)
    page.goto(f"{live_server}/login")
    page.fill("input[name=login]", manager.login)
    page.fill("input[name=password]", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(f"{live_server}/manage/sites/{site.id}")
    page.wait_for_timeout(3500)
    # The first poll fills the browser's cache; after that the browser revalidates with If-None-Match
    # and the server answers 304 without a body (the page itself is handed the cached 200).
    polls = [status for path, status in app.wsgi_app.seen if path == f"/manage/sites/{site.id}/grid"]
    assert polls[0] == 200 and len(polls) >= 3 and set(polls[1:]) == {304}

    driver.set_fault(ports[7].code, None)
    tick()
    cell = page.locator(f'a.cell[data-port="{ports[7].id}"]')
    cell.and_(page.locator('[data-state="free"]')).wait_for(timeout=5000)
    assert problems.messages == []
    context.close()
