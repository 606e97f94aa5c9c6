"""Reconciliation with Stripe: credit paid top-ups whose webhook never came, record missing
fees, settle refunds left pending, book refunds made outside ChargeShed, close top-ups that
expired or failed, book refunds' and payouts' balance transactions in the settlement currency,
compare Stripe's balance there with the books, and report whatever does not match.

Stripe's balance is the sum of its balance transactions. In each settlement currency other than
the payments' own (CNY), `external:stripe:<currency>` must hold exactly minus that balance: every
charge, refund, refund failure, payout and payout failure is booked there at Stripe's own figures.

The run is the unit of work: it commits after each item and before every call to Stripe.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timedelta

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.format import format_fen
from chargeshed.money.models import LedgerAccount
from chargeshed.payments import events, fees, fulfilment, refunds
from chargeshed.payments.models import CREATED, CREDITED, EXPIRED, EXTERNAL_UNMATCHED, FAILED, REFUNDED, TopUp
from chargeshed.payments.providers import fee_from_checkout, payment_from_checkout, unpaid_outcome
from chargeshed.timeutil import now as clock_now

log = logging.getLogger(__name__)

FEE_BATCH = 500


@dataclass
class Report:
    """What one reconciliation run found and did."""

    checkouts: int = 0
    credited: list[int] = dc_field(default_factory=list)
    fees: list[int] = dc_field(default_factory=list)
    expired: list[int] = dc_field(default_factory=list)
    failed: list[int] = dc_field(default_factory=list)
    refunds_settled: list[int] = dc_field(default_factory=list)
    refunds_submitted: list[int] = dc_field(default_factory=list)
    outside_refunds: list[str] = dc_field(default_factory=list)
    balance_txns: list[str] = dc_field(default_factory=list)
    balances: list[str] = dc_field(default_factory=list)
    waiting: list[str] = dc_field(default_factory=list)
    mismatches: list[str] = dc_field(default_factory=list)

    def lines(self) -> list[str]:
        """A short human summary, one fact a line."""
        out = [
            f"checked {self.checkouts} checkout sessions",
            f"credited late: {len(self.credited)}" + _ids(self.credited),
            f"fees recorded: {len(self.fees)}" + _ids(self.fees),
            f"expired top-ups: {len(self.expired)}",
            f"failed payments: {len(self.failed)}" + _ids(self.failed),
            f"refunds made outside ChargeShed, booked: {len(self.outside_refunds)}",
            f"refunds settled: {len(self.refunds_settled)}" + _ids(self.refunds_settled),
            f"refunds submitted again: {len(self.refunds_submitted)}" + _ids(self.refunds_submitted),
            f"refund and payout balance transactions booked: {len(self.balance_txns)}",
        ]
        out += self.balances
        out += [f"waiting: {w}" for w in self.waiting]
        out += [f"MISMATCH: {m}" for m in self.mismatches]
        return out


def _ids(ids: list[int]) -> str:
    if not ids:
        return ""
    return f" (ids {', '.join(map(str, ids[:20]))}{' ...' if len(ids) > 20 else ''})"


def reconcile(provider, *, since: int, now: datetime | None = None, start_ttl_seconds: int = 900) -> Report:
    """Compare our books with Stripe's for Checkout Sessions and refunds created since `since` (unix s).

    Uses the same idempotent functions as the webhook, so running it while events
    are arriving (or twice) changes nothing twice.
    """
    now = now or clock_now()
    report = Report()
    db.session.commit()
    for session in provider.checkouts_since(since):
        report.checkouts += 1
        _check_checkout(session, provider, report, now, start_ttl_seconds)
        db.session.commit()
    _record_missing_fees(provider, report)
    _settle_pending_refunds(provider, report, now)
    db.session.commit()
    for refund in list(provider.refunds_since(since)):
        if refund.refund_id is not None:
            continue
        if refunds.external_refund_known(refund.ref):
            if refund.status in refunds.FAILED_STATES and refunds.external_refund_open(refund.ref):
                outcome = refunds.reverse_external_refund(refund.ref, now=now)
                db.session.commit()
                report.outside_refunds.append(refund.ref)
                report.mismatches.append(
                    f"refund {refund.ref} made outside ChargeShed failed after it was booked; "
                    f"booked back now: {outcome}"
                )
            continue
        outcome = events.apply_refund(refund, provider)
        report.outside_refunds.append(refund.ref)
        # Its webhook never arrived: say so once (later runs find it booked).
        report.mismatches.append(
            f"refund {refund.ref} of {format_fen(refund.amount_fen)} on {refund.payment_ref} "
            f"was not made here (dashboard?); booked now: {outcome}"
        )
    _book_balance_txns(provider, since, report)
    _compare_balances(provider, report)
    # The same look-back window on the app's clock (the one that dates our rows).
    window = timedelta(seconds=max(0, time.time() - since))
    report.mismatches += _shortfall_lines(now - window)
    report.mismatches += refunds.pending_refunds_problems()
    db.session.commit()
    return report


def _book_balance_txns(provider, since: int, report: Report) -> None:
    """Book every refund, refund failure, payout and payout failure Stripe listed since `since` that is
    not on the books yet (their webhooks may never have come); report any other kind Stripe made."""
    if not hasattr(provider, "balance_transactions_since"):
        return
    db.session.commit()
    listed = list(provider.balance_transactions_since(since))  # fetched before anything is written
    for settled in listed:
        txn = settled.txn
        if txn.type in fees.PAYMENT_TYPES:  # booked with its top-up (fee:topup:<id>), checked above
            continue
        if settled.dispute is not None:
            _apply_dispute(settled, provider, report)
        outcome = fees.book_balance_txn(provider.name, settled)
        db.session.commit()
        if outcome == "recorded":
            report.balance_txns.append(txn.ref)
        elif outcome not in ("already_recorded", "nothing_to_book"):
            report.mismatches.append(
                f"balance transaction {txn.ref} ({txn.type} of {_minor(txn.amount, txn.currency)} "
                f"from {txn.source or 'Stripe'}) is not on the books: {outcome}"
            )


def _apply_dispute(settled, provider, report: Report) -> None:
    """A dispute's withdrawal or reinstatement, booked here when its webhook never came."""
    won = settled.txn.fee + settled.txn.net > 0  # money coming back: a reinstatement
    outcome = events.apply_dispute(settled.dispute, provider, won=won)
    if outcome == "already_booked":
        return
    report.outside_refunds.append(settled.dispute.ref)
    report.mismatches.append(
        f"dispute {settled.dispute.ref} {'won: money put back' if won else 'withdrew money'} "
        f"({format_fen(settled.dispute.amount_fen)} on {settled.dispute.payment_ref}), its webhook never arrived; "
        f"booked now: {outcome}"
    )


def _compare_balances(provider, report: Report) -> None:
    """Stripe's balance in each settlement currency against minus `external:<provider>:<currency>`."""
    if not hasattr(provider, "balance"):
        return
    db.session.commit()
    held = provider.balance()
    prefix = f"external:{provider.name}:"
    booked = {
        code.removeprefix(prefix): -balance
        for code, balance in db.session.execute(
            select(LedgerAccount.code, LedgerAccount.balance_fen).where(LedgerAccount.code.startswith(prefix))
        )
    }
    for currency in sorted((set(held) | set(booked)) - {ledger.DEFAULT_CURRENCY}):
        at_stripe, here = held.get(currency, 0), booked.get(currency, 0)
        if at_stripe == here:
            report.balances.append(f"Stripe balance {_minor(at_stripe, currency)}: the books agree")
        else:
            report.mismatches.append(
                f"Stripe holds {_minor(at_stripe, currency)} but the books say {_minor(here, currency)} "
                f"(difference {_minor(at_stripe - here, currency)}): a balance transaction is missing on one side"
            )
    db.session.commit()


def _minor(amount: int | None, currency: str) -> str:
    """Minor units of a two-decimal currency in words, e.g. -76100 hkd -> "-761.00 HKD"."""
    amount = amount or 0
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d} {currency.upper()}"


def _shortfall_lines(since: datetime) -> list[str]:
    lines = []
    for row in refunds.shortfalls(since):
        if row.status == EXTERNAL_UNMATCHED:
            lines.append(
                f"{row.kind} {row.provider_ref} of "
                f"{format_fen(row.amount_fen)} on {row.payment_ref} matches no top-up here"
            )
        else:
            lines.append(
                f"{row.kind} {row.provider_ref} on top-up {row.topup_id} returned "
                f"{format_fen(row.amount_fen)} outside ChargeShed; the wallet had "
                f"{format_fen(row.taken_fen)}: shortfall {format_fen(row.shortfall_fen)}"
            )
    return lines


def _check_checkout(session, provider, report: Report, now: datetime, ttl: int) -> None:
    payment = payment_from_checkout(session)
    reference = session.client_reference_id or ""
    topup = db.session.get(TopUp, int(reference)) if reference.isdigit() else None
    if topup is None:
        if payment is not None:
            report.mismatches.append(
                f"paid checkout {session.id} ({payment.amount_fen} {payment.currency}) "
                f"has no top-up here (reference {reference or 'missing'})"
            )
        return
    if payment is None:
        if topup.status == CREDITED and topup.checkout_ref == session.id:
            report.mismatches.append(
                f"top-up {topup.id} is credited but Stripe says checkout {session.id} "
                f"is {session.status}/{session.payment_status}"
            )
        elif session.status == "expired" and topup.status == CREATED:
            if fulfilment.mark_unpaid(topup.id, session.id, EXPIRED):
                report.expired.append(topup.id)
        elif unpaid_outcome(session) == FAILED:
            if topup.status == CREATED and fulfilment.mark_unpaid(topup.id, session.id, FAILED):
                report.failed.append(topup.id)
        elif session.status == "complete" and topup.status == CREATED:
            report.waiting.append(f"top-up {topup.id}: payment still processing")
        return
    problem = fulfilment.payment_problem(topup, payment)
    if problem:
        report.mismatches.append(
            f"checkout {session.id} paid {payment.amount_fen} {payment.currency} "
            f"for top-up {topup.id} ({topup.amount_fen} {topup.currency}): {problem}"
        )
        return
    if topup.status not in (CREDITED, REFUNDED):
        result = events.settle_payment(topup.id, payment, provider, now=now, start_ttl_seconds=ttl, record_fee=False)
        if result.credited:
            log.warning("top-up %s credited by reconciliation: its webhook never arrived", topup.id)
            report.credited.append(topup.id)
        db.session.refresh(topup)
    if topup.status not in (CREDITED, REFUNDED):
        return
    fee = fee_from_checkout(session)
    if fee is not None and topup.fee_fen is None:
        outcome = fees.book_fee(topup, fee)
        if outcome == "recorded":
            report.fees.append(topup.id)
        elif outcome != "already_recorded":
            report.mismatches.append(f"top-up {topup.id}: fee not booked ({outcome}: {fee.fee} {fee.currency})")
    elif fee is not None and topup.fee_fen not in (None, fee.fee):
        report.mismatches.append(f"top-up {topup.id}: fee here {topup.fee_fen}, Stripe says {fee.fee}")


def _record_missing_fees(provider, report: Report) -> None:
    """Credited Stripe top-ups older than the listing window may still lack their fee."""
    missing = (
        db.session.execute(
            select(TopUp.id)
            .where(TopUp.provider == provider.name, TopUp.status.in_((CREDITED, REFUNDED)), TopUp.fee_fen.is_(None))
            .order_by(TopUp.id)
            .limit(FEE_BATCH)
        )
        .scalars()
        .all()
    )
    db.session.commit()
    for topup_id in missing:
        topup = db.session.get(TopUp, topup_id)
        try:
            outcome = fees.record_fee(topup, provider)
            db.session.commit()
        except Exception as exc:  # one bad top-up must not stop the run
            db.session.rollback()
            report.mismatches.append(f"top-up {topup.id}: fee lookup failed ({type(exc).__name__})")
            continue
        if outcome == "recorded":
            report.fees.append(topup.id)
        elif outcome == "unknown":
            report.waiting.append(f"top-up {topup.id}: fee not available yet")
        elif outcome != "already_recorded":
            report.mismatches.append(f"top-up {topup.id}: fee not booked ({outcome})")


def _settle_pending_refunds(provider, report: Report, now: datetime) -> None:
    pending = [part.id for part in refunds.pending_refunds() if part.topup.provider == provider.name]
    db.session.commit()
    for part_id in pending:
        part = db.session.get(refunds.TopUpRefund, part_id)
        try:
            if part.provider_ref is None:
                outcome = refunds.submit_refund(part, provider, now=now)
                if outcome in ("submitted", "rejected"):
                    report.refunds_submitted.append(part.id)
                elif outcome.startswith("refund_") or outcome == "found":
                    report.refunds_settled.append(part.id)
                continue
            ref = part.provider_ref
            db.session.commit()
            outcome = refunds.apply_provider_refund(provider.refund_by_ref(ref), now=now)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            report.mismatches.append(f"refund {part.id}: lookup failed ({type(exc).__name__})")
            continue
        if outcome.startswith("refund_") and outcome != "refund_pending":
            report.refunds_settled.append(part.id)
        elif outcome == "refund_pending":
            report.waiting.append(f"refund {part.id}: still pending at Stripe")
