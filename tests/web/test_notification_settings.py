"""Residents choose their channels; WeChat binding through WeChat's OAuth; "tell me when a port is free"."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.notify.consent import active_channels
from chargeshed.notify.models import PortFreeWatch
from chargeshed.sites.models import Port
from tests.fakes.fake_notify import FakeAliyunSms, FakeWeChat


@pytest.fixture
def providers(app):
    with FakeWeChat() as wechat, FakeAliyunSms() as aliyun:
        app.config.update(
            NOTIFY_WECHAT_APP_ID=wechat.app_id,
            NOTIFY_WECHAT_SECRET=wechat.secret,
            NOTIFY_WECHAT_API_BASE=wechat.url,
            NOTIFY_WECHAT_OAUTH_BASE="https://open.weixin.qq.com",
            ALIYUN_SMS_ACCESS_KEY_ID=aliyun.access_key_id,
            ALIYUN_SMS_ACCESS_KEY_SECRET=aliyun.secret,
            ALIYUN_SMS_SIGN_NAME=aliyun.sign_name,
            ALIYUN_SMS_API_BASE=aliyun.url,
        )
        app.extensions.pop("notifiers", None)
        yield wechat, aliyun
        app.extensions.pop("notifiers", None)


def test_sms_is_off_until_the_resident_says_yes_and_can_be_switched_off(app, client, make_resident, login, providers):
    user = login(make_resident())
    page = client.get("/notifications").get_data(as_text=True)
    assert f"短信发送到 {user.login}" in page and "checked" not in page
    assert "目前不接收任何消息" in page and "全部不勾选并保存，即不接收任何消息" in page
    client.post("/notifications", data={"sms": "yes"})
    assert active_channels(user.id) == {"sms": user.login}
    page = client.get("/notifications").get_data(as_text=True)
    assert "目前接收消息的方式： <strong>短信</strong>" in page and "checked" in page
    client.post("/notifications", data={})
    assert active_channels(user.id) == {}
    assert "目前不接收任何消息" in client.get("/notifications").get_data(as_text=True)


def test_wechat_is_bound_through_wechat_oauth_with_a_state_check(app, client, make_resident, login, providers):
    wechat, _aliyun = providers
    user = login(make_resident())
    go = client.get("/notifications/wechat")
    assert go.headers["Location"].startswith("https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx-test")
    state = go.headers["Location"].split("state=")[1].split("#")[0]
    assert (
        client.get("/notifications/wechat/callback", query_string={"code": "x", "state": "forged"}).status_code == 400
    )

    client.get("/notifications/wechat")
    state = client.get("/notifications/wechat").headers["Location"].split("state=")[1].split("#")[0]
    bad = client.get("/notifications/wechat/callback", query_string={"code": "nope", "state": state})
    assert bad.status_code == 302 and active_channels(user.id) == {}

    state = client.get("/notifications/wechat").headers["Location"].split("state=")[1].split("#")[0]
    code = wechat.oauth_code("o-abc")
    done = client.get("/notifications/wechat/callback", query_string={"code": code, "state": state})
    assert done.status_code == 302 and active_channels(user.id) == {"wechat": "o-abc"}
    page = client.get("/notifications").get_data(as_text=True)
    assert "<strong>微信</strong>" in page and "微信消息（发送到您确认过的微信账号）" in page
    client.post("/notifications", data={})  # unticked: WeChat off too, until confirmed in WeChat again
    assert active_channels(user.id) == {}
    assert "接收微信消息（请在微信中打开本页）" in client.get("/notifications").get_data(as_text=True)


def test_a_full_shed_offers_one_message_when_a_port_frees_up(app, client, make_site, make_resident, login, providers):
    site = make_site(sheds=(1,))
    charging.start_session(
        make_resident(balance_fen=1000).id, db.session.execute(select(Port).where(Port.code == "T11001")).scalar_one()
    )
    user = login(make_resident())
    page = client.get(f"/site/{site.id}").get_data(as_text=True)
    assert 'data-testid="watch"' in page

    asked = client.post("/shed/1/watch")
    assert asked.headers["Location"].endswith("/notifications")  # no channel chosen yet: nothing stored
    assert db.session.query(PortFreeWatch).count() == 0
    client.post("/notifications", data={"sms": "yes"})
    client.post("/shed/1/watch")
    watch = db.session.execute(select(PortFreeWatch)).scalar_one()
    assert watch.user_id == user.id and watch.fired_at is None
