"""Every model, imported in one place so migrations and create_app see the whole schema."""

from chargeshed.accounts.models import Bike, User
from chargeshed.charging.models import ChargeSession, SessionEvent, Tariff
from chargeshed.money.models import LedgerAccount, LedgerEntry, LedgerTxn
from chargeshed.payments.models import TopUp, WebhookEvent
from chargeshed.ports.models import PortCommand, PortEvent
from chargeshed.safety import models as safety_models  # noqa: F401
from chargeshed.settlement import models as settlement_models  # noqa: F401
from chargeshed.sites.models import Building, Operator, Port, Shed, Site

__all__ = [
    "Bike", "Building", "ChargeSession", "LedgerAccount", "LedgerEntry", "LedgerTxn", "Operator",
    "Port", "PortCommand", "PortEvent", "SessionEvent", "Shed", "Site", "Tariff", "TopUp", "User",
    "WebhookEvent",
]
