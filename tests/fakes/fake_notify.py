"""Local fakes of the WeChat Official Account API and the Aliyun SMS API, served over real HTTP.

They behave like the real services where our code depends on it: WeChat issues access_tokens that
expire (errcode 42001) or get replaced (40001), refuses users who did not subscribe (43101) and
over-long field values (47003), exchanges OAuth codes once; Aliyun checks the POP signature
(SignatureDoesNotMatch), the number (isv.MOBILE_NUMBER_ILLEGAL), the template, and limits one
message per number per minute (isv.BUSINESS_LIMIT_CONTROL). `fail_next` injects provider trouble.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import threading
import urllib.parse
from datetime import datetime

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

FIELD_LIMITS = {"thing": 20, "phrase": 5, "character_string": 32, "amount": 16, "time": 32}


class _Server:
    """Serve `self.app` on 127.0.0.1 (a free port) from a background thread."""

    def __enter__(self):
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc):
        self._server.shutdown()
        self._thread.join(timeout=5)

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            status, body = self.handle(request)
        return Response(
            json.dumps(body, ensure_ascii=False), status=status, content_type="application/json; charset=utf-8"
        )(environ, start_response)


class FakeWeChat(_Server):
    """api.weixin.qq.com: /cgi-bin/token, /cgi-bin/message/subscribe/bizsend, /sns/oauth2/access_token."""

    def __init__(self, app_id: str = "wx-test", secret: str = "wx-secret", templates: dict | None = None):
        self.app_id, self.secret = app_id, secret
        self.templates = templates or {}  # template_id -> keywords it has
        self.subscribed: set[tuple[str, str]] = set()  # (openid, template_id)
        self.tokens: dict[str, bool] = {}  # token -> still valid
        self.token_requests = 0
        self.messages: list[dict] = []
        self.failures: list[int] = []
        self.codes: dict[str, str] = {}
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()

    # test controls
    def subscribe(self, openid: str, template_id: str) -> None:
        """The user tapped "allow" for this template in WeChat."""
        self.subscribed.add((openid, template_id))

    def expire_tokens(self) -> None:
        """Every issued access_token has expired (the next use gets errcode 42001)."""
        self.tokens = dict.fromkeys(self.tokens, False)

    def fail_next(self, errcode: int) -> None:
        """The next send answers with this errcode (e.g. -1 system busy)."""
        self.failures.append(errcode)

    def oauth_code(self, openid: str) -> str:
        """A code WeChat would append to the OAuth redirect for this user."""
        code = f"code{next(self._ids)}"
        self.codes[code] = openid
        return code

    def handle(self, request: Request):
        if request.path == "/cgi-bin/token":
            return self._token(request.args)
        if request.path == "/cgi-bin/message/subscribe/bizsend" and request.method == "POST":
            return self._send(request)
        if request.path == "/sns/oauth2/access_token":
            return self._oauth(request.args)
        return 404, {"errcode": 404, "errmsg": "not found"}

    def _token(self, args):
        if args.get("grant_type") != "client_credential":
            return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
        if args.get("appid") != self.app_id:
            return 200, {"errcode": 40013, "errmsg": "invalid appid"}
        if args.get("secret") != self.secret:
            return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
        self.token_requests += 1
        token = f"token{next(self._ids)}"
        self.tokens = dict.fromkeys(self.tokens, False)  # a new token replaces the old ones
        self.tokens[token] = True
        return 200, {"access_token": token, "expires_in": 7200}

    def _send(self, request: Request):
        token = request.args.get("access_token", "")
        if token not in self.tokens:
            return 200, {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        if not self.tokens[token]:
            return 200, {"errcode": 42001, "errmsg": "access_token expired"}
        if self.failures:
            code = self.failures.pop(0)
            return 200, {"errcode": code, "errmsg": "system error" if code == -1 else "injected"}
        body = json.loads(request.get_data() or b"{}")
        template_id, openid = body.get("template_id"), body.get("touser")
        keywords = self.templates.get(template_id)
        if keywords is None:
            return 200, {"errcode": 40037, "errmsg": "invalid template_id"}
        if (openid, template_id) not in self.subscribed:
            return 200, {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
        data = body.get("data") or {}
        for keyword in keywords:
            value = (data.get(keyword) or {}).get("value")
            limit = FIELD_LIMITS[keyword.rstrip("0123456789")]
            if value is None or len(value) > limit:
                return 200, {"errcode": 47003, "errmsg": f"argument invalid! data.{keyword}.value invalid"}
        self.messages.append(body)
        return 200, {"errcode": 0, "errmsg": "ok", "msgid": next(self._ids)}

    def _oauth(self, args):
        if args.get("appid") != self.app_id or args.get("secret") != self.secret:
            return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
        openid = self.codes.pop(args.get("code", ""), None)  # a code works once
        if openid is None or args.get("grant_type") != "authorization_code":
            return 200, {"errcode": 40029, "errmsg": "invalid code"}
        return 200, {
            "access_token": f"user{next(self._ids)}",
            "expires_in": 7200,
            "openid": openid,
            "scope": "snsapi_base",
            "refresh_token": "r",
        }


def _pop_encode(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


class FakeAliyunSms(_Server):
    """dysmsapi.aliyuncs.com SendSms (RPC style, HMAC-SHA1 POP signature)."""

    def __init__(
        self,
        access_key_id: str = "LTAI-test",
        secret: str = "sms-secret",
        templates: dict | None = None,
        sign_name: str = "车棚充电",
    ):
        self.access_key_id, self.secret, self.sign_name = access_key_id, secret, sign_name
        self.templates = templates or {}  # TemplateCode -> the ${variables} it uses
        self.messages: list[dict] = []
        self.failures: list[str] = []
        self.last_sent: dict[str, datetime] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fail_next(self, code: str) -> None:
        """The next SendSms answers with this Code (e.g. isp.SYSTEM_ERROR)."""
        self.failures.append(code)

    def handle(self, request: Request):
        params = {key: value for key, value in request.args.items()}
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != self.access_key_id:
            return 404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."}
        canonical = "&".join(f"{_pop_encode(k)}={_pop_encode(v)}" for k, v in sorted(params.items()))
        to_sign = "GET&%2F&" + _pop_encode(canonical)
        expected = base64.b64encode(
            hmac.new((self.secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
        ).decode()
        if not hmac.compare_digest(expected, signature):
            return 400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched."}
        if params.get("Action") != "SendSms" or params.get("Version") != "2017-05-25":
            return 400, {"Code": "InvalidAction", "Message": "unknown action"}
        if self.failures:
            return 200, {"Code": self.failures.pop(0), "Message": "injected", "RequestId": "r"}
        phone = params.get("PhoneNumbers", "")
        if not re.fullmatch(r"1[3-9]\d{9}", phone):
            return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "invalid mobile number"}
        if params.get("SignName") != self.sign_name:
            return 200, {"Code": "isv.SMS_SIGNATURE_ILLEGAL", "Message": "signature name not approved"}
        variables = self.templates.get(params.get("TemplateCode"))
        if variables is None:
            return 200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "template not approved"}
        values = json.loads(params.get("TemplateParam") or "{}")
        if set(values) != set(variables):
            return 200, {"Code": "isv.TEMPLATE_MISSING_PARAMETERS", "Message": "template parameters"}
        sent_at = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        last = self.last_sent.get(phone)
        if last is not None and (sent_at - last).total_seconds() < 60:
            return 200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"}
        self.last_sent[phone] = sent_at
        message = {"phone": phone, "template": params["TemplateCode"], "params": values}
        self.messages.append(message)
        return 200, {"Code": "OK", "Message": "OK", "BizId": f"biz{next(self._ids)}", "RequestId": "r"}
