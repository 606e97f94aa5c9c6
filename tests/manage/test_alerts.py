"""Port alerts: debounced (offline after 4 minutes, fault after 2), cleared, acknowledged by a person."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.extensions import db
from chargeshed.ports import alerts
from chargeshed.ports.models import Alert
from chargeshed.sites.models import Port
from tests.conftest import START


@pytest.fixture
def watch(tick, clock):
    """One supervisor tick and one alert refresh per minute, for `minutes` minutes."""

    def run(minutes: int):
        for _ in range(minutes):
            clock.advance(minutes=1)
            tick()
            alerts.refresh(clock.now)

    return run


def all_alerts() -> list[Alert]:
    return list(db.session.execute(select(Alert).order_by(Alert.id)).scalars())


def test_offline_alert_only_after_four_silent_minutes_and_cleared_when_back(app, make_site, driver, tick, clock, watch):
    make_site(sheds=(2,))
    tick()  # heard from at START
    driver.set_offline("T11001")
    watch(3)
    assert all_alerts() == []  # 3 minutes of silence is not an alert yet
    watch(1)
    (alert,) = all_alerts()
    assert (alert.kind, alert.started_at, alert.raised_at, alert.cleared_at) == (
        "offline",
        START,
        START + timedelta(minutes=4),
        None,
    )
    watch(2)
    assert len(all_alerts()) == 1  # raised once, not every minute
    driver.set_offline("T11001", False)
    watch(1)
    db.session.refresh(alert)
    assert alert.cleared_at == START + timedelta(minutes=7)


def test_fault_alert_after_two_minutes_and_a_short_blip_is_none(app, make_site, driver, tick, watch):
    make_site(sheds=(2,))
    tick()
    driver.set_fault("T11001", "relay_welded")
    watch(1)  # fault first read at minute 1
    driver.set_fault("T11001", None)
    watch(1)
    assert all_alerts() == []  # a one-minute blip
    driver.set_fault("T11002", "ground_fault")
    watch(2)
    assert all_alerts() == []  # read at minute 3, now minute 4: under 2 minutes
    watch(1)
    (alert,) = all_alerts()
    assert (alert.kind, alert.detail, alert.started_at, alert.raised_at) == (
        "fault",
        "ground_fault",
        START + timedelta(minutes=3),
        START + timedelta(minutes=5),
    )


def test_refresh_is_idempotent_and_ports_under_maintenance_raise_nothing(app, make_site, driver, tick, clock, watch):
    make_site(sheds=(2,))
    tick()
    port = db.session.execute(select(Port).where(Port.code == "T11001")).scalar_one()
    port.status = "maintenance"
    db.session.commit()
    driver.set_offline("T11001")
    driver.set_offline("T11002")
    watch(6)
    assert alerts.refresh(clock.now) == {"raised": 0, "cleared": 0}
    assert [a.port.code for a in all_alerts()] == ["T11002"]


def test_staff_acknowledge_an_alert_and_colleagues_see_who(
    client, app, make_site, make_staff, login, driver, tick, watch
):
    site = make_site(sheds=(2,))
    tick()
    driver.set_offline("T11002")
    watch(5)
    (alert,) = all_alerts()
    wang = make_staff(ROLE_SITE_MANAGER, site=site, name="王经理")
    login(wang)
    page = client.get("/manage/alerts").get_data(as_text=True)
    assert f'data-alert="{alert.id}"' in page and "still open" in page and "Acknowledge" in page
    occupancy = client.get(f"/manage/sites/{site.id}").get_data(as_text=True)
    assert "1 open alert nobody has acknowledged" in occupancy

    acked = client.post(f"/manage/alerts/{alert.id}/ack", data={"back": "/manage/alerts"})
    assert acked.status_code == 302
    db.session.refresh(alert)
    assert alert.acknowledged_by_id == wang.id and alert.acknowledged_at is not None
    page = client.get("/manage/alerts").get_data(as_text=True)
    assert "acknowledged by 王经理" in page
    occupancy = client.get(f"/manage/sites/{site.id}").get_data(as_text=True)
    assert "open alert nobody has acknowledged" not in occupancy


def test_another_sites_manager_cannot_see_or_acknowledge_the_alert(client, tenants, sign_in, driver, tick, watch):
    a, b, _admin, _resident = tenants
    tick()
    driver.set_offline(b.ports[0].code)
    watch(5)
    (alert,) = all_alerts()
    sign_in(a.users[ROLE_SITE_MANAGER])
    assert f'data-alert="{alert.id}"' not in client.get("/manage/alerts").get_data(as_text=True)
    assert client.post(f"/manage/alerts/{alert.id}/ack").status_code == 404
    db.session.refresh(alert)
    assert alert.acknowledged_at is None
