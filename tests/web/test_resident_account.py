"""Registration asks building, unit and room (房号 such as 1201); the resident menu reaches the password page."""

from __future__ import annotations

from chargeshed.accounts.models import Bike, User
from chargeshed.extensions import db

FORM = {"phone": "13800001234", "password": "long-enough", "confirm": "long-enough", "building": "4", "unit": "2"}


def test_a_room_number_like_1201_is_accepted_and_kept(app, client):
    page = client.get("/register").get_data(as_text=True)
    assert "楼栋" in page and "单元" in page and "房号（如 1201）" in page
    done = client.post("/register", data={**FORM, "room": " 1201室 "})
    assert done.status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    user = db.session.query(User).filter_by(login="13800001234").one()
    assert (user.building, user.unit, user.room) == (4, 2, "1201")


def test_1201_typed_as_the_unit_points_to_the_room_field_and_nothing_is_saved(app, client):
    page = client.post("/register", data={**FORM, "unit": "1201"})
    assert page.status_code == 200 and "房号（如 1201）请填在“房号”一栏" in page.get_data(as_text=True)
    bad_room = client.post("/register", data={**FORM, "room": "十二楼"})
    assert "请填写门牌上的房号" in bad_room.get_data(as_text=True)
    assert db.session.query(User).count() == 0


def test_the_resident_menu_links_to_the_password_change(app, client, make_resident, login):
    login(make_resident())
    home = client.get("/").get_data(as_text=True)
    assert 'data-testid="password-link"' in home and 'href="/account/password"' in home
    assert client.get("/account/password").status_code == 200


def test_a_bike_is_registered_and_removed_by_the_page(app, client, make_resident, login):
    client.set_cookie("lang", "en")
    user = login(make_resident())
    assert client.post("/bikes", data={"plate": "湘A12345", "note": "绿色"}).status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    bike = db.session.query(Bike).one()
    assert (bike.owner_id, bike.plate, bike.note) == (user.id, "湘A12345", "绿色")
    taken = client.post("/bikes", data={"plate": "湘A12345"})
    assert taken.status_code == 200 and "This plate is already registered." in taken.get_data(as_text=True)
    assert client.post(f"/bikes/{bike.id}/delete").status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    assert db.session.query(Bike).count() == 0
