"""The ledger accounts payments use besides wallets and external:<provider>.

Kinds and refs here are read by settlement statements; keep them stable.
"""

from __future__ import annotations

from chargeshed.money import ledger
from chargeshed.money.models import LedgerAccount

KIND_EXPENSE = "expense"
KIND_EXCHANGE = "exchange"
KIND_LOSS = "loss"
KIND_REFUNDS_PENDING = "refunds"
KIND_PAYOUT = "payout"
PENDING_REFUNDS_CODE = "refunds:pending"

# Transaction kinds booked by this package (besides "topup").
TXN_PAYMENT_FEE = "payment_fee"  # fee:topup:<topup id>: fees:<p> -fee, external:<p> +fee (see fees.py)
TXN_CASHOUT = "cashout"  # cashout:<cash-out id>: wallet -> refunds:pending
TXN_REFUND = "refund"  # refund:<refund id>: refunds:pending -> external:<p>
TXN_REFUND_FAILED = "refund_failed"  # refund_failed:<refund id>: refunds:pending (or external) -> wallet
TXN_SESSION_REFUND = "session_refund"  # session_refund:<session id>: revenue:shed:<id> -> wallet
TXN_EXTERNAL_REFUND = "external_refund"  # external_refund:<ref>: wallet (and losses:<p>) -> external:<p>
# external_refund_failed:<ref>: an outside refund that failed later, booked back (see refunds.py)
TXN_EXTERNAL_REFUND_FAILED = "external_refund_failed"
# balance:<provider balance transaction id>, in the settlement currency (see fees.py):
TXN_REFUND_SETTLEMENT = "refund_settlement"  # a refund's (or refund failure's) conversion at its own rate
TXN_PAYOUT = "payout"  # external:<p>:<cur> -> payouts:<p>:<cur> (a payout failure: back)


def _code(base: str, currency: str) -> str:
    currency = currency.lower()
    return base if currency == ledger.DEFAULT_CURRENCY else f"{base}:{currency}"


def fees_account(provider: str, currency: str = ledger.DEFAULT_CURRENCY) -> LedgerAccount:
    """What a payment provider charged us: a cost, so its balance is negative (see fees.py)."""
    return ledger.get_account(_code(f"fees:{provider}", currency), KIND_EXPENSE, currency=currency)


def exchange_account(provider: str, currency: str) -> LedgerAccount:
    """One side of the provider's currency conversions (CNY out, settlement currency in)."""
    return ledger.get_account(f"exchange:{provider}:{currency.lower()}", KIND_EXCHANGE, currency=currency)


def losses_account(provider: str) -> LedgerAccount:
    """Money returned to payers outside ChargeShed that no wallet could cover: the operator's loss."""
    return ledger.get_account(f"losses:{provider}", KIND_LOSS)


def pending_refunds_account() -> LedgerAccount:
    """Wallet money on its way back to residents' payment methods."""
    return ledger.get_account(PENDING_REFUNDS_CODE, KIND_REFUNDS_PENDING)


def payouts_account(provider: str, currency: str) -> LedgerAccount:
    """Money the provider paid out to the operator's bank account, in the settlement currency.

    The external accounts' sign convention: minus its balance is what reached the bank.
    """
    return ledger.get_account(_code(f"payouts:{provider}", currency), KIND_PAYOUT, currency=currency)
