"""Text that does not come from our templates is Chinese too: Flask-Login's messages and the CSV export."""

from __future__ import annotations

import csv
import io
import re

from flask_babel import force_locale

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.accounts.services import create_user
from chargeshed.extensions import db, login_manager

ENGLISH_WORD = re.compile(r"[A-Za-z]{3,}")
UNITS = {"kWh"}


def english_words(text: str) -> set[str]:
    return set(ENGLISH_WORD.findall(text)) - UNITS


def test_every_message_flask_login_shows_is_translated(app):
    with app.test_request_context(), force_locale("zh_CN"):
        for name in ("login_message", "needs_refresh_message"):
            shown = login_manager.localize_callback(getattr(login_manager, name))
            assert shown and not english_words(shown), (name, shown)


def test_the_sign_in_prompt_is_chinese_on_the_chinese_page(client):
    response = client.get("/manage/", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "请先登录再打开此页" in page and "Please log in" not in page


def test_sessions_csv_headers_and_codes_are_chinese(app, client, make_site, make_resident, login):
    from chargeshed.charging.sessions import USER_STOP, end_session, start_session

    site = make_site()
    session = start_session(make_resident(balance_fen=1000).id, site.sheds[0].ports[0])
    end_session(session, USER_STOP)
    db.session.commit()  # the caller owns the unit of work
    login(create_user("manager-zh", "secret-pass", ROLE_SITE_MANAGER, site_id=site.id))
    text = client.get("/manage/sessions.csv").get_data(as_text=True).lstrip("\ufeff")
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert not english_words(" ".join(header)), header
    assert rows and not english_words(" ".join(rows[0])), rows[0]
