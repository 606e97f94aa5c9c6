"""The account services flush and leave the commit to their caller; a taken login or plate undoes
only the service's own work; a refused password-reset try is counted in the caller's transaction."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, insert, select, update

from chargeshed.accounts import reset as password_reset
from chargeshed.accounts import staff
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_PATROL, ROLE_RESIDENT, Bike, StaffAction, User
from chargeshed.accounts.passwords import change_password
from chargeshed.accounts.services import add_bike, create_user, register_resident, remove_bike, set_locale
from chargeshed.extensions import db
from chargeshed.notify.models import Notification

PASSWORD = "secret-pass"


def _count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_user_and_a_bike_are_kept_only_when_the_caller_commits(app):
    create_user("13700000001", PASSWORD, ROLE_RESIDENT)
    register_resident("13700000002", PASSWORD, 4, 2, None)
    db.session.rollback()
    assert _count(User) == 0

    user = create_user("13700000001", PASSWORD, ROLE_RESIDENT)
    db.session.commit()
    add_bike(user, "ZZA12345")
    db.session.rollback()
    assert _count(Bike) == 0
    bike = add_bike(user, "ZZA12345")
    db.session.commit()
    assert remove_bike(user, bike.id)
    db.session.rollback()
    assert db.session.execute(select(Bike.plate)).scalars().all() == ["ZZA12345"]


def test_a_taken_login_or_plate_undoes_only_the_services_own_work(app):
    owner = create_user("13700000001", PASSWORD, ROLE_RESIDENT)
    add_bike(owner, "ZZA12345")
    db.session.commit()
    owner.display_name = "Zhang San"  # the caller's own change, not committed
    with pytest.raises(ValueError, match="exists"):
        create_user("13700000001", "another-pass", ROLE_RESIDENT)
    assert register_resident("13700000001", "another-pass", 4, 2, None) is None
    assert add_bike(owner, "ZZA12345") is None
    db.session.commit()  # the caller's transaction is still usable
    db.session.expire_all()
    assert owner.display_name == "Zhang San" and owner.check_password(PASSWORD)
    assert (_count(User), _count(Bike)) == (1, 1)


def test_a_language_and_a_password_change_are_kept_only_when_the_caller_commits(app):
    user = create_user("13700000001", PASSWORD, ROLE_RESIDENT)
    db.session.commit()
    token = user.session_token
    set_locale(user, "en")
    assert change_password(user, PASSWORD, "Plum-rain 4 sheds") is None
    db.session.rollback()
    assert (user.locale, user.session_token) == (None, token) and user.check_password(PASSWORD)
    set_locale(user, "en")
    assert change_password(user, PASSWORD, "Plum-rain 4 sheds") is None
    db.session.commit()
    db.session.expire_all()
    assert user.locale == "en" and user.session_token != token and user.check_password("Plum-rain 4 sheds")


def test_staff_changes_are_kept_with_their_log_only_when_the_caller_commits(app, make_site):
    site = make_site()
    admin = create_user("root", PASSWORD, ROLE_ADMIN)
    db.session.commit()
    new = staff.NewStaff("li.patrol", "Patrol Li", ROLE_PATROL, site_id=site.id)
    staff.create_staff(admin, new)
    db.session.rollback()
    assert (_count(User), _count(StaffAction)) == (1, 0)

    patrol, first = staff.create_staff(admin, new)
    db.session.commit()
    staff.reset_password(admin, patrol, "forgot it")
    assert staff.set_active(admin, patrol, False, "left")
    db.session.rollback()
    assert patrol.is_active_account and patrol.check_password(first)
    assert db.session.execute(select(StaffAction.action)).scalars().all() == ["staff_created"]

    temporary = staff.reset_password(admin, patrol, "forgot it")
    assert staff.set_active(admin, patrol, False, "left")
    db.session.commit()
    db.session.expire_all()
    assert not patrol.is_active_account and patrol.check_password(temporary)
    assert db.session.execute(select(StaffAction.action).order_by(StaffAction.id)).scalars().all() == [
        "staff_created",
        "password_reset",
        "staff_deactivated",
    ]


def test_a_login_taken_meanwhile_is_refused_and_undoes_only_the_new_user(app, make_site, monkeypatch):
    """The login is checked first; one taken after the check is caught by the database's unique key."""
    site = make_site()
    admin = create_user("root", PASSWORD, ROLE_ADMIN)
    db.session.commit()
    admin.display_name = "Root"  # the caller's own change, not committed
    make_password = staff.temporary_password

    def clash() -> str:  # the login is taken between the check and the insert
        db.session.execute(insert(User).values(login="li.patrol", role=ROLE_PATROL, password_hash="x"))
        return make_password()

    monkeypatch.setattr(staff, "temporary_password", clash)
    with pytest.raises(staff.StaffRefused) as taken:
        staff.create_staff(admin, staff.NewStaff("li.patrol", "Patrol Li", ROLE_PATROL, site_id=site.id))
    assert taken.value.code == "login_taken"
    db.session.commit()  # the caller's transaction is still usable
    db.session.expire_all()
    assert admin.display_name == "Root" and _count(StaffAction) == 0
    assert db.session.execute(select(User.password_hash).where(User.login == "li.patrol")).scalar_one() == "x"


@pytest.fixture
def code(app, clock):
    """A reset code sent to a resident, committed; returns (phone, code)."""
    phone = create_user("13700000001", PASSWORD, ROLE_RESIDENT).login
    db.session.commit()
    password_reset.request_code(phone, now=clock.now)
    db.session.commit()
    return phone, db.session.execute(select(Notification.data)).scalar_one()["code"]


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _guesses() -> int:
    return db.session.execute(select(password_reset.PasswordReset.guesses)).scalar_one()


def test_a_refused_try_is_counted_in_the_callers_transaction(code, clock):
    phone, right = code
    with pytest.raises(password_reset.ResetRefused):
        password_reset.reset_password(phone, _wrong(right), "brand-new-pass", now=clock.now)
    db.session.rollback()  # a caller that throws the try away: it is not counted
    assert _guesses() == 0
    for _ in range(password_reset.MAX_GUESSES):
        with pytest.raises(password_reset.ResetRefused):
            password_reset.reset_password(phone, _wrong(right), "brand-new-pass", now=clock.now)
        db.session.commit()
    assert _guesses() == password_reset.MAX_GUESSES
    with pytest.raises(password_reset.ResetRefused):  # burnt: the right code no longer works
        password_reset.reset_password(phone, right, "brand-new-pass", now=clock.now)


def test_tries_counted_meanwhile_are_not_lost(code, clock):
    """A try counts on the database's figure, not on the one this session read earlier."""
    phone, right = code
    stale = db.session.execute(select(password_reset.PasswordReset)).scalar_one()
    assert stale.guesses == 0
    with db.engine.begin() as other:  # other tries of the same code, meanwhile
        other.execute(update(password_reset.PasswordReset).values(guesses=password_reset.MAX_GUESSES - 1))
    with pytest.raises(password_reset.ResetRefused):
        password_reset.reset_password(phone, _wrong(right), "brand-new-pass", now=clock.now)
    db.session.commit()
    with pytest.raises(password_reset.ResetRefused):
        password_reset.reset_password(phone, right, "brand-new-pass", now=clock.now)
    db.session.rollback()
    assert _guesses() == password_reset.MAX_GUESSES


@pytest.mark.pg
@pytest.mark.parametrize("db_url", ["pg"], indirect=True)  # row locks: SQLite runs one writer at a time anyway
def test_a_try_waits_for_one_still_open_and_is_refused_when_that_one_burnt_the_code(app, code, clock):
    """Tries running at once cannot get past MAX_GUESSES: the second waits for the first's row lock."""
    phone, right = code
    db.session.execute(update(password_reset.PasswordReset).values(guesses=password_reset.MAX_GUESSES - 1))
    db.session.commit()
    with pytest.raises(password_reset.ResetRefused):  # the last guess, counted but not committed yet
        password_reset.reset_password(phone, _wrong(right), "brand-new-pass", now=clock.now)
    outcome = []

    def right_code_meanwhile() -> None:
        with app.app_context():
            try:
                password_reset.reset_password(phone, right, "brand-new-pass", now=clock.now)
                db.session.commit()
                outcome.append("changed")
            except password_reset.ResetRefused:
                db.session.rollback()
                outcome.append("refused")

    other = threading.Thread(target=right_code_meanwhile)
    other.start()
    other.join(timeout=1)
    assert other.is_alive() and outcome == []  # waiting for the try still open
    db.session.commit()
    other.join(timeout=30)
    assert outcome == ["refused"] and _guesses() == password_reset.MAX_GUESSES
    assert db.session.execute(select(User)).scalar_one().check_password(PASSWORD)


def test_the_right_code_sets_the_password_when_the_caller_commits(code, clock):
    phone, right = code
    password_reset.reset_password(phone, right, "brand-new-pass", now=clock.now)
    db.session.rollback()
    assert db.session.execute(select(User)).scalar_one().check_password(PASSWORD)
    user = password_reset.reset_password(phone, right, "brand-new-pass", now=clock.now)
    db.session.commit()
    db.session.expire_all()
    assert user.check_password("brand-new-pass") and _guesses() == 1  # the try thrown away is not counted
    with pytest.raises(password_reset.ResetRefused):  # used
        password_reset.reset_password(phone, right, "another-pass-1", now=clock.now)


def test_the_create_user_command_commits(app, runner):
    result = runner.invoke(args=["create-user", "root", "--password", "long-enough-1"])
    assert result.exit_code == 0 and "created admin root" in result.output
    db.session.rollback()  # what the command committed, not what its session still holds
    assert db.session.execute(select(User.role).where(User.login == "root")).scalar_one() == ROLE_ADMIN
    taken = runner.invoke(args=["create-user", "root", "--password", "long-enough-1"])
    assert taken.exit_code != 0 and "user root exists" in taken.output
