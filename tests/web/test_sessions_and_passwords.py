"""Sessions end for real: a copied session or remember-me cookie stops working after sign-out, a
password change or deactivation. Guessable passwords are refused."""

from __future__ import annotations

from chargeshed.accounts.services import revoke_sessions
from chargeshed.extensions import db

PASSWORD = "secret-pass"


def _copy_cookies(source, target, names=("session", "remember_token")) -> None:
    for name in names:
        cookie = source.get_cookie(name)
        if cookie is not None:
            target.set_cookie(name, cookie.value)


def _signed_in(client) -> bool:
    """True when /wallet (residents only) opens rather than sending to the sign-in page."""
    return client.get("/wallet").status_code == 200


def test_a_copied_session_cookie_stops_working_after_sign_out(app, client, make_resident, login):
    login(make_resident())
    thief = app.test_client()
    _copy_cookies(client, thief, names=("session",))
    assert _signed_in(thief)
    client.post("/logout")
    assert not _signed_in(client)
    assert not _signed_in(thief)


def test_a_copied_remember_me_cookie_stops_working_after_sign_out(app, client, make_resident):
    user = make_resident()
    client.post("/login", data={"login": user.login, "password": PASSWORD, "remember": "y"})
    assert client.get_cookie("remember_token") is not None
    thief = app.test_client()
    _copy_cookies(client, thief, names=("remember_token",))
    assert _signed_in(thief)  # the remember-me cookie alone signs in
    client.post("/logout")
    fresh_thief = app.test_client()
    _copy_cookies(thief, fresh_thief, names=("remember_token",))
    assert not _signed_in(fresh_thief)


def test_a_password_change_ends_other_sessions_but_keeps_this_one(app, client, make_resident, login):
    user = login(make_resident())
    laptop = app.test_client()
    laptop.post("/login", data={"login": user.login, "password": PASSWORD, "remember": "y"})
    stolen = app.test_client()
    _copy_cookies(laptop, stolen)
    assert _signed_in(laptop) and _signed_in(stolen)

    changed = client.post(
        "/account/password", data={"current": PASSWORD, "new": "Plum-rain 4 sheds", "confirm": "Plum-rain 4 sheds"}
    )
    assert changed.status_code == 302
    assert _signed_in(client)
    assert not _signed_in(laptop)
    assert not _signed_in(stolen)


def test_revoke_sessions_signs_out_everywhere_and_deactivation_ends_sessions(app, client, make_resident, login):
    from chargeshed.accounts.models import User

    user = login(make_resident())
    assert _signed_in(client)
    revoke_sessions(db.session.get(User, user.id))
    db.session.commit()
    assert not _signed_in(client)

    login(user)
    assert _signed_in(client)
    db.session.get(User, user.id).is_active_account = False
    db.session.commit()
    assert not _signed_in(client)


def test_cookies_from_before_the_token_format_are_not_accepted(app, client, make_resident):
    user = make_resident()
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)  # an id alone, as a forged or old cookie would carry
        session["_fresh"] = True
    assert not _signed_in(client)


def test_registration_refuses_common_and_personal_passwords(client, make_site):
    make_site()
    client.set_cookie("lang", "en")
    phone = "13912345678"
    for weak in ("12345678", "password", "qwertyui", phone, f"{phone}a", "11111111"):
        response = client.post("/register", data={"phone": phone, "password": weak, "confirm": weak})
        assert response.status_code == 200, weak
        text = response.get_data(as_text=True)
        assert "too easy to guess" in text or "phone number or login" in text, weak
    ok = client.post(
        "/register", data={"phone": phone, "password": "Plum-rain 4 sheds", "confirm": "Plum-rain 4 sheds"}
    )
    assert ok.status_code == 302


def test_each_refused_password_gets_the_reason_that_fits_it(client, make_site):
    """A common password is called guessable even when it happens to be a piece of the phone number
    (12345678 in 13912345678); a password containing the number is told to leave the number out."""
    make_site()
    client.set_cookie("lang", "en")
    phone = "13912345678"
    for password, message in (
        ("12345678", "too easy to guess"),
        ("password", "too easy to guess"),
        (phone, "Do not use your phone number or login"),
        (f"x{phone}", "Do not use your phone number or login"),
    ):
        text = client.post("/register", data={"phone": phone, "password": password, "confirm": password}).get_data(
            as_text=True
        )
        assert message in text, password
        other = "too easy to guess" if message.startswith("Do not") else "Do not use your phone number"
        assert other not in text, password


def test_password_change_refuses_a_guessable_password(client, make_resident, login):
    client.set_cookie("lang", "en")
    user = login(make_resident())
    response = client.post("/account/password", data={"current": PASSWORD, "new": "password1", "confirm": "password1"})
    assert response.status_code == 400 and "too easy to guess" in response.get_data(as_text=True)
    own_phone = client.post("/account/password", data={"current": PASSWORD, "new": user.login, "confirm": user.login})
    assert own_phone.status_code == 400 and "phone number or login" in own_phone.get_data(as_text=True)


class _FakeTime:
    """Stands in for the time module of the rate limiter's in-memory storage: moved by hand."""

    def __init__(self):
        import time

        self.now = time.time()

    def time(self) -> float:
        return self.now


def test_registration_stops_telling_whether_a_number_is_registered_after_its_daily_budget(tmp_path, monkeypatch):
    """A taken number is said so (the person should sign in), but one address gets at most 10 such
    answers a day: after that every registration from it gets the same refusal, taken number or not,
    as sign-in never tells whether a number has an account."""
    import limits.storage.memory

    from chargeshed import create_app
    from chargeshed.accounts.models import ROLE_RESIDENT, User
    from chargeshed.accounts.services import create_user

    clock = _FakeTime()
    monkeypatch.setattr(limits.storage.memory, "time", clock)
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'limits.db'}",
            "SECRET_KEY": "test",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    with app.app_context():
        db.create_all()
        taken = [create_user(f"1391111{n:04d}", PASSWORD, ROLE_RESIDENT).login for n in range(12)]
        db.session.commit()
    client = app.test_client()
    client.set_cookie("lang", "en")
    strong = "Plum-rain 4 sheds"

    def register(phone: str):
        clock.now += 61  # slower than the 5-a-minute limit on sign-ups, so only the daily budget counts
        return client.post("/register", data={"phone": phone, "password": strong, "confirm": strong})

    for phone in taken[:10]:
        answer = register(phone)
        assert answer.status_code == 200 and "already has an account" in answer.get_data(as_text=True)
    after_taken, after_free = register(taken[10]), register("13922223333")
    for answer in (after_taken, after_free):
        assert answer.status_code == 429
        assert "already has an account" not in answer.get_data(as_text=True)
    assert after_taken.get_data() == after_free.get_data()
    with app.app_context():
        assert User.query.filter_by(login="13922223333").first() is None  # and no account was made
    clock.now += 24 * 3600 + 1  # the next day the number is told again
    assert "already has an account" in register(taken[11]).get_data(as_text=True)


def test_the_pay_page_reading_its_user_in_its_own_row_refuses_ended_sessions_too(
    app, client, make_site, make_resident, login
):
    """The scan page loads the signed-in user in the same statement as the port: a revoked cookie or
    a deactivated account still sees the anonymous page, with no wallet and no start button."""
    from chargeshed.accounts.models import User

    make_site()
    user = login(make_resident(balance_fen=1234))
    page = client.get("/p/T11001").get_data(as_text=True)
    assert "12.34" in page and 'data-testid="start"' in page and 'href="/wallet"' in page

    revoke_sessions(db.session.get(User, user.id))
    db.session.commit()
    page = client.get("/p/T11001").get_data(as_text=True)
    assert "12.34" not in page and 'data-testid="start"' not in page and 'href="/wallet"' not in page

    login(user)
    db.session.get(User, user.id).is_active_account = False
    db.session.commit()
    page = client.get("/p/T11001").get_data(as_text=True)
    assert "12.34" not in page and 'data-testid="start"' not in page and 'href="/wallet"' not in page


def test_a_signed_in_scan_of_an_unknown_code_still_shows_who_is_signed_in(client, make_site, make_resident, login):
    make_site()
    login(make_resident())
    assert client.get("/p/%00x").status_code == 400  # a NUL is refused before any lookup
    for code in ("NOSUCH1", "A" * 400, "中"):
        missing = client.get(f"/p/{code}")
        assert missing.status_code == 404, code
        assert 'href="/wallet"' in missing.get_data(as_text=True)
    # The next page reads its user plainly: nothing of the scan is left over.
    assert client.get("/wallet").status_code == 200


def test_a_remember_me_cookie_alone_opens_the_signed_in_pay_page(app, client, make_site, make_resident):
    make_site()
    user = make_resident(balance_fen=1234)
    client.post("/login", data={"login": user.login, "password": PASSWORD, "remember": "y"})
    phone = app.test_client()
    _copy_cookies(client, phone, names=("remember_token",))
    page = phone.get("/p/T11001").get_data(as_text=True)
    assert "12.34" in page and 'data-testid="start"' in page
