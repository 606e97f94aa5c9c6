"""What a manager reads, in Chinese: port states in words, distinct column headings, the right nouns."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.extensions import db
from chargeshed.sites.models import Port


@pytest.fixture
def manager(client, make_site, make_staff, login):
    client.set_cookie("lang", "zh_CN")  # read as the manager reads it (this folder defaults to English)
    site = make_site(sheds=(2,))
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    return site


def test_port_page_says_what_the_device_reports_in_words(client, manager):
    port = db.session.execute(select(Port).order_by(Port.id)).scalars().first()
    port.ocpp_state = "Finishing"
    db.session.commit()
    page = client.get(f"/manage/ports/{port.id}").get_data(as_text=True)
    reported = re.search(r'data-testid="hardware-state">(.*?)<', page, re.S)[1]
    assert "已断电，车仍插着" in reported and "Finishing" not in reported


def test_shed_table_headings_are_distinct_and_in_service_is_not_occupied(client, manager):
    page = client.get(f"/manage/sheds/{manager.sheds[0].id}").get_data(as_text=True)
    headings = re.findall(r"<th[^>]*>(.*?)</th>", page.split("<tbody>")[0].split("<thead>")[-1])
    assert len(headings) == len(set(headings)) and "插座号" in headings
    assert "启用中" in page and "使用中" not in page


def test_nav_names_the_lists_not_their_counts(client, manager):
    page = client.get("/manage/sessions").get_data(as_text=True)
    assert "充电记录" in page and "充电次数" not in page
    cases = client.get("/safety/cases").get_data(as_text=True)
    assert "隐患工单" in cases and "工单数" not in cases


def test_goodwill_refunds_are_linked_from_the_money_menu(client, manager):
    page = client.get("/operator/").get_data(as_text=True)
    assert 'href="/operator/refunds/"' in page and "补偿退款" in page
    assert 'data-testid="nav-refunds"' in client.get("/operator/refunds/").get_data(as_text=True)
