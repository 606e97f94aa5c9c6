"""The occupancy grid of a large site: a page of sheds at a time, and a poll that reads one row."""

from __future__ import annotations

import re

from sqlalchemy import select

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.extensions import db
from chargeshed.sites.models import Shed
from tests.manage.test_occupancy import HX, cells
from tests.statements import counted


def shed_names(html: str) -> list[str]:
    return re.findall(r'<article class="shed-block"[^>]*>\s*<header>\s*<h2><a [^>]*>([^<]+)</a>', html)


def test_a_site_with_many_sheds_is_shown_a_page_of_sheds_at_a_time(client, make_site, make_staff, login, tick):
    site = make_site(sheds=(2,) * 23)
    tick()
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    first = client.get(f"/manage/sites/{site.id}").get_data(as_text=True)
    assert len(shed_names(first)) == 10 and len(cells(first)) == 20
    assert "Sheds 1–10 of 23" in first and 'rel="next"' in first and 'rel="prev"' not in first
    last = client.get(f"/manage/sites/{site.id}?page=3").get_data(as_text=True)
    assert len(shed_names(last)) == 3 and "Sheds 21–23 of 23" in last and 'rel="next"' not in last
    assert set(shed_names(first)).isdisjoint(shed_names(last))
    # The page polls itself: the grid URL keeps the page.
    assert f'hx-get="/manage/sites/{site.id}/grid?page=3"' in last

    shed = db.session.execute(select(Shed).where(Shed.site_id == site.id).order_by(Shed.id.desc())).scalars().first()
    one = client.get(f"/manage/sites/{site.id}?shed={shed.id}").get_data(as_text=True)
    assert shed_names(one) == [shed.name] and len(cells(one)) == 2 and "All sheds" in one
    past_the_end = client.get(f"/manage/sites/{site.id}?page=99").get_data(as_text=True)
    assert shed_names(past_the_end) == shed_names(last)


def test_unchanged_poll_reads_the_version_row_not_the_ports(client, make_site, make_staff, login, tick, clock):
    site = make_site(sheds=(4, 4))
    tick()
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    url = f"/manage/sites/{site.id}/grid"
    etag = client.get(url, headers=HX).headers["ETag"]

    with counted() as statements:
        again = client.get(url, headers={**HX, "If-None-Match": etag})
    assert again.status_code == 304
    # The signed-in user, the site (access check) and the site's version row: no aggregate over ports.
    assert len(statements) <= 3, statements
    assert not [s for s in statements if re.search(r"\bFROM port\b|\bJOIN port\b", s)], statements
    assert any("occupancy_version" in s for s in statements)


def test_a_new_site_is_rendered_until_the_tick_has_recorded_it(client, make_site, make_staff, login, tick):
    site = make_site(sheds=(3,))
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    url = f"/manage/sites/{site.id}/grid"
    before = client.get(url, headers=HX)
    assert before.status_code == 200 and "ETag" not in before.headers
    tick()
    etag = client.get(url, headers=HX).headers["ETag"]
    assert client.get(url, headers={**HX, "If-None-Match": etag}).status_code == 304
