"""A resident files a hazard report with a photo from a phone, in Chromium, against a real server."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from chargeshed import create_app
from chargeshed.extensions import db
from chargeshed.safety.models import HazardCase
from chargeshed.sites.models import Building, Site
from tests.conftest import skip_or_fail
from tests.e2e.conftest import PageProblems
from tests.safety import samples

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCRIPT = "<script>alert('pwned')</script>"


@pytest.fixture
def server(tmp_path):
    """The app on 127.0.0.1:<free port> with a file SQLite DB, CSRF on, in a background thread."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'browser.sqlite3'}",
            "SECRET_KEY": "browser-test",
            "RATELIMIT_ENABLED": False,
            "SAFETY_UPLOAD_DIR": str(tmp_path / "uploads"),
            "PUBLIC_BASE_URL": "http://127.0.0.1",
        }
    )
    with app.app_context():
        db.create_all()
        site = Site(name="信中央皇庭小区")
        db.session.add(site)
        db.session.flush()
        db.session.add_all(Building(site_id=site.id, number=n) for n in range(1, 13))
        db.session.commit()
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=5)
    with app.app_context():
        db.engine.dispose()


def on_phone(steps) -> None:
    """Run `steps(page, problems)` in Chromium at phone size (390x844, touch), in a thread of its own.

    Playwright's sync API allows one session per thread; its own thread keeps this one apart from
    a browser another test module may keep open for the whole run.
    """
    outcome: list[BaseException] = []

    def run():
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                try:
                    browser = playwright.chromium.launch(
                        executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                    )
                except Exception as exc:  # no usable Chromium here
                    skip_or_fail(f"Chromium cannot start: {exc}")
                context = browser.new_context(
                    viewport={"width": 390, "height": 844},
                    is_mobile=True,
                    has_touch=True,
                    device_scale_factor=2,
                    locale="zh-CN",
                )
                context.add_cookies([{"name": "lang", "value": "en", "url": "http://127.0.0.1"}])
                context.set_default_timeout(10_000)
                page = context.new_page()
                try:
                    steps(page, PageProblems(page))
                finally:
                    context.close()
                    browser.close()
        except BaseException as exc:  # assertion, skip or error: raised again in the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="phone")
    thread.start()
    thread.join()
    if outcome:
        raise outcome[0]


@pytest.mark.browser
def test_resident_files_a_report_with_a_photo_from_a_phone(server, tmp_path):
    app, base = server
    with app.app_context():
        building_4 = db.session.execute(select(Building).where(Building.number == 4)).scalar_one().id
    photo = tmp_path / "IMG_2041.jpg"
    photo.write_bytes(samples.jpeg_with_gps())

    def steps(phone, problems):
        dialogs: list[str] = []
        phone.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        phone.goto(f"{base}/report/b/{building_4}")  # from the QR on the building's notice
        assert phone.locator("select[name=building]").input_value() == str(building_4)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        phone.locator("label.choice", has_text="Flying wire").tap()
        phone.fill("input[name=unit]", "2")
        phone.fill("input[name=floor]", "6")
        phone.fill("input[name=spot]", "stairwell")
        phone.fill("textarea[name=description]", SCRIPT)
        phone.set_input_files("input[name=photos]", str(photo))
        phone.locator("[data-testid=report-submit]").tap()

        phone.wait_for_url(f"{base}/report/t/**")
        assert phone.locator("[data-state]").get_attribute("data-state") == "reported"
        assert "Building 4 Unit 2 6F" in phone.inner_text("[data-testid=tracking]")
        thumb = phone.locator("[data-testid=track-photo]")
        thumb.wait_for()
        assert phone.evaluate("img => img.complete && img.naturalWidth > 0", thumb.element_handle())
        href = phone.locator("a:has([data-testid=track-photo])").get_attribute("href")
        full = phone.request.get(base + href)
        assert full.ok and full.headers["content-type"] == "image/jpeg"
        assert not samples.has_gps(full.body()) and b"SnoopPhone" not in full.body()
        tracking_url = phone.url

        # A neighbour starts a report at the same place: the open case is pointed out before sending.
        phone.goto(f"{base}/report")
        phone.select_option("select[name=building]", str(building_4))
        phone.fill("input[name=unit]", "2")
        phone.fill("input[name=floor]", "6")
        phone.locator("input[name=spot]").focus()
        hint = phone.locator("[data-testid=similar-hint]")
        hint.wait_for()
        assert "Building 4 Unit 2 6F" in hint.inner_text()
        assert dialogs == [] and problems.messages == []
        seen["tracking_url"] = tracking_url

    seen: dict[str, str] = {}
    on_phone(steps)
    with app.app_context():
        case = db.session.execute(select(HazardCase)).scalar_one()
        assert case.description == SCRIPT and case.reporter_id is None and len(case.photos) == 1
        assert seen["tracking_url"].endswith(f"/report/t/{case.tracking_token}")


@pytest.mark.browser
def test_a_fake_photo_is_refused_on_the_phone_with_a_clear_message(server, tmp_path):
    app, base = server
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(samples.HTML_AS_JPG)

    def steps(phone, problems):
        phone.goto(f"{base}/report")
        phone.locator("label.choice", has_text="Battery").tap()
        phone.select_option("select[name=building]", label="Building 7")
        phone.fill("input[name=spot]", "lobby")
        phone.set_input_files("input[name=photos]", str(fake))
        with phone.expect_navigation():
            phone.locator("[data-testid=report-submit]").tap()
        assert "This file is not a photo" in phone.inner_text("form")
        assert phone.locator("input[name=spot]").input_value() == "lobby"
        assert [m for m in problems.messages if "status of 400" not in m] == []  # the refusal is a 400

    on_phone(steps)
    with app.app_context():
        assert db.session.execute(select(HazardCase)).first() is None


@pytest.mark.browser
def test_form_errors_are_summarised_and_go_away_once_fixed_and_the_link_can_be_copied(server):
    app, base = server

    def steps(phone, problems):
        phone.goto(f"{base}/report")
        phone.locator("[data-testid=report-submit]").tap()  # nothing chosen: sent back with errors
        summary = phone.locator("[data-testid=error-summary]")
        summary.wait_for()
        assert summary.locator("li").count() >= 2 and "Building" in summary.inner_text()
        assert phone.locator(".field.has-error select[name=building]").count() == 1
        phone.select_option("select[name=building]", index=4)
        assert phone.locator(".field.has-error select[name=building]").count() == 0  # its error went
        assert "Building" not in summary.inner_text()  # and so did its line in the summary
        phone.locator("label.choice", has_text="Flying wire").tap()
        phone.fill("input[name=unit]", "1")
        phone.fill("input[name=floor]", "3")
        phone.locator("[data-testid=report-submit]").tap()
        phone.wait_for_url(f"{base}/report/t/**")
        phone.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        phone.locator("[data-testid=copy-link]").tap()
        phone.wait_for_function("document.querySelector('[data-testid=copy-link]').textContent === 'Copied'")
        copied = phone.evaluate("navigator.clipboard.readText()")  # the public address, as in the box
        assert copied == phone.input_value("#track-url") and copied.endswith(phone.url.split("/report")[1])
        phone.goto(f"{base}/report/t/not-a-real-token")
        assert phone.locator("[data-testid=track-missing]").count() == 1
        assert "sticker" not in phone.inner_text("main")
        # Only the refused form (400) and the unknown link (404) answered with errors, as they should.
        assert [m for m in problems.messages if "404" not in m and "400" not in m] == []

    on_phone(steps)
