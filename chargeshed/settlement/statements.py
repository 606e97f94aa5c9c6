"""Statement services: show a period, review it (snapshot), issue it (lock and number), reopen a review.

The services that write flush and leave the commit to their caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from chargeshed.accounts import audit
from chargeshed.extensions import db
from chargeshed.settlement.figures import compute_figures
from chargeshed.settlement.models import DRAFT, ISSUED, REVIEWED, Statement
from chargeshed.settlement.periods import Period, SettlementRefused, ensure_closed
from chargeshed.timeutil import now as clock_now

# Keys of the figures that say when they were computed rather than what they are.
VOLATILE_KEYS = ("computed_at",)


def find_statement(operator_id: int, site_id: int, period: Period) -> Statement | None:
    """The stored statement of exactly this period, if any."""
    return db.session.execute(
        select(Statement).where(
            Statement.operator_id == operator_id,
            Statement.site_id == site_id,
            Statement.period_start == period.start,
            Statement.period_end == period.end,
        )
    ).scalar_one_or_none()


def statements_of(operator_id: int, site_id: int) -> list[Statement]:
    """Stored statements of this operator at this site, newest period first."""
    return list(
        db.session.execute(
            select(Statement)
            .where(Statement.operator_id == operator_id, Statement.site_id == site_id)
            .order_by(Statement.period_start.desc(), Statement.id.desc())
        ).scalars()
    )


def last_issued(operator_id: int, site_id: int) -> Statement | None:
    """The issued statement with the latest period of this operator at this site."""
    return db.session.execute(
        select(Statement)
        .where(Statement.operator_id == operator_id, Statement.site_id == site_id, Statement.status == ISSUED)
        .order_by(Statement.period_end.desc())
        .limit(1)
    ).scalar_one_or_none()


def same_figures(a: dict | None, b: dict | None) -> bool:
    """True when two sets of figures agree on everything but the moment they were computed."""
    if a is None or b is None:
        return False
    strip = lambda f: {k: v for k, v in f.items() if k not in VOLATILE_KEYS}  # noqa: E731
    return strip(a) == strip(b)


@dataclass
class StatementView:
    """What a statement page or an export shows for one period."""

    period: Period
    figures: dict
    statement: Statement | None
    # False for a reviewed statement whose books changed since the review (figures are then live).
    still_current: bool = True

    @property
    def status(self) -> str:
        """draft, reviewed or issued."""
        return self.statement.status if self.statement is not None else DRAFT

    @property
    def number(self) -> str | None:
        """The statement number once issued."""
        return self.statement.number if self.statement is not None else None


def view_statement(operator_id: int, site_id: int, period: Period, now: datetime | None = None) -> StatementView:
    """An issued statement as locked, a reviewed one as reviewed (checked against the books), else a
    live draft. Refuses periods that are not over."""
    now = now or clock_now()
    row = find_statement(operator_id, site_id, period)
    if row is not None and row.status == ISSUED:
        return StatementView(period, row.figures, row)
    ensure_closed(period, now)
    live = compute_figures(operator_id, site_id, period, now)
    if row is not None and row.status == REVIEWED and same_figures(row.figures, live):
        return StatementView(period, row.figures, row)
    return StatementView(period, live, row, still_current=row is None or row.status != REVIEWED)


def _totals_into(row: Statement, figures: dict) -> None:
    row.figures = figures
    row.adjustments_fen = figures["totals"]["adjustments_fen"]
    row.payout_fen = figures["totals"]["payout_fen"]


def review(
    operator_id: int, site_id: int, period: Period, user_id: int | None, now: datetime | None = None
) -> Statement:
    """Take a snapshot of the period's figures as reviewed; refuses open periods, issued statements
    and activity that no agreement covers. Flushes; the caller commits.

    A second reviewer storing the same period at the same moment gets SettlementRefused; only this
    review's own writes (in a savepoint) are undone then, the caller's transaction stays usable.
    """
    now = now or clock_now()
    ensure_closed(period, now)
    row = find_statement(operator_id, site_id, period)
    if row is not None and row.status == ISSUED:
        raise SettlementRefused(
            _l(
                "Statement %(number)s is issued and cannot change; later changes appear in the next statement.",
                number=row.number,
            )
        )
    figures = compute_figures(operator_id, site_id, period, now)
    gap = figures["unassigned"]
    if gap is not None:
        raise SettlementRefused(
            _l(
                "No agreement covers %(sheds)s from %(start)s to %(end)s. Add an agreement for these days "
                "first, then review.",
                sheds=", ".join(gap["sheds"]) or "–",
                start=gap["from"],
                end=gap["to"],
            )
        )
    try:
        with db.session.begin_nested():
            if row is None:
                row = Statement(
                    operator_id=operator_id,
                    site_id=site_id,
                    period_start=period.start,
                    period_end=period.end,
                    created_at=now,
                )
                db.session.add(row)
            row.status = REVIEWED
            row.reviewed_at = now
            row.reviewed_by_id = user_id
            _totals_into(row, figures)
            if user_id is not None:
                audit.record(
                    user_id,
                    audit.STATEMENT_REVIEWED,
                    f"{period.start.isoformat()} – {period.end.isoformat()}",
                    site_id=site_id,
                    operator_id=operator_id,
                )
    except IntegrityError:  # the same period's row was stored by someone else meanwhile
        raise SettlementRefused(_l("Someone else is reviewing this statement right now; reload the page.")) from None
    return row


def reopen(statement: Statement) -> Statement:
    """Send a reviewed statement back to draft (its snapshot is dropped); issued ones never reopen.

    Flushes; the caller commits.
    """
    if statement.status == ISSUED:
        raise SettlementRefused(
            _l(
                "Statement %(number)s is issued and cannot change; later changes appear in the next statement.",
                number=statement.number,
            )
        )
    statement.status = DRAFT
    statement.figures = None
    statement.reviewed_at = None
    statement.reviewed_by_id = None
    db.session.flush()
    return statement


@dataclass
class Issued:
    """The outcome of an issue request: `changed` is False when it had been issued already."""

    statement: Statement
    changed: bool


def format_number(operator_id: int, site_id: int, sequence: int) -> str:
    """The statement number: ST-<operator>-<site>-<sequence, four digits>."""
    return f"ST-{operator_id}-{site_id}-{sequence:04d}"


def issue(statement: Statement, user_id: int | None, now: datetime | None = None) -> Issued:
    """Lock a reviewed statement and number it. A second request changes nothing (Issued.changed False).

    Refuses a statement that was not reviewed, one whose figures changed since the review, and one
    that would leave a gap after (or overlap) the last issued period of the same operator and site.
    Flushes; the caller commits. The statement is claimed by a conditional update in a savepoint: if
    another request took its number at the same moment, only that savepoint is undone and the caller's
    transaction stays usable.
    """
    now = now or clock_now()
    if statement.status == ISSUED:
        return Issued(statement, False)
    if statement.status != REVIEWED:
        raise SettlementRefused(_l("Review the statement before issuing it."))
    period = Period(statement.period_start, statement.period_end)
    ensure_closed(period, now)
    live = compute_figures(statement.operator_id, statement.site_id, period, now)
    if not same_figures(statement.figures, live):
        raise SettlementRefused(
            _l("The books changed since this statement was reviewed. Review it again, then issue it.")
        )
    previous = last_issued(statement.operator_id, statement.site_id)
    if previous is not None and statement.period_start != previous.period_end + timedelta(days=1):
        raise SettlementRefused(
            _l(
                "Statements are issued in order without gaps: after %(number)s (up to %(end)s) the next "
                "statement must start on %(next)s.",
                number=previous.number,
                end=previous.period_end.isoformat(),
                next=(previous.period_end + timedelta(days=1)).isoformat(),
            )
        )
    sequence = (
        db.session.execute(
            select(func.max(Statement.sequence)).where(
                Statement.operator_id == statement.operator_id, Statement.site_id == statement.site_id
            )
        ).scalar_one()
        or 0
    ) + 1
    try:
        with db.session.begin_nested():
            claimed = db.session.execute(
                update(Statement)
                .where(Statement.id == statement.id, Statement.status == REVIEWED)
                .values(
                    status=ISSUED,
                    sequence=sequence,
                    issued_at=now,
                    issued_by_id=user_id,
                    number=format_number(statement.operator_id, statement.site_id, sequence),
                )
            ).rowcount
            if claimed and user_id is not None:
                audit.record(
                    user_id,
                    audit.STATEMENT_ISSUED,
                    format_number(statement.operator_id, statement.site_id, sequence),
                    site_id=statement.site_id,
                    operator_id=statement.operator_id,
                )
    except IntegrityError:  # the sequence or number was taken by another statement meanwhile
        claimed = 0
    db.session.refresh(statement)
    if claimed:
        return Issued(statement, True)
    if statement.status == ISSUED:
        return Issued(statement, False)
    raise SettlementRefused(_l("Another statement was issued at the same moment; reload the page and try again."))
