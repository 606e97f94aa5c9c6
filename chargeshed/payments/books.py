"""The ledger accounts payments use besides wallets and external:<provider>.

Kinds and refs here are read by settlement statements; keep them stable.
"""

from __future__ import annotations

from chargeshed.money import ledger
from chargeshed.money.models import LedgerAccount

KIND_EXPENSE = "expense"
KIND_REFUNDS_PENDING = "refunds"
PENDING_REFUNDS_CODE = "refunds:pending"

# Transaction kinds booked by this package (besides "topup").
TXN_PAYMENT_FEE = "payment_fee"          # fee:topup:<topup id>: external:<p> -> fees:<p>
TXN_CASHOUT = "cashout"                  # cashout:<cash-out id>: wallet -> refunds:pending
TXN_REFUND = "refund"                    # refund:<refund id>: refunds:pending -> external:<p>
TXN_REFUND_FAILED = "refund_failed"      # refund_failed:<refund id>: refunds:pending (or external) -> wallet
TXN_SESSION_REFUND = "session_refund"    # session_refund:<session id>: revenue:shed:<id> -> wallet


def fees_account(provider: str) -> LedgerAccount:
    """What a payment provider charged us: an expense."""
    return ledger.get_account(f"fees:{provider}", KIND_EXPENSE)


def pending_refunds_account() -> LedgerAccount:
    """Wallet money on its way back to residents' payment methods."""
    return ledger.get_account(PENDING_REFUNDS_CODE, KIND_REFUNDS_PENDING)
