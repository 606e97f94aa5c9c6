"""A small JSON-over-HTTP helper with a bounded timeout (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from chargeshed.notify.base import NotifyError

TIMEOUT_SECONDS = 5.0


def call_json(method: str, url: str, body: dict | None = None, timeout: float = TIMEOUT_SECONDS) -> dict:
    """Send a request and decode the JSON answer; network trouble and 5xx are retryable NotifyErrors."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        raw = error.read()
        if error.code >= 500:
            raise NotifyError(f"HTTP {error.code}", retryable=True) from None
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise NotifyError(f"HTTP {error.code}", retryable=False) from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise NotifyError(f"network: {error}", retryable=True) from None
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise NotifyError("answer is not JSON", retryable=True) from None
