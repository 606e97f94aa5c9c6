"""Staff administration: who may create whom, temporary passwords, deactivation, and the staff log."""

from __future__ import annotations

import re

from sqlalchemy import select

from chargeshed.accounts.models import (
    ROLE_ADMIN,
    ROLE_OPERATOR_STAFF,
    ROLE_PATROL,
    ROLE_SITE_MANAGER,
    StaffAction,
    User,
)
from chargeshed.charging.sessions import start_session
from chargeshed.extensions import db
from tests.manage.conftest import PASSWORD


def temp_password(page: str) -> str:
    return re.search(r'data-testid="temp-password">([^<]+)<', page)[1]


def test_admin_creates_a_site_manager_who_must_choose_a_password(client, tenants, sign_in):
    a, _b, admin, _resident = tenants
    sign_in(admin)
    created = client.post(
        "/manage/staff",
        data={
            "login": "wang.jl",
            "display_name": "王经理",
            "role": ROLE_SITE_MANAGER,
            "site": str(a.site.id),
            "operator": "",
        },
    )
    assert created.status_code == 200
    password = temp_password(created.get_data(as_text=True))
    db.session.rollback()  # what the page committed, not what its session still holds
    user = db.session.execute(select(User).where(User.login == "wang.jl")).scalar_one()
    assert (user.role, user.site_id, user.must_change_password) == (ROLE_SITE_MANAGER, a.site.id, True)

    client.post("/logout")
    assert client.post("/login", data={"login": "wang.jl", "password": password}).status_code == 302
    blocked = client.get("/manage/")
    assert blocked.status_code == 302 and blocked.headers["Location"].endswith("/account/password")
    changed = client.post(
        "/account/password", data={"current": password, "new": "my-own-secret", "confirm": "my-own-secret"}
    )
    assert changed.status_code == 302
    assert client.get(f"/manage/sites/{a.site.id}").status_code == 200
    log = db.session.execute(select(StaffAction)).scalars().all()
    assert [(r.action, r.actor_id, r.target) for r in log] == [("staff_created", admin.id, "wang.jl (site_manager)")]


def test_a_site_manager_manages_only_the_patrol_of_their_site(client, tenants, sign_in):
    a, b, _admin, _resident = tenants
    sign_in(a.users[ROLE_SITE_MANAGER])
    page = client.get("/manage/staff").get_data(as_text=True)
    assert a.users[ROLE_PATROL].login in page and b.users[ROLE_PATROL].login not in page
    assert a.users[ROLE_OPERATOR_STAFF].login not in page
    # Another role or another site is refused; a patrol is created in the manager's own site.
    refused = client.post("/manage/staff", data={"login": "boss", "role": ROLE_ADMIN, "site": str(a.site.id)})
    assert refused.status_code in (400, 403)
    assert db.session.execute(select(User).where(User.login == "boss")).scalar_one_or_none() is None
    elsewhere = client.post("/manage/staff", data={"login": "patrol.b", "role": ROLE_PATROL, "site": str(b.site.id)})
    assert elsewhere.status_code == 400
    assert db.session.execute(select(User).where(User.login == "patrol.b")).scalar_one_or_none() is None
    client.post("/manage/staff", data={"login": "patrol.new", "role": ROLE_PATROL, "site": str(a.site.id)})
    db.session.rollback()  # what the page committed, not what its session still holds
    assert db.session.execute(select(User.site_id).where(User.login == "patrol.new")).scalar_one() == a.site.id
    assert client.post(f"/manage/staff/{b.users[ROLE_PATROL].id}/password", data={}).status_code == 404
    assert (
        client.post(
            f"/manage/staff/{a.users[ROLE_SITE_MANAGER].id}/active", data={"active": "0", "reason": "x"}
        ).status_code
        == 404
    )  # not theirs to manage


def test_deactivating_signs_the_user_out_at_once_with_the_reason_in_the_log(app, client, tenants, sign_in):
    a, _b, admin, _resident = tenants
    patrol = a.users[ROLE_PATROL]
    other = app.test_client()
    assert other.post("/login", data={"login": patrol.login, "password": PASSWORD}).status_code == 302
    assert other.get("/safety/cases").status_code == 200

    sign_in(a.users[ROLE_SITE_MANAGER])
    no_reason = client.post(f"/manage/staff/{patrol.id}/active", data={"active": "0", "reason": ""})
    assert no_reason.status_code == 303 and other.get("/safety/cases").status_code == 200  # nothing changed
    client.post(f"/manage/staff/{patrol.id}/active", data={"active": "0", "reason": "离职"})
    signed_out = other.get("/safety/cases")
    assert signed_out.status_code == 302 and "/login" in signed_out.headers["Location"]
    assert other.post("/login", data={"login": patrol.login, "password": PASSWORD}).status_code != 302
    db.session.rollback()  # what the page committed, not what its session still holds
    (row,) = db.session.execute(select(StaffAction).where(StaffAction.action == "staff_deactivated")).scalars()
    assert (row.actor_id, row.target, row.reason, row.site_id) == (
        a.users[ROLE_SITE_MANAGER].id,
        patrol.login,
        "离职",
        a.site.id,
    )


def test_the_staff_log_names_who_stopped_which_charge_and_why_within_the_tenant(client, tenants, sign_in):
    a, b, _admin, resident = tenants
    session = start_session(resident.id, a.ports[0])
    db.session.commit()  # the caller owns the unit of work
    sign_in(a.users[ROLE_SITE_MANAGER])
    client.post(f"/manage/ports/{a.ports[0].id}/stop", data={"reason": "电缆破损"})
    log = client.get("/manage/audit").get_data(as_text=True)
    assert f"#{session.id}" in log and "电缆破损" in log and 'data-action="staff_stop"' in log
    sign_in(a.users[ROLE_OPERATOR_STAFF])
    assert "电缆破损" in client.get("/manage/audit").get_data(as_text=True)  # the operator's own shed
    sign_in(b.users[ROLE_SITE_MANAGER])
    assert "电缆破损" not in client.get("/manage/audit").get_data(as_text=True)


def test_a_temporary_password_and_a_reactivation_are_stored_by_the_page(client, tenants, sign_in):
    a, _b, _admin, _resident = tenants
    patrol = a.users[ROLE_PATROL]
    sign_in(a.users[ROLE_SITE_MANAGER])
    issued = client.post(f"/manage/staff/{patrol.id}/password", data={"reason": "忘记密码"})
    assert issued.status_code == 200
    password = temp_password(issued.get_data(as_text=True))
    db.session.rollback()  # what the page committed, not what its session still holds
    user = db.session.get(User, patrol.id)
    assert user.must_change_password and user.check_password(password) and not user.check_password(PASSWORD)

    assert client.post(f"/manage/staff/{patrol.id}/active", data={"active": "0", "reason": "休假"}).status_code == 303
    assert client.post(f"/manage/staff/{patrol.id}/active", data={"active": "1", "reason": ""}).status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    assert db.session.get(User, patrol.id).is_active_account
    log = db.session.execute(select(StaffAction).order_by(StaffAction.id)).scalars().all()
    assert [(r.action, r.target, r.reason) for r in log] == [
        ("password_reset", patrol.login, "忘记密码"),
        ("staff_deactivated", patrol.login, "休假"),
        ("staff_reactivated", patrol.login, ""),
    ]
    client.post("/logout")
    assert client.post("/login", data={"login": patrol.login, "password": password}).status_code == 302
