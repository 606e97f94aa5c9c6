"""Ports and sheds: maintenance, staff stop, rename, retire, bulk add, new sheds, and bad input."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import func, select

from chargeshed.accounts.models import ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER
from chargeshed.charging.models import ChargeSession, SessionEvent
from chargeshed.charging.sessions import start_session
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.ports.models import PortCommand, PortEvent
from chargeshed.ports.sim import Bike
from chargeshed.sites.models import Port, Shed


@pytest.fixture
def site(make_site):
    return make_site(sheds=(3,))


@pytest.fixture
def manager(site, make_staff, login):
    return login(make_staff(ROLE_SITE_MANAGER, site=site, name="王经理"))


def port(number: int, shed_id: int = 1) -> Port:
    return db.session.execute(select(Port).where(Port.shed_id == shed_id, Port.number == number)).scalar_one()


def port_count(shed_id: int = 1) -> int:
    return db.session.execute(select(func.count(Port.id)).where(Port.shed_id == shed_id)).scalar_one()


def test_maintenance_shows_on_the_residents_page_and_blocks_a_start(
    client, site, manager, make_resident, make_staff, login
):
    target = port(1)
    assert client.post(f"/manage/ports/{target.id}/maintenance", data={"mode": "on"}).status_code == 302
    command = db.session.execute(select(PortCommand).where(PortCommand.port_id == target.id)).scalar_one()
    assert (command.kind, command.argument) == ("set_available", "off")

    resident = make_resident(balance_fen=1000)
    login(resident)
    page = client.get("/p/T11001").get_data(as_text=True)
    assert 'data-state="maintenance"' in page and "under maintenance" in page
    assert client.post("/p/T11001/start").status_code == 302
    assert db.session.query(ChargeSession).count() == 0 and wallet_balance(resident.id) == 1000

    login(manager)
    client.post(f"/manage/ports/{target.id}/maintenance", data={"mode": "off"})
    db.session.refresh(target)
    assert target.status == "active"
    kinds = db.session.execute(
        select(PortEvent.kind, PortEvent.detail).where(PortEvent.port_id == target.id).order_by(PortEvent.id)
    ).all()
    assert [k for k, _ in kinds] == ["maintenance_on", "maintenance_off"] and kinds[0][1] == "王经理"


def test_maintenance_is_refused_while_a_charge_runs(client, site, manager, make_resident):
    start_session(make_resident(balance_fen=1000).id, port(2))
    response = client.post(f"/manage/ports/{port(2).id}/maintenance", data={"mode": "on"}, follow_redirects=True)
    assert "A charge is running on this port" in response.get_data(as_text=True)
    assert port(2).status == "active"


def test_staff_stop_needs_a_reason_then_ends_and_settles_the_charge(
    client, site, manager, make_resident, driver, clock, tick
):
    resident = make_resident(balance_fen=1000)
    driver.plug("T11002", bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    session = start_session(resident.id, port(2))
    tick()
    clock.advance(minutes=30)
    tick()

    no_reason = client.post(f"/manage/ports/{port(2).id}/stop", data={"reason": " "})
    assert no_reason.status_code == 400
    assert "Say why you stop this charge." in no_reason.get_data(as_text=True)
    db.session.refresh(session)
    assert session.state == "charging"

    stopped = client.post(f"/manage/ports/{port(2).id}/stop", data={"reason": "电缆破损"})
    assert stopped.status_code == 302
    db.session.refresh(session)
    assert (session.state, session.end_reason, session.cost_fen) == ("ended", "staff_stop", 50)
    assert wallet_balance(resident.id) == 1000 - 50
    ended = db.session.execute(
        select(SessionEvent).where(SessionEvent.session_id == session.id, SessionEvent.kind == "ended")
    ).scalar_one()
    assert ended.detail == "王经理: 电缆破损"
    assert check_ledger() == []
    tick()
    assert driver.read("T11002").relay_on is False


def test_rename_changes_the_label_residents_see(client, site, manager):
    client.post(f"/manage/ports/{port(3).id}/rename", data={"label": "靠门第一个"})
    assert "靠门第一个" in client.get("/p/T11003").get_data(as_text=True)
    too_long = client.post(f"/manage/ports/{port(3).id}/rename", data={"label": "x" * 81})
    assert too_long.status_code == 400 and "Use at most 80 characters." in too_long.get_data(as_text=True)
    assert port(3).label == "靠门第一个"


def test_retired_port_leaves_the_grid_but_keeps_its_history(client, site, manager, make_resident):
    from chargeshed.charging.sessions import end_session

    session = start_session(make_resident(balance_fen=1000).id, port(3))
    end_session(session, "user_stop")
    assert client.post(f"/manage/ports/{port(3).id}/retire").status_code == 302
    grid = client.get(f"/manage/sites/{site.id}").get_data(as_text=True)
    assert f'data-port="{port(3).id}"' not in grid and f'data-port="{port(2).id}"' in grid
    page = client.get(f"/manage/ports/{port(3).id}").get_data(as_text=True)
    assert 'data-state="retired"' in page
    assert "Stopped by the resident" in page  # the old charge is still listed
    assert db.session.get(ChargeSession, session.id) is not None
    assert "no longer in service" in client.get("/p/T11003").get_data(as_text=True)
    assert (
        client.post(f"/manage/ports/{port(3).id}/maintenance", data={"mode": "off"}, follow_redirects=True).status_code
        == 200
    )
    assert port(3).status == "retired"


def test_bulk_add_ports_with_fresh_codes(client, site, manager):
    response = client.post("/manage/sheds/1/ports", data={"numbers": "4-6, 10"})
    assert response.status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    added = (
        db.session.execute(select(Port).where(Port.shed_id == 1, Port.number > 3).order_by(Port.number)).scalars().all()
    )
    assert [p.number for p in added] == [4, 5, 6, 10]
    assert len({p.code for p in added}) == 4 and all(len(p.code) == 6 for p in added)
    assert [p.label for p in added][:1] == ["1号车棚 4号"]


@pytest.mark.parametrize(
    "numbers, message",
    [
        ("2-5", "This shed already has ports numbered 2, 3 (retired ports keep their number). Nothing was added."),
        ("7, 8, 7", "These numbers are listed twice: 7."),
        ("abc", "Write numbers and ranges like 1-12, 15, 20-24."),
        ("0-4", "Port numbers go from 1 to 999."),
        ("", "Enter the numbers of the new ports."),
        ("1-300", "Add at most 200 ports at a time."),
    ],
)
def test_bad_port_numbers_are_refused_and_nothing_is_saved(client, site, manager, numbers, message):
    response = client.post("/manage/sheds/1/ports", data={"numbers": numbers})
    assert response.status_code == 400
    assert message in html.unescape(response.get_data(as_text=True))
    assert port_count() == 3


def test_a_retired_ports_number_stays_taken(client, site, manager):
    client.post(f"/manage/ports/{port(1).id}/retire")
    response = client.post("/manage/sheds/1/ports", data={"numbers": "1"})
    assert response.status_code == 400 and "already has ports numbered 1" in response.get_data(as_text=True)


def test_add_a_shed_with_its_ports_all_or_nothing(client, site, manager):
    form = {"name": "4号车棚", "location": "12栋西侧", "operator_id": "1", "tariff_id": "1", "numbers": "1-8"}
    bad = client.post(f"/manage/sites/{site.id}/sheds/new", data={**form, "numbers": "1-3, 3"})
    assert bad.status_code == 400 and "listed twice" in bad.get_data(as_text=True)
    assert db.session.query(Shed).count() == 1

    taken = client.post(f"/manage/sites/{site.id}/sheds/new", data={**form, "name": "1号车棚"})
    assert taken.status_code == 400 and "already has a shed with that name" in taken.get_data(as_text=True)

    wrong_choice = client.post(f"/manage/sites/{site.id}/sheds/new", data={**form, "operator_id": "99"})
    assert wrong_choice.status_code == 400

    created = client.post(f"/manage/sites/{site.id}/sheds/new", data=form)
    assert created.status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    shed = db.session.execute(select(Shed).where(Shed.name == "4号车棚")).scalar_one()
    assert (shed.location, port_count(shed.id)) == ("12栋西侧", 8)
    assert "4号车棚" in client.get(f"/manage/sites/{site.id}").get_data(as_text=True)


def test_rename_a_shed(client, site, manager):
    assert client.post("/manage/sheds/1", data={"name": "北棚", "location": "4栋北"}).status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    assert db.session.get(Shed, 1).name == "北棚"
    empty = client.post("/manage/sheds/1", data={"name": "", "location": ""})
    assert empty.status_code == 400
    assert "Enter the shed's name." in html.unescape(empty.get_data(as_text=True))
    assert db.session.get(Shed, 1).name == "北棚"


def test_operator_staff_manage_ports_but_not_the_sheds_themselves(client, site, make_staff, login):
    shed = db.session.get(Shed, 1)
    login(make_staff(ROLE_OPERATOR_STAFF, operator_id=shed.operator_id))
    assert client.post("/manage/sheds/1/ports", data={"numbers": "9"}).status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    assert port_count() == 4
    assert client.post("/manage/sheds/1", data={"name": "改名"}).status_code == 403
    assert client.get(f"/manage/sites/{site.id}/sheds/new").status_code == 403


def test_site_a_manager_editing_site_b_port_gets_404_and_nothing_changes(client, tenants, sign_in):
    a, b, _admin, _resident = tenants
    sign_in(a.users[ROLE_SITE_MANAGER])
    target = b.ports[0]
    for url, data in [
        (f"/manage/ports/{target.id}/rename", {"label": "hacked"}),
        (f"/manage/ports/{target.id}/maintenance", {"mode": "on"}),
        (f"/manage/ports/{target.id}/retire", {}),
        (f"/manage/ports/{target.id}/stop", {"reason": "because"}),
        (f"/manage/sheds/{b.shed.id}/ports", {"numbers": "50"}),
        (f"/manage/sheds/{b.shed.id}", {"name": "hacked"}),
    ]:
        assert client.post(url, data=data).status_code == 404, url
    db.session.refresh(target)
    assert (target.label, target.status) != ("hacked", "retired") and target.status == "active"
    assert port_count(b.shed.id) == 3 and db.session.get(Shed, b.shed.id).name == "B-only shed 7Q"


def test_a_refusal_or_a_clash_undoes_only_the_services_own_work(app, site, clock, monkeypatch):
    """The services work in a savepoint: the caller's own change stays and its transaction goes on."""
    from chargeshed.sites import admin

    shed = db.session.get(Shed, 1)
    shed.location = "4栋北"  # the caller's change, not committed
    with pytest.raises(admin.Refused) as taken:
        admin.add_ports(shed, [4, 2], clock.now)
    assert (taken.value.code, taken.value.numbers) == ("numbers_taken", [2])
    with monkeypatch.context() as patched:
        patched.setattr(admin, "_fresh_codes", lambda count: ["T11001"] * count)  # a code someone just took
        with pytest.raises(admin.Refused) as clash:
            admin.add_ports(shed, [4], clock.now)
    assert clash.value.code == "conflict"
    with pytest.raises(admin.Refused) as twice:  # the same number twice: the database refuses the second
        admin.add_shed(site, "4号车棚", "", shed.operator_id, shed.tariff_id, [1, 1], clock.now)
    assert twice.value.code == "conflict"
    added = admin.add_ports(shed, [4], clock.now)
    db.session.commit()
    assert [p.number for p in added] == [4] and port_count() == 4
    assert db.session.get(Shed, 1).location == "4栋北" and db.session.query(Shed).count() == 1
