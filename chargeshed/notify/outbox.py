"""The notification outbox: queue in the business transaction, send after commit, retry with backoff.

`queue_for_user` only adds rows to the caller's transaction (the caller commits). `send_due` claims due
rows one at a time with a conditional UPDATE (safe with several workers), commits, calls the notifier
with no transaction open, then records the outcome in a short transaction of its own. A notifier that
fails never blocks anything else: the row waits for its next attempt or is marked failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from chargeshed.extensions import db
from chargeshed.notify.base import Notifier, NotifyError
from chargeshed.notify.models import FAILED, QUEUED, SENT, Notification, NotifyConsent

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
FIRST_RETRY_SECONDS = 30
LEASE_SECONDS = 60  # a claimed row is invisible to other senders this long (a crashed sender's rows return)
BATCH = 50


@dataclass(frozen=True)
class Message:
    """A message for a resident, to queue on their channels (see queue_for_users)."""

    user_id: int
    template: str
    data: dict
    key: str
    now: datetime


def consents(user_id: int) -> list[NotifyConsent]:
    """The channels a resident said yes to (not revoked)."""
    return consents_of([user_id]).get(user_id, [])


def consents_of(user_ids) -> dict[int, list[NotifyConsent]]:
    """The channels each of these residents said yes to (not revoked), in one query."""
    found: dict[int, list[NotifyConsent]] = {}
    rows = db.session.execute(
        select(NotifyConsent)
        .where(NotifyConsent.user_id.in_(sorted(set(user_ids))), NotifyConsent.revoked_at.is_(None))
        .order_by(NotifyConsent.user_id, NotifyConsent.channel)
    ).scalars()
    for consent in rows:
        found.setdefault(consent.user_id, []).append(consent)
    return found


def _row(channel: str, address: str, template: str, data: dict, key: str, now: datetime, user_id: int | None) -> dict:
    return {
        "user_id": user_id,
        "channel": channel,
        "address": address,
        "template": template,
        "data": {k: str(v) for k, v in data.items()},
        "dedupe_key": f"{key}:{channel}"[:120],
        "status": QUEUED,
        "next_at": now,
        "created_at": now,
    }


def queue(
    channel: str, address: str, template: str, data: dict, key: str, now: datetime, user_id: int | None = None
) -> Notification | None:
    """Add one message to the caller's transaction; None when `key` was queued before (nothing added)."""
    row = Notification(**_row(channel, address, template, data, key, now, user_id))
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        return None
    return row


def queue_for_user(
    user_id: int, template: str, data: dict, key: str, now: datetime, channels: tuple[str, ...] | None = None
) -> int:
    """Queue a message on every channel the resident consented to (optionally only `channels`)."""
    return queue_for_users([Message(user_id, template, data, key, now)], channels)


def queue_for_users(messages: list[Message], channels: tuple[str, ...] | None = None) -> int:
    """Queue each message on the channels its resident consented to (optionally only `channels`), in
    two statements whatever their number; a key queued before adds nothing. Returns the rows added."""
    if not messages:
        return 0
    chosen = consents_of(message.user_id for message in messages)
    rows = [
        _row(consent.channel, consent.address, m.template, m.data, m.key, m.now, m.user_id)
        for m in messages
        for consent in chosen.get(m.user_id, ())
        if channels is None or consent.channel in channels
    ]
    if not rows:
        return 0
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    added = db.session.execute(
        dialect.insert(Notification).on_conflict_do_nothing().returning(Notification.id),
        rows,
    )
    return len(added.all())


@dataclass
class SendReport:
    """What one round of sending did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def send_due(notifiers: dict[str, Notifier], now: datetime, batch: int = BATCH) -> SendReport:
    """Send the messages that are due; each outcome is committed on its own."""
    report = SendReport()
    due = list(
        db.session.execute(
            select(Notification.id)
            .where(
                Notification.status == QUEUED, Notification.next_at <= now, Notification.channel.in_(list(notifiers))
            )
            .order_by(Notification.next_at, Notification.id)
            .limit(batch)
        ).scalars()
    )
    db.session.commit()
    return send_rows(due, notifiers, now, report)


def send_rows(
    row_ids: list[int], notifiers: dict[str, Notifier], now: datetime, report: SendReport | None = None
) -> SendReport:
    """Send these queued rows now if due (e.g. a reset code right after its request commits)."""
    report = report if report is not None else SendReport()
    for row_id in row_ids:
        claimed = db.session.execute(
            update(Notification)
            .where(
                Notification.id == row_id,
                Notification.status == QUEUED,
                Notification.next_at <= now,
                Notification.channel.in_(list(notifiers)),
            )
            .values(next_at=now + timedelta(seconds=LEASE_SECONDS), attempts=Notification.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            db.session.rollback()
            continue
        row = db.session.get(Notification, row_id)
        message = (row.channel, row.address, row.template, dict(row.data), row.attempts)
        db.session.commit()  # nothing is open while the provider is called
        channel, address, template, data, attempts = message
        try:
            ref = notifiers[channel].send(address, template, data)
        except NotifyError as error:
            _record_failure(row_id, str(error), error.retryable, attempts, now, report)
        except Exception as error:  # a bug in a notifier must not stop the others
            log.exception("notifier %s crashed", channel)
            _record_failure(row_id, f"crash: {error}", True, attempts, now, report)
        else:
            db.session.execute(
                update(Notification)
                .where(Notification.id == row_id)
                .values(status=SENT, sent_at=now, provider_ref=(ref or "")[:64], last_error="")
            )
            db.session.commit()
            report.sent += 1
    return report


def _record_failure(row_id: int, error: str, retryable: bool, attempts: int, now: datetime, report: SendReport) -> None:
    give_up = not retryable or attempts >= MAX_ATTEMPTS
    values = {"last_error": error[:255]}
    if give_up:
        values["status"] = FAILED
        report.failed += 1
    else:
        values["next_at"] = now + timedelta(seconds=FIRST_RETRY_SECONDS * 2 ** (attempts - 1))
        report.retried += 1
    db.session.execute(update(Notification).where(Notification.id == row_id).values(**values))
    db.session.commit()
    report.errors.append(error)
    log.warning("notification %s not sent (%s): %s", row_id, "gave up" if give_up else "will retry", error)
