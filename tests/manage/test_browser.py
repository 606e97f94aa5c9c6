"""The back office in Chromium: occupancy grid and charts at phone and laptop widths, and live polling.

Screenshots go to $CHARGESHED_SHOTS (default: the test's temporary directory) for a look by eye.
Chromium is driven from a thread of its own: Playwright's sync API allows one instance per thread,
and other test packages keep theirs open on the main thread for the whole session.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.charging.sessions import start_session
from chargeshed.extensions import db
from chargeshed.ports.sim import Bike
from chargeshed.sites.models import Port
from tests.conftest import skip_or_fail
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PageProblems
from tests.manage.conftest import PASSWORD
from tests.manage.test_usage import MONDAY, book, local

pytestmark = pytest.mark.browser

VIEWPORTS = {"phone": {"width": 390, "height": 844}, "laptop": {"width": 1280, "height": 800}}


@pytest.fixture(scope="module")
def chromium():
    """Run `step(browser, *args)` on the Chromium thread: chromium(step, *args) returns its result."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        skip_or_fail(f"playwright is not installed: {error}")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")

    def start():
        manager = sync_playwright().start()
        try:
            browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            return manager, browser
        except Exception:
            manager.stop()
            raise

    try:
        manager, browser = pool.submit(start).result()
    except Exception as error:
        pool.shutdown()
        skip_or_fail(f"Chromium could not start: {error}")
    yield lambda step, *args: pool.submit(step, browser, *args).result()
    pool.submit(lambda: (browser.close(), manager.stop())).result()
    pool.shutdown()


def signed_in_page(browser, base: str, login: str, landing: str, viewport: dict):
    """A new page signed in as `login` (English), on its landing page; returns (page, problems)."""
    context = browser.new_context(viewport=viewport, locale="en-GB")
    context.add_cookies([{"name": "lang", "value": "en", "url": base}])
    page = context.new_page()
    problems = PageProblems(page)
    page.goto(f"{base}/login")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(f"{base}{landing}")
    return page, problems


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


def test_occupancy_and_charts_fit_phone_and_laptop(chromium, live_server, compound, tmp_path):
    site, _ports, manager = compound
    landing, login, shots = f"/manage/sites/{site.id}", manager.login, shots_dir(tmp_path)

    def visit(browser, name: str, viewport: dict):
        page, problems = signed_in_page(browser, live_server, login, landing, viewport)
        assert page.locator("a.cell").count() == 20
        assert page.locator('a.cell[data-state="charging"]').count() == 5
        assert page.locator('a.cell[data-state="fault"]').count() == 1
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        page.screenshot(path=os.path.join(shots, f"occupancy-{name}.png"), full_page=True)

        page.goto(f"{live_server}/manage/usage?date_from=2026-11-09&date_to=2026-11-22")
        assert page.locator("svg.chart").count() >= 7
        assert page.locator('[data-testid="heatmap"]').count() == 2
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        page.screenshot(path=os.path.join(shots, f"usage-{name}.png"), full_page=True)
        assert problems.messages == []
        page.context.close()

    for name, viewport in VIEWPORTS.items():
        chromium(visit, name, viewport)


def test_the_grid_polls_with_304s_and_shows_changes(app, chromium, live_server, compound, driver, tick):
    site, ports, manager = compound
    landing, faulty = f"/manage/sites/{site.id}", ports[7]

    def grid_polls() -> list[int]:
        return [status for path, status in app.wsgi_app.seen if path == f"{landing}/grid"]

    def open_grid(browser):
        page, problems = signed_in_page(browser, live_server, manager_login, landing, VIEWPORTS["laptop"])
        for _ in range(240):  # until three polls were answered (a loaded machine answers slowly), at most ~60 s
            if len(grid_polls()) >= 3:
                break
            page.wait_for_timeout(250)
        return page, problems

    def wait_for_free(browser, page, port_id: int):
        page.locator(f'a.cell[data-port="{port_id}"][data-state="free"]').wait_for(timeout=5000)

    manager_login = manager.login
    page, problems = chromium(open_grid)
    # The first poll fills the browser's cache; after that the browser revalidates with If-None-Match
    # and the server answers 304 without a body (the page itself is handed the cached 200).
    polls = grid_polls()
    assert polls[0] == 200 and len(polls) >= 3 and set(polls[1:]) == {304}

    driver.set_fault(faulty.code, None)
    tick()
    chromium(wait_for_free, page, faulty.id)
    assert problems.messages == []
    chromium(lambda browser: page.context.close())


def test_the_console_stays_clean_through_staff_form_submits(app, chromium, live_server, compound):
    """Real CSRF and the strict CSP: stop a charge, rename, maintenance, then the staff log. No console error,
    no CSP violation (nothing may inject inline styles or handlers)."""
    site, ports, manager = compound
    manager_login, landing, port_id = manager.login, f"/manage/sites/{site.id}", ports[0].id

    def submit_forms(browser):
        page, problems = signed_in_page(browser, live_server, manager_login, landing, VIEWPORTS["phone"])
        page.goto(f"{live_server}/manage/ports/{port_id}")
        page.fill("textarea[name=reason]", "cable damaged")
        page.click("form[action$='/stop'] button")
        page.wait_for_load_state()
        page.fill("input[name=label]", "by the door")
        page.click("form[action$='/rename'] button")
        page.wait_for_load_state()
        page.click("form[action$='/maintenance'] button")
        page.wait_for_load_state()
        page.goto(f"{live_server}/manage/audit")
        logged = page.locator("[data-testid=audit] tr[data-action]").count()
        page.wait_for_timeout(500)
        page.context.close()
        return logged, problems.messages

    logged, messages = chromium(submit_forms)
    assert logged == 3 and messages == []
