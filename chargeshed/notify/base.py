"""The Notifier interface and the message templates every channel knows."""

from __future__ import annotations

from typing import Protocol

# Templates: what each message says, with the data keys it needs.
CHARGE_FINISHED = "charge_finished"  # place, reason, cost
PORT_FREE = "port_free"  # place, free
HAZARD_PROGRESS = "hazard_progress"  # case, status
RESET_CODE = "reset_code"  # code, minutes
PASS_EXPIRING = "pass_expiring"  # plan, until
TEMPLATES = (CHARGE_FINISHED, PORT_FREE, HAZARD_PROGRESS, RESET_CODE, PASS_EXPIRING)

WECHAT = "wechat"
SMS = "sms"
CHANNELS = (WECHAT, SMS)


class NotifyError(Exception):
    """A message that was not delivered; `retryable` says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    """Delivers one message to one address (an openid, a phone number); raises NotifyError on failure.

    Implementations make one bounded HTTP call and never touch the database.
    """

    channel: str

    def send(self, address: str, template: str, data: dict[str, str]) -> str:
        """Send; returns the provider's message id (or "")."""
        ...
