"""A style the page's CSP blocks in a real browser is reported to the server and logged, source included."""

from __future__ import annotations

import logging
import time

import pytest

pytestmark = pytest.mark.browser


def test_chromium_reports_a_blocked_inline_style_to_the_server(live_server, phone, caplog):
    page, problems = phone
    caplog.set_level(logging.WARNING)
    page.goto(f"{live_server}/login")
    page.evaluate(
        "() => { const s = document.createElement('style'); s.textContent = 'body{color:red}';"
        " document.head.appendChild(s); }"
    )
    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline and not records:
        records = [r for r in caplog.records if getattr(r, "event", None) == "csp.violation"]
        time.sleep(0.1)
    assert records, "Chromium sent no CSP report"
    assert records[0].violated_directive.startswith("style-src")
    assert records[0].document_uri.endswith("/login")
    assert "body{color:red}" in records[0].script_sample
    assert page.evaluate("getComputedStyle(document.body).color") != "rgb(255, 0, 0)"  # and it was blocked
    assert any("style-src" in message for message in problems.messages)
