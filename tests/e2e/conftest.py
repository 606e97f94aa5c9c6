"""Browser tests: the real app served on a local port, driven by Chromium at phone size.

The app runs with real CSRF and the demo payment provider; the port driver is a SimDriver
on the fake clock, and the test runs the supervisor tick itself, so every step is deterministic.
"""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from chargeshed import create_app
from chargeshed.extensions import db as _db
from tests.conftest import skip_or_fail
from tests.i18n.catalogues import compile_catalogues

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
    "locale": "zh-CN",
    "timezone_id": "Asia/Shanghai",
}


@pytest.fixture(autouse=True, scope="session")
def compiled_catalogues():
    compile_catalogues()


@pytest.fixture
def app(driver, tmp_path):
    """The app as deployed, on a fresh SQLite file: CSRF on, demo payments, the test's driver and clock."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.sqlite3'}",
            "SECRET_KEY": "e2e",
            "WTF_CSRF_ENABLED": True,
            "PAYMENTS": "demo",
            "PUBLIC_BASE_URL": "http://127.0.0.1",
            "RATELIMIT_ENABLED": False,
        }
    )
    app.extensions["port_driver"] = driver
    app.extensions["clock"] = driver.clock
    with app.app_context():
        _db.create_all()
        yield app
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture
def live_server(app):
    """Serve the app on 127.0.0.1 on a free port from a background thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def tick(app, driver, clock):
    """Run one supervisor tick at the fake clock's time, in its own app context like the worker."""
    from chargeshed.worker import sim_round

    def do():
        with app.app_context():
            return sim_round(driver, clock.now)

    return do


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for this module (Playwright's sync API allows one at a time per thread).

    Skipped locally (failed on CI) when it cannot start.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        skip_or_fail(f"playwright is not installed: {error}")
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except Exception as error:
        manager.stop()
        skip_or_fail(f"Chromium could not start: {error}")
    yield browser
    browser.close()
    manager.stop()


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations seen by a page."""

    def __init__(self, page):
        self.messages: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.messages.append(f"page error: {error}"))
        # Also catch violations Chromium may not log (the listener runs outside the page's CSP).
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => console.error("
            "'CSP violation: ' + e.violatedDirective + ' ' + (e.blockedURI || 'inline')"
            " + ' at ' + e.sourceFile + ':' + e.lineNumber));"
        )

    def _console(self, message) -> None:
        if message.type in ("error", "warning") or "Content Security Policy" in message.text:
            self.messages.append(f"{message.type}: {message.text} ({message.location.get('url', '')})")


@pytest.fixture
def phone(browser):
    """A fresh phone-sized, Chinese-language browser page; yields (page, problems)."""
    context = browser.new_context(**PHONE)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems = PageProblems(page)
    yield page, problems
    context.close()
