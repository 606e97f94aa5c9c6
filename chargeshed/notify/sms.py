"""SMS through Aliyun SMS (短信服务, dysmsapi SendSms, RPC style signed with HMAC-SHA1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from chargeshed.notify.base import SMS, NotifyError
from chargeshed.notify.http import call_json

DEFAULT_API_BASE = "https://dysmsapi.aliyuncs.com"
# Codes worth trying again later: flow control, provider trouble, an account to be topped up.
RETRYABLE = {
    "isv.BUSINESS_LIMIT_CONTROL",
    "isp.SYSTEM_ERROR",
    "isp.RAM_PERMISSION_DENY",
    "Throttling.User",
    "isv.AMOUNT_NOT_ENOUGH",
    "ServiceUnavailable",
}


def percent_encode(value: str) -> str:
    """Aliyun's POP encoding: RFC 3986, space as %20, '~' kept."""
    return urllib.parse.quote(str(value), safe="~")


def sign(params: dict[str, str], secret: str, method: str = "GET") -> str:
    """The POP signature (SignatureVersion 1.0, HMAC-SHA1) over the sorted, encoded parameters."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSmsNotifier:
    """Sends one templated SMS per call."""

    channel = SMS

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        template_codes: dict[str, str],
        *,
        api_base: str = DEFAULT_API_BASE,
        clock: Callable[[], datetime] | None = None,
    ):
        self.access_key_id, self.secret, self.sign_name = access_key_id, access_key_secret, sign_name
        self.template_codes, self.api_base = template_codes, api_base.rstrip("/")
        self.clock = clock or (lambda: datetime.now(UTC))

    def send(self, address: str, template: str, data: dict[str, str]) -> str:
        """Send to the mainland mobile number `address`; returns Aliyun's BizId."""
        code = self.template_codes.get(template)
        if not code:
            raise NotifyError(f"no SMS template for {template}", retryable=False)
        params = {
            "AccessKeyId": self.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": "cn-hangzhou",
            "PhoneNumbers": address,
            "SignName": self.sign_name,
            "TemplateCode": code,
            "TemplateParam": json.dumps({k: str(v) for k, v in data.items()}, ensure_ascii=False),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": uuid.uuid4().hex,
            "Timestamp": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        query = urllib.parse.urlencode({"Signature": sign(params, self.secret), **params}, quote_via=urllib.parse.quote)
        answer = call_json("GET", f"{self.api_base}/?{query}")
        status = answer.get("Code")
        if status == "OK":
            return str(answer.get("BizId", ""))
        raise NotifyError(f"aliyun {status} {answer.get('Message', '')}", retryable=status in RETRYABLE)
