"""Buying, using, refunding and recognising passes. Services flush; the caller commits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select

from chargeshed.charging.tariff import Tariff
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.models import LedgerTxn
from chargeshed.passes.models import ACTIVE, REFUNDED, MonthlyPass, PassPlan, PassUse
from chargeshed.timeutil import LOCAL_TZ, to_local

TXN_PASS_SALE = "pass_sale"  # pass_sale:<id>: wallet -> passes:deferred:site:<id>
TXN_PASS_REFUND = "pass_refund"  # pass_refund:<id>: passes:deferred:site:<id> -> wallet
# pass_earned:site:<site id>:<YYYY-MM-DD>: passes:deferred:site:<id> -> passes:earned:site:<id>, once the day is over
TXN_PASS_EARNED = "pass_earned"
REMIND_DAYS = 3


class PassRefused(Exception):
    """Why a pass cannot be bought, used or refunded: plan_closed, insufficient_funds, already_renewed,
    no_pass, daily_limit, nothing_left, wrong_site."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def local_day(moment: datetime) -> date:
    """The compound's calendar day of a stored UTC moment."""
    return to_local(moment).date()


def deferred_account(site_id: int):
    """Pass money received but not yet earned (recognised day by day of validity)."""
    return ledger.get_account(f"passes:deferred:site:{site_id}", "deferred")


def earned_account(site_id: int):
    """Pass revenue recognised (earned) at a site, booked day by day from the deferred account."""
    return ledger.get_account(f"passes:earned:site:{site_id}", "earned")


def plans_for_site(site_id: int, active_only: bool = True) -> list[PassPlan]:
    """The plans the operator set for a site, cheapest first."""
    query = select(PassPlan).where(PassPlan.site_id == site_id)
    if active_only:
        query = query.where(PassPlan.active.is_(True))
    return list(db.session.execute(query.order_by(PassPlan.price_fen, PassPlan.id)).scalars())


def passes_of(user_id: int, site_id: int | None = None) -> list[MonthlyPass]:
    """A resident's passes, newest first."""
    query = select(MonthlyPass).where(MonthlyPass.user_id == user_id)
    if site_id is not None:
        query = query.where(MonthlyPass.site_id == site_id)
    return list(db.session.execute(query.order_by(MonthlyPass.starts_on.desc(), MonthlyPass.id.desc())).scalars())


def current_pass(user_id: int, site_id: int, today: date) -> MonthlyPass | None:
    """The pass that covers `today` at this site, if any."""
    return (
        db.session.execute(
            select(MonthlyPass).where(
                MonthlyPass.user_id == user_id,
                MonthlyPass.site_id == site_id,
                MonthlyPass.status == ACTIVE,
                MonthlyPass.starts_on <= today,
                MonthlyPass.ends_on > today,
            )
        )
        .scalars()
        .first()
    )


def next_start(user_id: int, site_id: int, today: date) -> date:
    """The first day a pass bought today would cover: today, or the day the running pass ends (a renewal).

    Raises PassRefused("already_renewed") when a renewal is already waiting to start.
    """
    running = [p for p in passes_of(user_id, site_id) if p.status == ACTIVE and p.ends_on > today]
    if any(p.starts_on > today for p in running):
        raise PassRefused("already_renewed")
    return max([today] + [p.ends_on for p in running])


def buy(user_id: int, plan: PassPlan, now: datetime) -> MonthlyPass:
    """Buy a pass from the wallet; while one runs, the new one starts the day it ends (a renewal).

    One balanced transaction: wallet -> the site's deferred pass revenue.
    """
    if not plan.active:
        raise PassRefused("plan_closed")
    starts = next_start(user_id, plan.site_id, local_day(now))
    row = MonthlyPass(
        user_id=user_id,
        plan_id=plan.id,
        site_id=plan.site_id,
        starts_on=starts,
        ends_on=starts + timedelta(days=plan.days),
        days=plan.days,
        price_fen=plan.price_fen,
        status=ACTIVE,
        created_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
            db.session.flush()
            ledger.post(
                f"pass_sale:{row.id}",
                TXN_PASS_SALE,
                [
                    ledger.Leg(ledger.wallet_account(user_id), -plan.price_fen),
                    ledger.Leg(deferred_account(plan.site_id), plan.price_fen),
                ],
                memo=f"pass {row.id}: {plan.name}",
                at=now,
            )
    except ledger.InsufficientFunds:
        raise PassRefused("insufficient_funds") from None
    return row


def charges_today(monthly_pass: MonthlyPass, today: date) -> int:
    """Charges started on this pass today."""
    return db.session.execute(
        select(func.count()).select_from(PassUse).where(PassUse.pass_id == monthly_pass.id, PassUse.used_on == today)
    ).scalar_one()


def usable_pass(user_id: int, site_id: int, now: datetime) -> MonthlyPass:
    """The pass a new charge may use now; raises PassRefused (no_pass, daily_limit)."""
    today = local_day(now)
    monthly_pass = current_pass(user_id, site_id, today)
    if monthly_pass is None:
        raise PassRefused("no_pass")
    if charges_today(monthly_pass, today) >= monthly_pass.plan.charges_per_day:
        raise PassRefused("daily_limit")
    return monthly_pass


def session_terms(terms: Tariff, plan: PassPlan) -> Tariff:
    """A pass charge's rules: metered as usual, free at stop, at most H hours, up to the plan's tier."""
    return replace(terms, max_minutes=min(terms.max_minutes, plan.hours_per_charge * 60), pass_max_watts=plan.max_watts)


def record_use(monthly_pass: MonthlyPass, session_id: int, now: datetime) -> None:
    """Count a charge against the pass (in the start's transaction)."""
    db.session.add(PassUse(session_id=session_id, pass_id=monthly_pass.id, used_on=local_day(now)))


def used_days(monthly_pass: MonthlyPass, today: date) -> int:
    """Days of validity begun by `today` (today counts as used)."""
    return max(0, min(monthly_pass.days, (today - monthly_pass.starts_on).days + 1))


def refund_amount(monthly_pass: MonthlyPass, today: date) -> int:
    """What a refund today gives back: the price less the revenue of the days begun (exact in fen)."""
    if monthly_pass.status != ACTIVE or today >= monthly_pass.ends_on:
        return 0
    return monthly_pass.price_fen - _recognised(
        monthly_pass.price_fen, monthly_pass.days, used_days(monthly_pass, today)
    )


def refund(monthly_pass: MonthlyPass, now: datetime) -> int:
    """End the pass today and give back the unused days pro rata; returns the fen refunded."""
    today = local_day(now)
    amount = refund_amount(monthly_pass, today)
    if amount <= 0:
        raise PassRefused("nothing_left")
    ledger.post(
        f"pass_refund:{monthly_pass.id}",
        TXN_PASS_REFUND,
        [
            ledger.Leg(deferred_account(monthly_pass.site_id), -amount),
            ledger.Leg(ledger.wallet_account(monthly_pass.user_id), amount),
        ],
        memo=f"pass {monthly_pass.id}: {used_days(monthly_pass, today)} of {monthly_pass.days} days used",
        at=now,
    )
    monthly_pass.status, monthly_pass.refunded_fen = REFUNDED, amount
    monthly_pass.refunded_on = max(today, monthly_pass.starts_on - timedelta(days=1))
    db.session.flush()
    return amount


def _recognised(price_fen: int, days: int, covered_days: int) -> int:
    """Revenue of the first `covered_days` days: cumulative floor, so the parts always sum to the price."""
    return price_fen * covered_days // days


def recognised_before(monthly_pass: MonthlyPass, day: date) -> int:
    """Revenue of the pass's days before `day` (a refund stops recognition after the refund day)."""
    end = monthly_pass.ends_on
    if monthly_pass.status == REFUNDED and monthly_pass.refunded_on is not None:
        end = min(end, monthly_pass.refunded_on + timedelta(days=1))
    covered = max(0, min((min(day, end) - monthly_pass.starts_on).days, monthly_pass.days))
    return _recognised(monthly_pass.price_fen, monthly_pass.days, covered)


def recognised_by_site_day(start: date, end: date, site_ids: list[int] | None = None) -> dict[tuple[int, date], int]:
    """Pass revenue recognised per (site id, local day) for the days in [start, end); days without any
    are left out. Each day's part is the difference of cumulative floors, so any run of days adds up
    exactly to what the passes earned over it (and a whole pass to its price less its refund)."""
    query = select(MonthlyPass).where(MonthlyPass.starts_on < end, MonthlyPass.ends_on > start)
    if site_ids is not None:
        query = query.where(MonthlyPass.site_id.in_(site_ids))
    out: dict[tuple[int, date], int] = {}
    for monthly_pass in db.session.execute(query).scalars():
        day = max(start, monthly_pass.starts_on)
        last = min(end, monthly_pass.ends_on)
        earned = recognised_before(monthly_pass, day)
        while day < last:
            following = day + timedelta(days=1)
            upto = recognised_before(monthly_pass, following)
            if upto != earned:
                key = (monthly_pass.site_id, day)
                out[key] = out.get(key, 0) + upto - earned
            day, earned = following, upto
    return out


def pass_revenue(site_id: int, start: date, end: date) -> int:
    """Pass revenue recognised at a site for the days in [start, end): exact, so months add up."""
    return sum(recognised_by_site_day(start, end, [site_id]).values())


def _day_start_utc(day: date) -> datetime:
    """The first instant of a local day, as the naive UTC the books store."""
    return datetime.combine(day, time(), tzinfo=LOCAL_TZ).astimezone(UTC).replace(tzinfo=None)


def book_recognised(today: date) -> int:
    """Book the pass revenue of every day before `today` not booked yet: per site and day one balanced
    transaction from the site's deferred account to its earned account, dated on that day. A day is
    booked only once it is over, when nothing can change its part any more (a refund gives back only
    days not yet begun). Returns the number of transactions; the caller commits."""
    last = db.session.execute(select(func.max(LedgerTxn.booked_at)).where(LedgerTxn.kind == TXN_PASS_EARNED)).scalar()
    if last is not None:
        first = local_day(last) + timedelta(days=1)
    else:
        first = db.session.execute(select(func.min(MonthlyPass.starts_on))).scalar()
    if first is None or first >= today:
        return 0
    booked = 0
    for (site_id, day), amount in sorted(
        recognised_by_site_day(first, today).items(), key=lambda i: (i[0][1], i[0][0])
    ):
        try:
            ledger.post(
                f"pass_earned:site:{site_id}:{day.isoformat()}",
                TXN_PASS_EARNED,
                [ledger.Leg(deferred_account(site_id), -amount), ledger.Leg(earned_account(site_id), amount)],
                memo=f"pass revenue of {day.isoformat()}",
                at=_day_start_utc(day),
            )
        except ledger.AlreadyBooked:
            continue  # another worker booked it first
        booked += 1
    return booked


def remind_expiring(now: datetime) -> int:
    """Queue one renewal reminder per pass ending within REMIND_DAYS and not renewed; caller commits."""
    from chargeshed.notify.base import PASS_EXPIRING
    from chargeshed.notify.outbox import queue_for_user

    today = local_day(now)
    due = (
        db.session.execute(
            select(MonthlyPass).where(
                MonthlyPass.status == ACTIVE,
                MonthlyPass.reminded_at.is_(None),
                MonthlyPass.starts_on <= today,
                MonthlyPass.ends_on > today,
                MonthlyPass.ends_on <= today + timedelta(days=REMIND_DAYS),
            )
        )
        .scalars()
        .all()
    )
    count = 0
    for monthly_pass in due:
        renewed = db.session.execute(
            select(MonthlyPass.id).where(
                MonthlyPass.user_id == monthly_pass.user_id,
                MonthlyPass.site_id == monthly_pass.site_id,
                MonthlyPass.status == ACTIVE,
                MonthlyPass.starts_on >= monthly_pass.ends_on,
            )
        ).first()
        if renewed is None:
            count += (
                queue_for_user(
                    monthly_pass.user_id,
                    PASS_EXPIRING,
                    {"plan": monthly_pass.plan.name, "until": monthly_pass.last_day.isoformat()},
                    f"pass_expiring:{monthly_pass.id}",
                    now,
                )
                > 0
            )
        monthly_pass.reminded_at = now
    return count
