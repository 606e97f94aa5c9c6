"""A statement's figures, aggregated in SQL from the ledger (money) and the sessions (count, energy).

Attribution rules (also printed on every statement):
- Money belongs to the local day of its ledger transaction's business time (`booked_at`). A session
  is settled at the instant it ended (`ended_at`), the same instant that dates its count and
  energy, so one session never falls into two statements.
- Gross revenue: entries of `settle` transactions on the sheds' revenue accounts.
- Adjustments: every other transaction on those accounts (staff refunds, corrections), one line each.
- Sessions and energy: sessions that ended in the period (metered energy, for the electricity
  pass-through).
- Pass revenue (包月): recognised per day of validity, each day's part shared between the site's sheds
  (settlement/pass_revenue.py); it is its own line and is split like session revenue. It is computed
  from the passes (sales and refunds are in the ledger), so a statement never waits for the worker
  that books the finished days on passes:earned:site:<id>; the two agree day by day.
- Payment fees: `payment_fee` transactions booked in the period, allocated to every operator's site by
  largest remainder in proportion to its revenue (gross plus passes), then to the agreements in force
  the same way.
  A fee Stripe took in the account's settlement currency (e.g. HKD) counts as its CNY equivalent at
  the rate of its own payment: fee x CNY amount / settled amount, rounded half up. Refunds settled
  in that currency are shown beside them (amount settled, CNY returned), any fee on a refund at
  that refund's own rate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Date, cast, func, literal_column, select

from chargeshed.charging.models import ENDED, ChargeSession
from chargeshed.extensions import db
from chargeshed.money.ledger import DEFAULT_CURRENCY
from chargeshed.money.models import (
    KIND_HOLDS,
    KIND_REVENUE,
    KIND_WALLET,
    LedgerAccount,
    LedgerEntry,
    LedgerTxn,
)
from chargeshed.payments.books import (
    KIND_EXCHANGE,
    KIND_EXPENSE,
    KIND_REFUNDS_PENDING,
    TXN_PAYMENT_FEE,
    TXN_REFUND_SETTLEMENT,
    TXN_SESSION_REFUND,
)
from chargeshed.payments.fees import cny_equivalent
from chargeshed.settlement.agreements import AgreementBook, agreements_of, describe_terms
from chargeshed.settlement.models import ISSUED, Statement
from chargeshed.settlement.pass_revenue import pass_revenue_by_shed_day, passes_unearned
from chargeshed.settlement.periods import Period, local_offset_hours
from chargeshed.settlement.split import PartyTerms, largest_remainder, split_revenue
from chargeshed.sites.models import Operator, Shed, Site
from chargeshed.timeutil import now as clock_now
from chargeshed.timeutil import to_local

FIGURES_VERSION = 2  # 2: pass revenue (pass_fen) in every cell, part of net revenue
SETTLE = "settle"  # charging.sessions.settle: settle:<session id>
TOPUP = "topup"  # payments.fulfilment: topup:<top-up id>


def local_day(column):
    """SQL for the local calendar day of a stored naive-UTC timestamp (fixed offset: China, +8)."""
    hours = local_offset_hours()
    if db.engine.dialect.name == "sqlite":
        return func.date(column, f"{hours:+d} hours")
    return cast(column + literal_column(f"INTERVAL '{hours} hours'"), Date)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


@dataclass
class Cell:
    """Activity of one shed on one day."""

    sessions: int = 0
    energy_wh: int = 0
    gross_fen: int = 0
    adjustments_fen: int = 0
    pass_fen: int = 0  # 包月 revenue recognised on the day

    def add(self, other: Cell) -> None:
        self.sessions += other.sessions
        self.energy_wh += other.energy_wh
        self.gross_fen += other.gross_fen
        self.adjustments_fen += other.adjustments_fen
        self.pass_fen += other.pass_fen

    @property
    def active(self) -> bool:
        return bool(self.sessions or self.energy_wh or self.gross_fen or self.adjustments_fen or self.pass_fen)

    @property
    def net_fen(self) -> int:
        """What is split: session and pass revenue, plus refunds and corrections (negative)."""
        return self.gross_fen + self.pass_fen + self.adjustments_fen

    @property
    def revenue_fen(self) -> int:
        """Session and pass revenue: the weight for sharing out payment fees."""
        return self.gross_fen + self.pass_fen

    def as_dict(self) -> dict:
        return {
            "sessions": self.sessions,
            "energy_wh": self.energy_wh,
            "gross_fen": self.gross_fen,
            "pass_fen": self.pass_fen,
            "adjustments_fen": self.adjustments_fen,
            "net_fen": self.net_fen,
        }


def revenue_accounts() -> dict[int, int]:
    """Every shed's revenue account: account id -> shed id."""
    return dict(
        db.session.execute(
            select(LedgerAccount.id, LedgerAccount.shed_id).where(
                LedgerAccount.kind == KIND_REVENUE, LedgerAccount.shed_id.is_not(None)
            )
        ).all()
    )


@dataclass
class RevenueBook:
    """Revenue-account entries of a period per shed and local day: settled (gross) and other."""

    gross: dict[tuple[int, date], int]
    other_days: set[tuple[int, date]]


def revenue_by_shed_day(period: Period, accounts: dict[int, int]) -> RevenueBook:
    """One GROUP BY over the ledger's entries on `accounts` (account id -> shed id) in the period:
    settle transactions give the gross; days with other bookings are noted for the adjustment lines.
    (Naming the accounts lets the database estimate well and pick a hash join.)"""
    book = RevenueBook({}, set())
    if not accounts:
        return book
    start, end = period.utc_bounds()
    day = local_day(LedgerTxn.booked_at)
    is_settle = (LedgerTxn.kind == SETTLE).label("is_settle")
    rows = db.session.execute(
        select(LedgerEntry.account_id, day, is_settle, func.sum(LedgerEntry.amount_fen))
        .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
        .where(
            LedgerEntry.account_id.in_(list(accounts)),
            LedgerTxn.kind != TXN_PAYMENT_FEE,
            LedgerTxn.booked_at >= start,
            LedgerTxn.booked_at < end,
        )
        .group_by(LedgerEntry.account_id, day, is_settle)
    ).all()
    for account_id, d, settled, total in rows:
        key = (accounts[account_id], _as_date(d))
        if settled:
            book.gross[key] = book.gross.get(key, 0) + int(total)
        else:
            book.other_days.add(key)
    return book


def sessions_by_shed_day(period: Period, shed_ids: list[int]) -> dict[tuple[int, date], tuple[int, int]]:
    """Ended sessions and their metered energy per shed and local day: one GROUP BY."""
    start, end = period.utc_bounds()
    day = local_day(ChargeSession.ended_at)
    rows = db.session.execute(
        select(ChargeSession.shed_id, day, func.count(ChargeSession.id), func.sum(ChargeSession.energy_wh))
        .where(
            ChargeSession.shed_id.in_(shed_ids),
            ChargeSession.state == ENDED,
            ChargeSession.ended_at >= start,
            ChargeSession.ended_at < end,
        )
        .group_by(ChargeSession.shed_id, day)
    ).all()
    return {(shed_id, _as_date(d)): (int(count), int(energy or 0)) for shed_id, d, count, energy in rows}


def adjustment_lines(days: list[date], accounts: dict[int, int]) -> list[dict]:
    """Every transaction other than a settlement on these revenue accounts (account id -> shed id)
    booked on these local days, one line each (read day by day: such days are few).

    Payment fees are left out: they are allocated separately (and are not booked on revenue accounts).
    """
    lines = []
    for day in sorted(days):
        start, end = Period(day, day).utc_bounds()
        rows = db.session.execute(
            select(
                LedgerTxn.id,
                LedgerTxn.ref,
                LedgerTxn.kind,
                LedgerTxn.booked_at,
                LedgerTxn.memo,
                LedgerEntry.account_id,
                LedgerEntry.amount_fen,
            )
            .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
            .where(
                LedgerEntry.account_id.in_(list(accounts)),
                LedgerTxn.kind.not_in((SETTLE, TXN_PAYMENT_FEE)),
                LedgerTxn.booked_at >= start,
                LedgerTxn.booked_at < end,
            )
            .order_by(LedgerTxn.booked_at, LedgerTxn.id, LedgerEntry.id)
        ).all()
        lines += [
            {
                "txn_id": txn_id,
                "ref": ref,
                "kind": kind,
                "memo": memo,
                "booked_at": booked_at.isoformat(timespec="seconds"),
                "shed_id": accounts[account_id],
                "amount_fen": int(amount),
            }
            for txn_id, ref, kind, booked_at, memo, account_id, amount in rows
        ]
    return lines


def payment_fees(period: Period) -> tuple[int, int]:
    """Payment fees booked in the period (all top-ups): (total fen, number of fee transactions).

    Fees in another settlement currency count as their CNY equivalent (see fee_conversions).
    """
    start, end = period.utc_bounds()
    total, count = db.session.execute(
        select(func.coalesce(func.sum(-LedgerEntry.amount_fen), 0), func.count(func.distinct(LedgerTxn.id)))
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(
            LedgerTxn.kind.in_((TXN_PAYMENT_FEE, TXN_REFUND_SETTLEMENT)),
            LedgerAccount.kind == KIND_EXPENSE,
            LedgerAccount.currency == DEFAULT_CURRENCY,
            LedgerTxn.booked_at >= start,
            LedgerTxn.booked_at < end,
        )
    ).one()
    converted = fee_conversions(period)
    return (
        int(total) + sum(c["cny_fen"] + c.get("refunds", {}).get("cny_fen", 0) for c in converted.values()),
        int(count) + sum(c["transactions"] for c in converted.values()),
    )


def fee_conversions(period: Period) -> dict[str, dict]:
    """Fees taken in a settlement currency other than CNY, per currency: the fees and settled amounts
    in that currency's minor units, the CNY paid, and the CNY equivalent of the fees (each fee at its
    own payment's rate: fee x CNY amount / settled amount, half up).

    Refunds settled in that currency are under "refunds": what they took from the balance there
    (`settled_minor`), the CNY returned (`refunded_fen`), their fees and the fees' CNY equivalent at
    each refund's own rate (`fee_minor`, `cny_fen`; payment_fees counts them). A refund that failed
    afterwards counts negatively.
    """
    start, end = period.utc_bounds()
    rows = db.session.execute(
        select(LedgerTxn.id, LedgerTxn.kind, LedgerAccount.kind, LedgerAccount.currency, LedgerEntry.amount_fen)
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(
            LedgerTxn.kind.in_((TXN_PAYMENT_FEE, TXN_REFUND_SETTLEMENT)),
            LedgerAccount.kind.in_((KIND_EXPENSE, KIND_EXCHANGE)),
            LedgerTxn.booked_at >= start,
            LedgerTxn.booked_at < end,
        )
    ).all()
    per_txn: dict[int, dict] = defaultdict(dict)
    txn_kind: dict[int, str] = {}
    for txn_id, kind_of_txn, kind, currency, amount in rows:
        per_txn[txn_id][(kind, currency)] = int(amount)
        txn_kind[txn_id] = kind_of_txn
    out: dict[str, dict] = {}
    for txn_id, legs in per_txn.items():
        foreign = [c for (k, c) in legs if c != DEFAULT_CURRENCY]
        if not foreign:
            continue
        currency = foreign[0]
        fee, gross = -legs.get((KIND_EXPENSE, currency), 0), legs.get((KIND_EXCHANGE, currency), 0)
        paid = -legs.get((KIND_EXCHANGE, DEFAULT_CURRENCY), 0)
        item = out.setdefault(
            currency, {"fee_minor": 0, "gross_minor": 0, "paid_fen": 0, "cny_fen": 0, "transactions": 0}
        )
        if txn_kind[txn_id] == TXN_REFUND_SETTLEMENT:
            refunds = item.setdefault(
                "refunds", {"settled_minor": 0, "refunded_fen": 0, "fee_minor": 0, "cny_fen": 0, "transactions": 0}
            )
            cny = cny_equivalent(fee, abs(paid), abs(gross))
            refunds["settled_minor"] -= gross
            refunds["refunded_fen"] -= paid
            refunds["fee_minor"] += fee
            refunds["cny_fen"] += cny
            refunds["transactions"] += 1
            continue
        if not fee and (KIND_EXPENSE, currency) not in legs:
            continue
        item["fee_minor"] += fee
        item["gross_minor"] += gross
        item["paid_fen"] += paid
        item["cny_fen"] += cny_equivalent(fee, paid, gross)
        item["transactions"] += 1
    return out


def residents_money(period: Period) -> dict:
    """What is owed to residents at the end of the period (wallets, live holds, cash-outs on their way),
    and the top-ups received in it.

    Balances at the end = today's balances less entries booked since, so only recent entries are read.
    """
    start, end = period.utc_bounds()
    kinds = (KIND_WALLET, KIND_HOLDS, KIND_REFUNDS_PENDING)
    now_balances = dict(
        db.session.execute(
            select(LedgerAccount.kind, func.coalesce(func.sum(LedgerAccount.balance_fen), 0))
            .where(LedgerAccount.kind.in_(kinds))
            .group_by(LedgerAccount.kind)
        ).all()
    )
    since = dict(
        db.session.execute(
            select(LedgerAccount.kind, func.sum(LedgerEntry.amount_fen))
            .select_from(LedgerEntry)
            .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(LedgerAccount.kind.in_(kinds), LedgerTxn.booked_at >= end)
            .group_by(LedgerAccount.kind)
        ).all()
    )
    topups = db.session.execute(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
        .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(
            LedgerTxn.kind == TOPUP,
            LedgerAccount.kind == KIND_WALLET,
            LedgerTxn.booked_at >= start,
            LedgerTxn.booked_at < end,
        )
    ).scalar_one()
    at_end = {kind: int(now_balances.get(kind, 0)) - int(since.get(kind) or 0) for kind in kinds}
    return {
        "wallets_fen": at_end[KIND_WALLET],
        "holds_fen": at_end[KIND_HOLDS],
        "cashouts_fen": at_end[KIND_REFUNDS_PENDING],
        "topups_fen": int(topups),
    }


def _fee_share(
    total_fees: int, gross: dict[tuple[int, date], int], units: dict[int, tuple[int, int]], unit: tuple[int, int]
) -> tuple[int, int, int]:
    """This operator-and-site's part of the period's fees: (fees fen, its revenue, everybody's revenue);
    `gross` holds each shed's and day's revenue (sessions and passes)."""
    per_unit: dict[tuple[int, int], int] = {u: 0 for u in sorted(set(units.values()))}
    for (shed_id, _day), amount in gross.items():
        if shed_id in units:
            per_unit[units[shed_id]] += amount
    keys = list(per_unit)
    if total_fees == 0 or unit not in per_unit:
        return 0, per_unit.get(unit, 0), sum(per_unit.values())
    parts = largest_remainder(total_fees, [max(0, per_unit[k]) for k in keys])
    return parts[keys.index(unit)], per_unit[unit], sum(per_unit.values())


def _issued_statement_on(operator_id: int, site_id: int, day: date) -> str | None:
    return db.session.execute(
        select(Statement.number).where(
            Statement.operator_id == operator_id,
            Statement.site_id == site_id,
            Statement.status == ISSUED,
            Statement.period_start <= day,
            Statement.period_end >= day,
        )
    ).scalar_one_or_none()


def _describe_adjustments(lines: list[dict], operator_id: int, site_id: int, shed_names: dict[int, str]) -> None:
    """Add the shed name, and for a session refund the session, its day and its issued statement."""
    for line in lines:
        line["shed"] = shed_names.get(line["shed_id"], "")
        line["session_id"] = line["session_date"] = line["statement_number"] = None
        prefix, _sep, rest = line["ref"].partition(":")
        if prefix == TXN_SESSION_REFUND and rest.isdigit():
            session = db.session.get(ChargeSession, int(rest))
            if session is not None and session.ended_at is not None:
                ended = to_local(session.ended_at).date()
                line["session_id"] = session.id
                line["session_date"] = ended.isoformat()
                line["statement_number"] = _issued_statement_on(operator_id, site_id, ended)


def compute_figures(operator_id: int, site_id: int, period: Period, now: datetime | None = None) -> dict:
    """Every figure of the statement, as plain JSON-ready data (what an issued statement keeps)."""
    now = now or clock_now()
    operator = db.session.get(Operator, operator_id)
    site = db.session.get(Site, site_id)
    all_sheds = db.session.execute(select(Shed.id, Shed.operator_id, Shed.site_id, Shed.name)).all()
    units = {shed_id: (op_id, s_id) for shed_id, op_id, s_id, _name in all_sheds}
    mine = sorted(
        (shed_id, name) for shed_id, op_id, s_id, name in all_sheds if op_id == operator_id and s_id == site_id
    )
    shed_ids = [shed_id for shed_id, _name in mine]
    shed_names = dict(mine)
    every_account = revenue_accounts()
    accounts = {a: shed_id for a, shed_id in every_account.items() if shed_id in shed_names}

    revenue = revenue_by_shed_day(period, every_account)
    gross = revenue.gross
    sessions = sessions_by_shed_day(period, shed_ids) if shed_ids else {}
    adjustments = adjustment_lines(sorted({d for shed_id, d in revenue.other_days if shed_id in shed_names}), accounts)
    _describe_adjustments(adjustments, operator_id, site_id, shed_names)
    pass_income = pass_revenue_by_shed_day(period)
    earned = dict(gross)
    for key, amount in pass_income.items():
        earned[key] = earned.get(key, 0) + amount
    total_fees, fee_txns = payment_fees(period)
    fees_here, gross_here, gross_everywhere = _fee_share(total_fees, earned, units, (operator_id, site_id))

    cells: dict[tuple[int, date], Cell] = defaultdict(Cell)
    for key, amount in gross.items():
        if key[0] in shed_names:
            cells[key].gross_fen += amount
    for key, amount in pass_income.items():
        if key[0] in shed_names:
            cells[key].pass_fen += amount
    for key, (count, energy) in sessions.items():
        cells[key].sessions += count
        cells[key].energy_wh += energy
    for line in adjustments:
        booked = to_local(datetime.fromisoformat(line["booked_at"])).date()
        cells[(line["shed_id"], booked)].adjustments_fen += line["amount_fen"]

    by_shed = {shed_id: Cell() for shed_id in shed_ids}
    by_day = {day: Cell() for day in period.days()}
    totals = Cell()
    for (shed_id, day), cell in cells.items():
        by_shed[shed_id].add(cell)
        by_day[day].add(cell)
        totals.add(cell)

    segments, unassigned = _segments(operator_id, site_id, period, cells, fees_here, shed_names)
    parties: dict[tuple[str, str], int] = {}
    for segment in segments:
        for party in segment["parties"]:
            key = (party["name"], party["role"])
            parties[key] = parties.get(key, 0) + party["payout_fen"]
    electricity = sum(s["electricity_fen"] for s in segments)
    distributable = sum(s["distributable_fen"] for s in segments)
    return {
        "version": FIGURES_VERSION,
        "computed_at": now.isoformat(timespec="seconds"),
        "operator": {"id": operator_id, "name": operator.name if operator else ""},
        "site": {"id": site_id, "name": site.name if site else "", "address": site.address if site else ""},
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat(), "label": period.label},
        "sheds": [
            {
                "id": shed_id,
                "name": shed_names[shed_id],
                "account": f"revenue:shed:{shed_id}",
                **by_shed[shed_id].as_dict(),
            }
            for shed_id in shed_ids
        ],
        "days": [{"date": day.isoformat(), **cell.as_dict()} for day, cell in by_day.items()],
        "adjustments": adjustments,
        "fees": {
            "period_total_fen": total_fees,
            "transactions": fee_txns,
            "allocated_fen": fees_here,
            "site_gross_fen": gross_here,
            "all_gross_fen": gross_everywhere,
            "converted": fee_conversions(period),
        },
        "segments": segments,
        "unassigned": unassigned,
        "parties": [{"name": name, "role": role, "payout_fen": amount} for (name, role), amount in parties.items()],
        "totals": {
            **totals.as_dict(),
            "electricity_fen": electricity,
            "fees_fen": fees_here,
            "distributable_fen": distributable,
            "payout_fen": sum(parties.values()),
            "unassigned_fen": unassigned["net_fen"] - unassigned["fees_fen"] if unassigned else 0,
        },
        "residents": {**residents_money(period), "passes_unearned_fen": passes_unearned(period)},
    }


def _segments(
    operator_id: int,
    site_id: int,
    period: Period,
    cells: dict[tuple[int, date], Cell],
    fees_fen: int,
    shed_names: dict[int, str],
) -> tuple[list[dict], dict | None]:
    """Group the cells by the agreement in force, allocate fees by revenue, and split each group."""
    book = AgreementBook(agreements_of(operator_id, site_id))
    groups: dict[int | None, Cell] = {}
    spans: dict[int | None, list[date]] = {}
    sheds_of: dict[int | None, set[int]] = defaultdict(set)
    for agreement in book.agreements:
        start, end = book.ranges[agreement.id]
        first, last = max(start, period.start), min(end or period.end, period.end)
        if first <= last:
            groups[agreement.id] = Cell()
            spans[agreement.id] = [first, last]
    for (shed_id, day), cell in sorted(cells.items()):
        if not cell.active:
            continue
        agreement = book.in_force(shed_id, day)
        key = agreement.id if agreement is not None else None
        groups.setdefault(key, Cell()).add(cell)
        sheds_of[key].add(shed_id)
        if key is None:
            span = spans.setdefault(None, [day, day])
            span[0], span[1] = min(span[0], day), max(span[1], day)
    keys = list(groups)
    fees = largest_remainder(fees_fen, [max(0, groups[k].revenue_fen) for k in keys]) if keys else []
    fee_of = dict(zip(keys, fees, strict=True))
    by_id = {a.id: a for a in book.agreements}
    segments = []
    for key in keys:
        if key is None:
            continue
        agreement, cell = by_id[key], groups[key]
        split = split_revenue(
            cell.net_fen,
            cell.energy_wh,
            fee_of[key],
            [PartyTerms(p.name, p.role, p.share_bp, p.pays_electricity, p.bears_fees) for p in agreement.parties],
            agreement.electricity_fen_per_kwh,
            agreement.fee_mode,
        )
        segments.append(
            {
                **describe_terms(agreement),
                "from": spans[key][0].isoformat(),
                "to": spans[key][1].isoformat(),
                "sheds": [shed_names[i] for i in sorted(sheds_of[key])],
                **cell.as_dict(),
                "electricity_fen": split.electricity_fen,
                "fees_fen": split.fees_fen,
                "distributable_fen": split.distributable_fen,
                "payout_fen": split.payout_fen,
                "parties": [
                    {
                        "name": p.name,
                        "role": p.role,
                        "share_bp": p.share_bp,
                        "share_fen": p.share_fen,
                        "electricity_fen": p.electricity_fen,
                        "fees_fen": p.fees_fen,
                        "payout_fen": p.payout_fen,
                    }
                    for p in split.payouts
                ],
            }
        )
    unassigned = None
    if None in groups or (fees_fen and not segments):
        cell = groups.get(None, Cell())
        fee = fee_of.get(None, fees_fen if not segments else 0)
        unassigned = {
            "from": spans.get(None, [period.start])[0].isoformat(),
            "to": spans.get(None, [None, period.end])[1].isoformat(),
            "sheds": [shed_names[i] for i in sorted(sheds_of[None])],
            **cell.as_dict(),
            "fees_fen": fee,
        }
    return segments, unassigned
