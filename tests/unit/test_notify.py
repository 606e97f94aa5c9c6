"""Notifications through real HTTP to local fakes of the WeChat and Aliyun SMS APIs: consent, the outbox,
retries, token expiry, and exactly one message per event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.notify import events
from chargeshed.notify.consent import set_consent
from chargeshed.notify.models import FAILED, QUEUED, Notification
from chargeshed.notify.outbox import send_due
from chargeshed.notify.sms import AliyunSmsNotifier
from chargeshed.notify.wechat import WeChatNotifier
from chargeshed.ports.sim import Bike
from chargeshed.sites.models import Port
from tests.fakes.fake_notify import FakeAliyunSms, FakeWeChat

WX_TEMPLATES = {"tpl-finished": ["thing1", "phrase2", "amount3"], "tpl-free": ["thing1", "thing2"]}
WX_IDS = {"charge_finished": "tpl-finished", "port_free": "tpl-free"}
SMS_TEMPLATES = {"SMS_1": ["place", "reason", "cost"], "SMS_2": ["place", "free"], "SMS_3": ["code", "minutes"]}
SMS_CODES = {"charge_finished": "SMS_1", "port_free": "SMS_2", "reset_code": "SMS_3"}


@pytest.fixture
def wechat():
    with FakeWeChat(templates=WX_TEMPLATES) as fake:
        yield fake


@pytest.fixture
def aliyun():
    with FakeAliyunSms(templates=SMS_TEMPLATES) as fake:
        yield fake


@pytest.fixture
def notifiers(wechat, aliyun, clock):
    return {
        "wechat": WeChatNotifier(wechat.app_id, wechat.secret, WX_IDS, api_base=wechat.url),
        "sms": AliyunSmsNotifier(
            aliyun.access_key_id,
            aliyun.secret,
            aliyun.sign_name,
            SMS_CODES,
            api_base=aliyun.url,
            clock=lambda: clock.now.replace(tzinfo=UTC),
        ),
    }


def _port(code: str) -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


def _charge_and_finish(user, driver, clock, tick, code="T11001"):
    driver.plug(code, bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    session = charging.start_session(user.id, _port(code))
    tick()
    clock.advance(minutes=90)
    tick()
    assert charging.end_session(session, charging.USER_STOP)
    return session


def _consent_both(user, clock, wechat, openid="o-resident"):
    set_consent(user.id, "wechat", openid, clock.now)
    set_consent(user.id, "sms", user.login, clock.now)
    db.session.commit()
    wechat.subscribe(openid, "tpl-finished")
    wechat.subscribe(openid, "tpl-free")


def test_a_finished_charge_sends_exactly_one_message_per_consented_channel(
    app, make_site, make_resident, driver, clock, tick, wechat, aliyun, notifiers
):
    make_site()
    user = make_resident(balance_fen=1000)
    _consent_both(user, clock, wechat)
    _charge_and_finish(user, driver, clock, tick)

    report = send_due(notifiers, clock.now)
    assert (report.sent, report.failed) == (2, 0)
    assert len(wechat.messages) == 1 and len(aliyun.messages) == 1
    data = wechat.messages[0]["data"]
    assert data == {
        "thing1": {"value": "1号车棚1号插座"},
        "phrase2": {"value": "手动停止"},
        "amount3": {"value": "1.00元"},
    }
    assert wechat.messages[0]["touser"] == "o-resident"
    assert aliyun.messages[0] == {
        "phone": user.login,
        "template": "SMS_1",
        "params": {"place": "1号车棚1号插座", "reason": "手动停止", "cost": "1.00元"},
    }

    clock.advance(minutes=5)
    assert send_due(notifiers, clock.now).sent == 0  # nothing is sent twice
    assert len(wechat.messages) == 1 and len(aliyun.messages) == 1


def test_without_consent_nothing_is_queued_or_sent(
    app, make_site, make_resident, driver, clock, tick, wechat, aliyun, notifiers
):
    make_site()
    user = make_resident(balance_fen=1000)
    set_consent(user.id, "sms", user.login, clock.now)
    set_consent(user.id, "sms", None, clock.now)  # changed their mind
    db.session.commit()
    _charge_and_finish(user, driver, clock, tick)
    assert db.session.query(Notification).count() == 0
    send_due(notifiers, clock.now)
    assert wechat.messages == [] and aliyun.messages == []


def test_an_expired_access_token_is_renewed_and_the_message_sent_once(
    app, make_site, make_resident, driver, clock, tick, wechat, notifiers
):
    make_site()
    user = make_resident(balance_fen=2000)
    set_consent(user.id, "wechat", "o-1", clock.now)
    db.session.commit()
    wechat.subscribe("o-1", "tpl-finished")
    _charge_and_finish(user, driver, clock, tick, "T11001")
    assert send_due(notifiers, clock.now).sent == 1 and wechat.token_requests == 1

    wechat.expire_tokens()  # two hours later, or the token was reset in the WeChat console
    _charge_and_finish(user, driver, clock, tick, "T11002")
    assert send_due(notifiers, clock.now).sent == 1
    assert wechat.token_requests == 2 and len(wechat.messages) == 2


def test_provider_trouble_is_retried_later_and_a_refusal_is_not(
    app, make_site, make_resident, driver, clock, tick, wechat, aliyun, notifiers
):
    make_site()
    user = make_resident(balance_fen=2000)
    _consent_both(user, clock, wechat)
    wechat.fail_next(-1)  # 系统繁忙
    aliyun.fail_next("isv.BUSINESS_LIMIT_CONTROL")
    _charge_and_finish(user, driver, clock, tick)

    first = send_due(notifiers, clock.now)
    assert (first.sent, first.retried) == (0, 2)
    rows = db.session.execute(select(Notification)).scalars().all()
    assert all(row.status == QUEUED and row.next_at > clock.now for row in rows)
    assert send_due(notifiers, clock.now).sent == 0  # not due yet
    clock.advance(minutes=1)
    assert send_due(notifiers, clock.now).sent == 2
    assert len(wechat.messages) == 1 and len(aliyun.messages) == 1

    # The resident withdrew the WeChat subscription: 43101 is final, the other channel still works.
    wechat.subscribed.clear()
    clock.advance(minutes=5)
    tick()
    _charge_and_finish(user, driver, clock, tick, "T11002")
    report = send_due(notifiers, clock.now)
    assert (report.sent, report.failed) == (1, 1)
    failed = db.session.execute(select(Notification).where(Notification.status == FAILED)).scalar_one()
    assert failed.channel == "wechat" and "43101" in failed.last_error


def test_a_dead_notifier_never_blocks_a_charge_or_a_payment(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    set_consent(user.id, "sms", user.login, clock.now)
    db.session.commit()
    session = _charge_and_finish(user, driver, clock, tick)  # settles although no provider is reachable
    db.session.refresh(session)
    assert session.cost_fen == 100 and wallet_balance(user.id) == 900 and check_ledger() == []
    dead = {"sms": AliyunSmsNotifier("k", "s", "车棚充电", SMS_CODES, api_base="http://127.0.0.1:9")}
    report = send_due(dead, clock.now)
    assert (report.sent, report.retried) == (0, 1)
    assert db.session.execute(select(Notification.status)).scalar_one() == QUEUED


def test_tell_me_when_a_port_is_free_sends_one_message_and_expires(
    app, make_site, make_resident, driver, clock, tick, wechat, aliyun, notifiers
):
    make_site(sheds=(2,))
    me = make_resident(balance_fen=1000)
    set_consent(me.id, "sms", me.login, clock.now)
    others = [make_resident(balance_fen=1000) for _ in range(2)]
    sessions = [
        charging.start_session(other.id, _port(code)) for other, code in zip(others, ("T11001", "T11002"), strict=True)
    ]
    shed_id = _port("T11001").shed_id
    events.watch_shed(me.id, shed_id, clock.now)
    db.session.commit()

    assert events.fire_port_free_watches(clock.now) == 0  # both ports busy
    charging.fail_session(sessions[0], charging.USER_STOP)
    clock.advance(seconds=30)
    assert events.fire_port_free_watches(clock.now) == 1
    assert events.fire_port_free_watches(clock.now) == 0  # one message, then the watch is spent
    send_due(notifiers, clock.now)
    assert aliyun.messages == [
        {"phone": me.login, "template": "SMS_2", "params": {"place": "1号车棚", "free": "1个空闲：1号"}}
    ]

    events.watch_shed(me.id, shed_id, clock.now, hours=1)
    db.session.commit()
    clock.advance(hours=2)  # expired before anything changed
    assert events.fire_port_free_watches(clock.now) == 0
    assert len(aliyun.messages) == 1


def test_the_sms_fake_checks_the_signature_like_aliyun(aliyun):
    from chargeshed.notify.base import NotifyError

    wrong = AliyunSmsNotifier(aliyun.access_key_id, "not-the-secret", aliyun.sign_name, SMS_CODES, api_base=aliyun.url)
    with pytest.raises(NotifyError) as refused:
        wrong.send("13800001111", "reset_code", {"code": "123456", "minutes": "10"})
    assert "SignatureDoesNotMatch" in str(refused.value) and not refused.value.retryable
    right = AliyunSmsNotifier(
        aliyun.access_key_id,
        aliyun.secret,
        aliyun.sign_name,
        SMS_CODES,
        api_base=aliyun.url,
        clock=lambda: datetime(2026, 12, 1, tzinfo=UTC),
    )
    with pytest.raises(NotifyError) as bad_number:
        right.send("1234", "reset_code", {"code": "123456", "minutes": "10"})
    assert "MOBILE_NUMBER_ILLEGAL" in str(bad_number.value) and not bad_number.value.retryable
    assert right.send("13800001111", "reset_code", {"code": "123456", "minutes": "10"}).startswith("biz")
    with pytest.raises(NotifyError) as limited:  # Aliyun allows one message a minute per number
        right.send("13800001111", "reset_code", {"code": "654321", "minutes": "10"})
    assert "BUSINESS_LIMIT_CONTROL" in str(limited.value) and limited.value.retryable


def test_the_worker_step_fires_watches_and_sends_with_the_configured_notifiers(
    app, make_site, make_resident, driver, clock, tick, aliyun
):
    from chargeshed.notify.config import notify_step

    app.config.update(
        ALIYUN_SMS_ACCESS_KEY_ID=aliyun.access_key_id,
        ALIYUN_SMS_ACCESS_KEY_SECRET=aliyun.secret,
        ALIYUN_SMS_SIGN_NAME=aliyun.sign_name,
        ALIYUN_SMS_API_BASE=aliyun.url,
        ALIYUN_SMS_TEMPLATES=SMS_CODES,
    )
    app.extensions.pop("notifiers", None)
    make_site()
    user = make_resident(balance_fen=1000)
    set_consent(user.id, "sms", user.login, clock.now)
    db.session.commit()
    _charge_and_finish(user, driver, clock, tick)
    assert notify_step(app, clock.now) == {"watches_fired": 0, "sent": 1, "retried": 0, "failed": 0}
    assert notify_step(app, clock.now)["sent"] == 0
    assert [m["template"] for m in aliyun.messages] == ["SMS_1"]
    app.extensions.pop("notifiers", None)


def test_a_reporter_who_opted_in_hears_of_each_step_of_their_hazard_case(app, make_site, make_resident, clock, aliyun):
    from chargeshed.accounts.models import ROLE_PATROL
    from chargeshed.accounts.services import create_user
    from chargeshed.safety import workflow
    from chargeshed.sites.models import Building

    site = make_site()
    reporter = make_resident()
    set_consent(reporter.id, "sms", reporter.login, clock.now)
    db.session.commit()
    building = db.session.execute(
        select(Building).where(Building.site_id == site.id, Building.number == 4)
    ).scalar_one()
    case = workflow.file_report(
        workflow.NewReport("flying_wire", building.id, unit=2, floor=6, spot="stairwell"), reporter_id=reporter.id
    )
    db.session.commit()
    patrol = create_user("patrol1", "secret-pass", ROLE_PATROL, site_id=site.id)
    workflow.act(case, "verify", patrol.id)
    db.session.commit()
    rows = db.session.execute(select(Notification).where(Notification.template == "hazard_progress")).scalars().all()
    assert len(rows) == 1 and rows[0].address == reporter.login and rows[0].data["case"] == f"#{case.id}"
