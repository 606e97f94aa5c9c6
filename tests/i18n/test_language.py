"""Residents read the pages in Chinese unless they switch to English."""

from __future__ import annotations


def fresh_get(app, client, url):
    """GET in its own app context, as in production: the shared test context would keep the locale in `g`."""
    with app.app_context():
        return client.get(url)


def test_port_page_is_chinese_by_default_and_english_after_switching(app, client, make_site):
    make_site()

    page = client.get("/p/T11001").get_data(as_text=True)
    assert "收费标准" in page and "注册账号" in page and ">空闲<" in page
    assert "Price" not in page and "Create an account" not in page

    switch = fresh_get(app, client, "/lang/en?next=/p/T11001")
    assert switch.status_code == 302 and switch.headers["Location"].endswith("/p/T11001")
    page = fresh_get(app, client, "/p/T11001").get_data(as_text=True)
    assert "Price" in page and "Create an account" in page and ">Free<" in page
    assert "收费标准" not in page

    fresh_get(app, client, "/lang/zh_CN")
    assert "收费标准" in fresh_get(app, client, "/p/T11001").get_data(as_text=True)


def test_signed_in_resident_sees_chinese_buttons_and_amounts(app, client, make_site, make_resident, login):
    make_site()
    login(make_resident(balance_fen=150))
    page = client.get("/p/T11001").get_data(as_text=True)
    assert "充值 ¥10.00 并开始充电" in page and "需 ¥3.00 才能开始" in page


def test_unknown_language_falls_back_to_chinese(app, client, make_site):
    make_site()
    fresh_get(app, client, "/lang/fr")
    assert "收费标准" in fresh_get(app, client, "/p/T11001").get_data(as_text=True)


def test_templates_follow_a_forced_locale_inside_a_request_and_return_to_the_page_language(app):
    from flask import render_template_string
    from flask_babel import force_locale

    with app.test_request_context("/"):
        assert render_template_string("{{ _('Wallet') }}") == "钱包"
        with force_locale("en"):
            assert render_template_string("{{ _('Wallet') }}") == "Wallet"
        assert render_template_string("{{ _('Wallet') }}") == "钱包"


def test_a_signed_in_residents_choice_is_kept_with_the_account(app, client, make_site, make_resident, login):
    """The choice also goes with the account: another browser without the cookie opens in English."""
    from chargeshed.accounts.models import User
    from chargeshed.extensions import db

    make_site()
    user = login(make_resident())
    assert fresh_get(app, client, "/lang/en").status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    assert db.session.get(User, user.id).locale == "en"
    phone = app.test_client()
    assert phone.post("/login", data={"login": user.login, "password": "secret-pass"}).status_code == 302
    assert "Price" in fresh_get(app, phone, "/p/T11001").get_data(as_text=True)
