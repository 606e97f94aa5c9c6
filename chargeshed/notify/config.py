"""Which notifiers the app has, from its configuration (a channel without credentials is off)."""

from __future__ import annotations

from chargeshed.notify.base import SMS, WECHAT, Notifier


def notifiers_from_config(config) -> dict[str, Notifier]:
    """WeChat when NOTIFY_WECHAT_APP_ID is set, SMS when ALIYUN_SMS_ACCESS_KEY_ID is set."""
    notifiers: dict[str, Notifier] = {}
    if config.get("NOTIFY_WECHAT_APP_ID"):
        from chargeshed.notify.wechat import DEFAULT_API_BASE, WeChatNotifier

        notifiers[WECHAT] = WeChatNotifier(
            config["NOTIFY_WECHAT_APP_ID"],
            config.get("NOTIFY_WECHAT_SECRET", ""),
            dict(config.get("NOTIFY_WECHAT_TEMPLATES") or {}),
            api_base=config.get("NOTIFY_WECHAT_API_BASE") or DEFAULT_API_BASE,
            link=config.get("PUBLIC_BASE_URL", ""),
        )
    if config.get("ALIYUN_SMS_ACCESS_KEY_ID"):
        from chargeshed.notify.sms import DEFAULT_API_BASE as SMS_BASE
        from chargeshed.notify.sms import AliyunSmsNotifier

        notifiers[SMS] = AliyunSmsNotifier(
            config["ALIYUN_SMS_ACCESS_KEY_ID"],
            config.get("ALIYUN_SMS_ACCESS_KEY_SECRET", ""),
            config.get("ALIYUN_SMS_SIGN_NAME", ""),
            dict(config.get("ALIYUN_SMS_TEMPLATES") or {}),
            api_base=config.get("ALIYUN_SMS_API_BASE") or SMS_BASE,
        )
    return notifiers


def get_notifiers(app) -> dict[str, Notifier]:
    """The app's notifiers, built once (the WeChat access_token cache lives in its notifier)."""
    notifiers = app.extensions.get("notifiers")
    if notifiers is None:
        notifiers = app.extensions["notifiers"] = notifiers_from_config(app.config)
    return notifiers


def notify_step(app, now) -> dict:
    """One worker round: fire due free-port watches, then send the outbox (never raises for a notifier)."""
    from chargeshed.extensions import db
    from chargeshed.notify.events import fire_port_free_watches
    from chargeshed.notify.outbox import send_due
    from chargeshed.passes.service import remind_expiring

    fired = fire_port_free_watches(now)
    remind_expiring(now)
    db.session.commit()
    report = send_due(get_notifiers(app), now)
    return {"watches_fired": fired, "sent": report.sent, "retried": report.retried, "failed": report.failed}
