"""WeChat Official Account subscription messages (订阅消息) over the WeChat HTTP API.

The resident subscribes in WeChat (one-time or long-term subscription per template); we then send with
POST /cgi-bin/message/subscribe/bizsend?access_token=…. The access_token comes from GET /cgi-bin/token,
lives `expires_in` seconds (7200) and may be invalidated early: on errcode 40001/40014/42001 the token is
fetched again and the message retried once.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable

from chargeshed.notify.base import CHARGE_FINISHED, HAZARD_PROGRESS, PASS_EXPIRING, PORT_FREE, WECHAT, NotifyError
from chargeshed.notify.http import call_json

DEFAULT_API_BASE = "https://api.weixin.qq.com"
TOKEN_ERRORS = {40001, 40014, 42001}
# Permanent refusals: no subscription (43101), bad openid (40003), bad template or data (47003, 40037).
PERMANENT_ERRORS = {43101, 40003, 47003, 40037}
# Template keywords as the templates chosen in the WeChat console define them (thing: ≤20 characters).
FIELDS = {
    CHARGE_FINISHED: {"thing1": "place", "phrase2": "reason", "amount3": "cost"},
    PORT_FREE: {"thing1": "place", "thing2": "free"},
    HAZARD_PROGRESS: {"character_string1": "case", "phrase2": "status"},
    PASS_EXPIRING: {"thing1": "plan", "time2": "until"},
}
LIMITS = {"thing": 20, "phrase": 5, "character_string": 32, "amount": 16, "time": 32}


class WeChatNotifier:
    """Sends subscription messages; keeps the access_token until shortly before it expires."""

    channel = WECHAT

    def __init__(
        self,
        app_id: str,
        secret: str,
        template_ids: dict[str, str],
        *,
        api_base: str = DEFAULT_API_BASE,
        link: str = "",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app_id, self.secret, self.template_ids = app_id, secret, template_ids
        self.api_base, self.link, self.clock = api_base.rstrip("/"), link, clock
        self._token: str | None = None
        self._token_until = 0.0
        self._lock = threading.Lock()

    def _access_token(self, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or self.clock() >= self._token_until:
                query = urllib.parse.urlencode(
                    {"grant_type": "client_credential", "appid": self.app_id, "secret": self.secret}
                )
                answer = call_json("GET", f"{self.api_base}/cgi-bin/token?{query}")
                if not answer.get("access_token"):
                    raise NotifyError(
                        f"token: {answer.get('errcode')} {answer.get('errmsg')}", retryable=answer.get("errcode") == -1
                    )
                self._token = answer["access_token"]
                # Renew a minute early so a token never expires between fetching and using it.
                self._token_until = self.clock() + max(0, int(answer.get("expires_in", 7200)) - 60)
            return self._token

    def send(self, address: str, template: str, data: dict[str, str]) -> str:
        """Send one subscription message to the openid `address`."""
        template_id = self.template_ids.get(template)
        if not template_id or template not in FIELDS:
            raise NotifyError(f"no WeChat template for {template}", retryable=False)
        body = {"touser": address, "template_id": template_id, "data": _fields(template, data)}
        if self.link:
            body["page"] = self.link
        for attempt in (1, 2):
            token = self._access_token(refresh=attempt == 2)
            answer = call_json(
                "POST",
                f"{self.api_base}/cgi-bin/message/subscribe/bizsend?access_token={urllib.parse.quote(token)}",
                body,
            )
            code = int(answer.get("errcode", 0))
            if code == 0:
                return str(answer.get("msgid", ""))
            if code in TOKEN_ERRORS and attempt == 1:
                continue
            raise NotifyError(f"wechat {code} {answer.get('errmsg', '')}", retryable=code not in PERMANENT_ERRORS)
        raise NotifyError("wechat: token refused twice")


def _fields(template: str, data: dict[str, str]) -> dict:
    fields = {}
    for keyword, key in FIELDS[template].items():
        kind = keyword.rstrip("0123456789")
        fields[keyword] = {"value": str(data.get(key, ""))[: LIMITS.get(kind, 20)]}
    return fields


def oauth_authorize_url(app_id: str, redirect_uri: str, state: str, base: str = "https://open.weixin.qq.com") -> str:
    """Where to send a resident inside WeChat to learn their openid (silent snsapi_base scope)."""
    query = urllib.parse.urlencode(
        {"appid": app_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": "snsapi_base", "state": state}
    )
    return f"{base}/connect/oauth2/authorize?{query}#wechat_redirect"


def oauth_openid(notifier: WeChatNotifier, code: str) -> str:
    """Exchange the OAuth code WeChat appended to our callback for the resident's openid."""
    query = urllib.parse.urlencode(
        {"appid": notifier.app_id, "secret": notifier.secret, "code": code, "grant_type": "authorization_code"}
    )
    answer = call_json("GET", f"{notifier.api_base}/sns/oauth2/access_token?{query}")
    if not answer.get("openid"):
        raise NotifyError(f"oauth {answer.get('errcode')} {answer.get('errmsg', '')}", retryable=False)
    return str(answer["openid"])
