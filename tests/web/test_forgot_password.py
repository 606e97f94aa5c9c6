"""Forgotten password: a code by SMS through the notifier (fake Aliyun API), rate-limited, expiring, single use."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chargeshed.accounts.models import User
from chargeshed.accounts.reset import PasswordReset
from chargeshed.extensions import db
from tests.fakes.fake_notify import FakeAliyunSms


@pytest.fixture
def aliyun(app):
    with FakeAliyunSms(templates={"SMS_RESET": ["code", "minutes"]}) as fake:
        app.config.update(
            ALIYUN_SMS_ACCESS_KEY_ID=fake.access_key_id,
            ALIYUN_SMS_ACCESS_KEY_SECRET=fake.secret,
            ALIYUN_SMS_SIGN_NAME=fake.sign_name,
            ALIYUN_SMS_API_BASE=fake.url,
            ALIYUN_SMS_TEMPLATES={"reset_code": "SMS_RESET"},
        )
        app.extensions.pop("notifiers", None)
        yield fake
        app.extensions.pop("notifiers", None)


def _reset(client, phone, code, password="brand-new-pass"):
    return client.post(
        "/password/reset", data={"phone": phone, "code": code, "password": password, "confirm": password}
    )


def test_a_code_by_sms_sets_a_new_password_once(app, client, make_resident, aliyun, clock):
    user = make_resident()
    phone = user.login
    asked = client.post("/password/forgot", data={"phone": phone})
    assert asked.status_code == 302 and f"phone={phone}" in asked.headers["Location"]
    assert len(aliyun.messages) == 1 and aliyun.messages[0]["phone"] == phone
    code = aliyun.messages[0]["params"]["code"]
    assert aliyun.messages[0]["params"]["minutes"] == "10"

    wrong = _reset(client, phone, "000000" if code != "000000" else "111111")
    assert "验证码错误、已使用或已过期" in wrong.get_data(as_text=True)
    done = _reset(client, phone, code)
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    assert client.post("/login", data={"login": phone, "password": "brand-new-pass"}).status_code == 302
    again = _reset(client, phone, code, "another-pass-1")
    assert "验证码错误、已使用或已过期" in again.get_data(as_text=True)  # single use


def test_codes_are_rate_limited_expire_and_do_not_reveal_accounts(app, client, make_resident, aliyun, clock):
    phone = make_resident().login
    client.post("/password/forgot", data={"phone": phone})
    soon = client.post("/password/forgot", data={"phone": phone})
    assert "请一分钟后再试" in soon.get_data(as_text=True) and len(aliyun.messages) == 1

    unknown = client.post("/password/forgot", data={"phone": "13999999999"})
    assert unknown.status_code == 302 and len(aliyun.messages) == 1  # same answer, nothing sent

    clock.advance(minutes=11)
    expired = _reset(client, phone, aliyun.messages[0]["params"]["code"])
    assert "已过期" in expired.get_data(as_text=True)
    assert db.session.query(User).filter_by(login=phone).one().check_password("secret-pass")


def test_five_wrong_guesses_burn_the_code(app, client, make_resident, aliyun):
    phone = make_resident().login
    client.post("/password/forgot", data={"phone": phone})
    code = aliyun.messages[0]["params"]["code"]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        _reset(client, phone, wrong)
    assert "已过期" in _reset(client, phone, code).get_data(as_text=True)


def test_a_wrong_try_is_stored_by_the_page_though_the_reset_fails(app, client, make_resident, aliyun):
    phone = make_resident().login
    client.post("/password/forgot", data={"phone": phone})
    code = aliyun.messages[0]["params"]["code"]
    wrong = _reset(client, phone, "000000" if code != "000000" else "111111")
    assert wrong.status_code == 200 and "验证码错误、已使用或已过期" in wrong.get_data(as_text=True)
    db.session.rollback()  # what the page committed, not what its session still holds
    assert db.session.execute(select(PasswordReset.guesses)).scalar_one() == 1


def test_without_sms_the_page_says_to_ask_the_property_office(app, client):
    page = client.get("/password/forgot").get_data(as_text=True)
    assert "请联系物业重置密码" in page
    assert "忘记密码？" in client.get("/login").get_data(as_text=True)


def test_a_reset_by_sms_signs_out_whoever_had_the_old_password(app, client, make_resident, login, aliyun):
    user = login(make_resident())
    other_browser = app.test_client()
    assert client.get("/wallet").status_code == 200
    other_browser.post("/password/forgot", data={"phone": user.login})
    assert _reset(other_browser, user.login, aliyun.messages[0]["params"]["code"]).status_code == 302
    assert client.get("/wallet").status_code == 302  # the old session is gone
