"""Staff sign-in: where each role lands, password change, sign-out, and the login rate limit."""

from __future__ import annotations

import pytest

from chargeshed import create_app
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_PATROL, ROLE_SITE_MANAGER
from chargeshed.extensions import db
from tests.manage.conftest import PASSWORD


@pytest.mark.parametrize(
    "role, landing",
    [
        (ROLE_ADMIN, "/manage/"),
        (ROLE_SITE_MANAGER, "/manage/"),
        (ROLE_OPERATOR_STAFF, "/manage/"),
        (ROLE_PATROL, "/safety/cases"),
    ],
)
def test_staff_land_in_their_back_office(client, make_site, make_staff, role, landing):
    user = make_staff(role, site=make_site())
    response = client.post("/login", data={"login": user.login, "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == landing


def test_residents_still_land_at_home_and_next_is_followed(client, make_resident, make_staff, make_site):
    resident = make_resident()
    signed_in = client.post("/login", data={"login": resident.login, "password": PASSWORD})
    assert signed_in.headers["Location"] == "/"
    client.post("/logout")
    manager = make_staff(ROLE_SITE_MANAGER, site=make_site())
    response = client.post("/login?next=/manage/usage", data={"login": manager.login, "password": PASSWORD})
    assert response.headers["Location"] == "/manage/usage"


def test_a_site_manager_lands_on_their_sites_occupancy(client, make_site, make_staff, login):
    site = make_site()
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    assert client.get("/manage/").headers["Location"] == f"/manage/sites/{site.id}"


def test_staff_sign_out_returns_to_the_sign_in_page(client, make_site, make_staff, login):
    login(make_staff(ROLE_SITE_MANAGER, site=make_site()))
    assert client.post("/logout").headers["Location"] == "/login"
    assert client.get("/manage/usage").status_code == 302


def test_password_change_checks_the_current_password_then_works(client, app, make_site, make_staff, login):
    user = login(make_staff(ROLE_SITE_MANAGER, site=make_site()))
    wrong = client.post(
        "/account/password", data={"current": "nope", "new": "brand-new-pass", "confirm": "brand-new-pass"}
    )
    assert wrong.status_code == 400 and "This is not your current password." in wrong.get_data(as_text=True)
    mismatch = client.post(
        "/account/password", data={"current": PASSWORD, "new": "brand-new-pass", "confirm": "brand-new-pas"}
    )
    assert mismatch.status_code == 400 and "The passwords do not match." in mismatch.get_data(as_text=True)
    short = client.post("/account/password", data={"current": PASSWORD, "new": "short", "confirm": "short"})
    assert short.status_code == 400 and "Use at least 8 characters." in short.get_data(as_text=True)
    same = client.post("/account/password", data={"current": PASSWORD, "new": PASSWORD, "confirm": PASSWORD})
    assert same.status_code == 400
    db.session.rollback()  # what the page committed, not what its session still holds
    db.session.refresh(user)
    assert user.check_password(PASSWORD)

    done = client.post(
        "/account/password", data={"current": PASSWORD, "new": "brand-new-pass", "confirm": "brand-new-pass"}
    )
    assert done.status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    db.session.refresh(user)
    assert user.check_password("brand-new-pass") and not user.check_password(PASSWORD)
    client.post("/logout")
    assert client.post("/login", data={"login": user.login, "password": PASSWORD}).status_code == 200
    assert client.post("/login", data={"login": user.login, "password": "brand-new-pass"}).status_code == 302


def test_residents_can_change_their_password_too(client, make_resident, login):
    login(make_resident())
    page = client.get("/account/password")
    assert page.status_code == 200 and "Change password" in page.get_data(as_text=True)


def test_login_is_rate_limited(tmp_path):
    """Eleven wrong passwords in a minute from one address: the eleventh is refused outright."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'limit.sqlite3'}",
            "SECRET_KEY": "test",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    with app.app_context():
        db.create_all()
        client = app.test_client()
        statuses = [
            client.post("/login", data={"login": "admin", "password": f"guess{n}"}).status_code for n in range(11)
        ]
        db.engine.dispose()
    assert statuses[:10] == [200] * 10 and statuses[10] == 429
