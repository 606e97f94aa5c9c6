"""Seeing the effect: open cases by age and building, overdue deadlines, time to close, weekly trend, PDF."""

import io
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
import zxingcpp
from PIL import Image
from pypdf import PdfReader

from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.safety import stats, workflow
from chargeshed.sites.models import Port
from tests.pdffonts import assert_every_font_embedded


@pytest.fixture
def cases(app, make_site, building, make_staff, clock, en_context):
    """A compound with cases of different ages, one overdue, three closed (2 h, 10 h and 30 h)."""
    site = make_site()
    patrol = make_staff("patrol", site)
    start = clock.now

    def report(number, floor=3, at=None):
        return workflow.file_report(workflow.NewReport("flying_wire", building(site, number).id, floor=floor), now=at)

    with en_context():
        old = report(4, at=start - timedelta(days=40))
        report(4, at=start - timedelta(days=5))
        report(4, at=start - timedelta(days=1))
        tenth = report(10, at=start - timedelta(days=10))
        for hours in (2, 10, 30):
            closed = report(7, at=start - timedelta(days=3))
            workflow.act(closed, "no_hazard", patrol.id, note="nothing", now=closed.created_at + timedelta(hours=hours))
        workflow.act(tenth, "verify", patrol.id, now=start - timedelta(days=9))
        workflow.act(tenth, "notify", patrol.id, channel="sms", now=start - timedelta(days=9))
        workflow.act(
            tenth,
            "set_deadline",
            patrol.id,
            deadline_at=start - timedelta(days=2),
            now=start - timedelta(days=8),
        )
    db.session.commit()
    return site, old, tenth


def test_open_cases_by_age_and_building(cases, clock):
    site, old, tenth = cases
    rows = stats.open_by_age_and_building(site.id, clock.now)
    assert [(r.building, r.counts, r.total) for r in rows] == [(4, [1, 1, 0, 1], 3), (10, [0, 0, 1, 0], 1)]


def test_overdue_deadlines_and_median_time_to_close(cases, clock):
    site, old, tenth = cases
    assert [c.id for c in stats.overdue_cases(site.id, clock.now)] == [tenth.id]
    assert tenth.is_overdue(clock.now) and not old.is_overdue(clock.now)
    assert stats.median_hours_to_close(site.id) == 10
    assert [c.id for c in stats.awaiting_first_check(site.id, clock.now, 24)][0] == old.id


def test_weekly_trend_counts_reports_per_building_and_shed_utilisation(app, make_site, building, make_resident, clock):
    site = make_site(sheds=(4,))
    user = make_resident()
    port = db.session.execute(db.select(Port)).scalars().first()
    week = stats.week_start(stats.local_today(clock.now))
    monday = stats.local_midnight_utc(week - timedelta(weeks=1))
    # 42 port-hours charged in last week's Monday..Wednesday on 4 ports = 42 / (4 * 168) = 6.25 %, shown
    # as 6.3 (percentages round half up, as a reader rounds them)
    db.session.add(
        ChargeSession(
            user_id=user.id,
            port_id=port.id,
            shed_id=port.shed_id,
            rules={},
            state="ended",
            hold_fen=300,
            confirmed_at=monday + timedelta(hours=6),
            ended_at=monday + timedelta(hours=48),
            end_reason="full",
        )
    )
    db.session.commit()
    for number, days_back in ((4, 8), (4, 9), (6, 1)):
        workflow.file_report(
            workflow.NewReport("bike_indoors", building(site, number).id, floor=1),
            now=clock.now - timedelta(days=days_back),
        )
    db.session.commit()
    trend = stats.weekly_trend(site.id, clock.now, weeks=4)
    assert trend.weeks[-1] == week and len(trend.weeks) == 4
    assert trend.utilisation[-2] == 6.3
    assert trend.charges[-2] == 1 and trend.charges[-1] == 0
    assert trend.reports[4] == [0, 0, 2, 0] and trend.reports[6] == [0, 0, 0, 1]
    assert trend.report_totals == [0, 0, 2, 1]


def test_dashboard_page_and_chart(client, cases, make_staff, login):
    site, old, tenth = cases
    login(make_staff("site_manager", site))
    page = client.get("/safety/dashboard").get_data(as_text=True)
    assert 'data-testid="open-count">4<' in page and 'data-testid="overdue-count">1<' in page
    assert 'data-testid="median">10.0 h<' in page
    chart = client.get(f"/safety/dashboard/trend.svg?site={site.id}")
    assert chart.mimetype == "image/svg+xml"
    root = ET.fromstring(chart.data)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Building 4" in texts and any(t.endswith("%") for t in texts)


def test_monthly_summary_pdf_has_the_months_figures(client, cases, make_staff, login, clock):
    site, old, tenth = cases
    login(make_staff("site_manager", site))
    response = client.get(f"/safety/summary.pdf?site={site.id}&month=2026-11")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    reader = PdfReader(io.BytesIO(response.data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Hazard reports received" in text and "Cases open at month end" in text
    fonts = assert_every_font_embedded(response.data)
    assert all("NotoSansCJK" in font["name"] for font in fonts)
    figures = stats.month_summary(site.id, 2026, 11, clock.now)
    assert figures.reports == 6 and figures.closed == 3 and figures.median_hours == 10
    assert len(figures.open_at_end) == 4 and figures.reminders == 1  # open includes the October case
    assert client.get(f"/safety/summary.pdf?site={site.id}&month=2027-01").status_code == 404
    assert client.get(f"/safety/summary.pdf?site={site.id}&month=junk").status_code == 200  # this month


def test_chinese_text_renders_in_the_pdf(app, cases, clock):
    from chargeshed.safety.summary import render_pdf

    site, old, tenth = cases
    with app.test_request_context():  # default locale zh_CN
        body = render_pdf(stats.month_summary(site.id, 2026, 11, clock.now), "信中央皇庭小区", clock.now)
    assert body.startswith(b"%PDF") and len(PdfReader(io.BytesIO(body)).pages) >= 1


def test_building_notice_qr_encodes_the_public_report_address(client, make_site, building, make_staff, login):
    site = make_site()
    login(make_staff("site_manager", site))
    b4 = building(site, 4)
    page = client.get("/safety/notices").get_data(as_text=True)
    assert page.count('data-testid="notice"') == 12
    # The test client keeps cookies per host: give the forged host our sign-in.
    client.set_cookie("session", client.get_cookie("session").value, domain="evil.example")
    png = client.get(f"/safety/buildings/{b4.id}/qr.png", headers={"Host": "evil.example"})
    assert png.status_code == 200 and png.mimetype == "image/png"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.data)))
    assert [d.text for d in decoded] == [f"https://charge.example.cn/report/b/{b4.id}"]


def test_month_bounds_are_local_calendar_months():
    start, end = stats.month_bounds(2026, 12)
    assert (start.isoformat(), end.isoformat()) == ("2026-11-30T16:00:00", "2026-12-31T16:00:00")
    assert stats.week_start(date(2026, 11, 20)) == date(2026, 11, 16)
