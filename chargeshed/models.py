"""Every model, imported in one place so migrations and create_app see the whole schema."""

from chargeshed.accounts.models import Bike, StaffAction, User
from chargeshed.accounts.reset import PasswordReset
from chargeshed.charging.models import ChargeSession, SessionEvent, Tariff
from chargeshed.money.models import LedgerAccount, LedgerEntry, LedgerTxn
from chargeshed.notify.models import Notification, NotifyConsent, PortFreeWatch
from chargeshed.passes.models import MonthlyPass, PassPlan, PassUse
from chargeshed.payments.models import CashOut, SessionRefund, TopUp, TopUpRefund, WebhookEvent
from chargeshed.ports.models import (
    Alert,
    Charger,
    DeviceLink,
    Gateway,
    MeterSample,
    PortCommand,
    PortEvent,
    PortTelemetry,
)
from chargeshed.ports.ocpp_models import OcppTransaction
from chargeshed.safety.models import CaseEvent, CasePhoto, HazardCase, Incident, IncidentOccurrence, SyncMark
from chargeshed.settlement.models import Agreement, AgreementParty, Statement
from chargeshed.sites.models import Building, OccupancyVersion, Operator, Port, Shed, Site

__all__ = [
    "Agreement",
    "AgreementParty",
    "Alert",
    "Bike",
    "Building",
    "CaseEvent",
    "CashOut",
    "CasePhoto",
    "Charger",
    "DeviceLink",
    "Gateway",
    "MeterSample",
    "OcppTransaction",
    "PortTelemetry",
    "ChargeSession",
    "HazardCase",
    "Incident",
    "IncidentOccurrence",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTxn",
    "OccupancyVersion",
    "Operator",
    "Port",
    "PortCommand",
    "PortEvent",
    "SessionEvent",
    "SessionRefund",
    "Shed",
    "Site",
    "Statement",
    "StaffAction",
    "SyncMark",
    "Tariff",
    "TopUp",
    "TopUpRefund",
    "User",
    "WebhookEvent",
    "Notification",
    "NotifyConsent",
    "PortFreeWatch",
    "PasswordReset",
    "MonthlyPass",
    "PassPlan",
    "PassUse",
]
