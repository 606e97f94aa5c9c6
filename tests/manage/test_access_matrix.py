"""Role and tenant matrix over EVERY registered back-office URL (/manage, /operator, /safety).

The routes are read from app.url_map, so routes added later are walked too. Expected roles come
from each view's staff_required(...) declaration. URL parameters are filled with the ids of another
tenant's objects; a parameter this test cannot fill with a real object gets an id that does not
exist (still a 403/404, never a 500) and is listed in a warning: add a filler to OTHER_TENANT below.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable

import pytest
from sqlalchemy import select
from werkzeug.routing import AnyConverter, IntegerConverter, Rule

from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_PATROL, ROLE_SITE_MANAGER
from chargeshed.extensions import db
from chargeshed.ports.models import Alert
from chargeshed.sites.models import Building
from tests.conftest import START
from tests.manage.conftest import PASSWORD, Tenant

PREFIXES = ("/manage", "/operator", "/safety")
# Back-office URLs anyone may open without signing in (none today).
PUBLIC_ENDPOINTS: set[str] = set()
MISSING_ID = 987654
STAFF_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF, ROLE_PATROL)


def _building(tenant: Tenant) -> int:
    return db.session.execute(
        select(Building.id).where(Building.site_id == tenant.site.id).order_by(Building.id).limit(1)
    ).scalar_one()


def _alert(tenant: Tenant) -> int:
    alert = Alert(port_id=tenant.ports[0].id, kind="offline", started_at=START, raised_at=START)
    db.session.add(alert)
    db.session.commit()
    return alert.id


def _case(tenant: Tenant) -> int:
    from chargeshed.safety import workflow

    return workflow.file_report(workflow.NewReport("bike_indoors", _building(tenant), floor=1, spot="lobby")).id


def _session(tenant: Tenant) -> int:
    """An ended, paid charge of a resident of the tenant, on the tenant's port."""
    from chargeshed.accounts.models import ROLE_RESIDENT
    from chargeshed.accounts.services import create_user
    from chargeshed.charging import sessions as charging
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import Payment

    resident = create_user(f"1370000{tenant.site.id:04d}", PASSWORD, ROLE_RESIDENT, site_id=tenant.site.id)
    topup = fulfilment.create_topup(resident.id, 1000, [1000], "cny", "demo")
    topup.checkout_ref = f"demo_{topup.id}"
    db.session.commit()
    fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, 1000, "cny"))
    session = charging.start_session(resident.id, tenant.ports[1], now=START)
    charging.mark_charging(session, START)
    session.tier_watts = session.watts = 180
    db.session.commit()
    charging.end_session(session, charging.FULL, START.replace(hour=START.hour + 2), stop_port=False)
    return session.id


def _agreement(tenant: Tenant) -> int:
    from datetime import date

    from chargeshed.settlement.agreements import PartyInput, create_agreement

    return create_agreement(
        operator_id=tenant.operator_id,
        site_id=tenant.site.id,
        shed_id=None,
        valid_from=date(2026, 1, 1),
        valid_to=None,
        electricity_fen_per_kwh=0,
        fee_mode="shared",
        parties=[PartyInput(f"运营{tenant.site.id}", "operator", 10000, pays_electricity=True)],
    ).id


# How to find a tenant's object for a URL parameter. Extend this when a route takes a new kind of id.
OTHER_TENANT: dict[str, Callable[[Tenant], int]] = {
    "site_id": lambda t: t.site.id,
    "shed_id": lambda t: t.shed.id,
    "port_id": lambda t: t.ports[0].id,
    "operator_id": lambda t: t.operator_id,
    "building_id": _building,
    "alert_id": _alert,
    "user_id": lambda t: t.users[ROLE_PATROL].id,  # staff administration: the other site's patrol
    "case_id": _case,
    "session_id": _session,
    "agreement_id": _agreement,
}


def backoffice_rules(app) -> list[Rule]:
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(PREFIXES)]
    return sorted(rules, key=lambda r: (r.rule, sorted(r.methods)))


def methods(rule: Rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def fill(rule: Rule, ids: dict[str, int], unknown: set[str]) -> str:
    """The rule's path with its parameters filled from `ids` (or harmless stand-ins)."""
    values = {}
    for name, converter in rule._converters.items():
        if name in ids:
            values[name] = ids[name]
        elif isinstance(converter, AnyConverter):
            values[name] = sorted(converter.items)[0]
        elif isinstance(converter, IntegerConverter):
            values[name] = MISSING_ID
            unknown.add(f"{rule.endpoint}:{name}")
        else:
            values[name] = "2026-11"
            unknown.add(f"{rule.endpoint}:{name}")
    return rule.build(values, append_unknown=False)[1]


def fillings(rule: Rule, own: dict[str, int], other: dict[str, int]) -> list[dict[str, int]]:
    """Every mix of own and other-tenant ids for the rule's known parameters with at least one foreign id."""
    known = [name for name in rule.arguments if name in OTHER_TENANT]
    mixes = []
    for choice in itertools.product((False, True), repeat=len(known)):
        if any(choice):
            mixes.append({name: (other if foreign else own)[name] for name, foreign in zip(known, choice, strict=True)})
    return mixes


@pytest.fixture
def world(app, tenants):
    a, b, admin, resident = tenants
    b.site.name = "B-only site 3K"
    db.session.commit()
    own = {name: find(a) for name, find in OTHER_TENANT.items()}
    other = {name: find(b) for name, find in OTHER_TENANT.items()}
    return a, b, admin, resident, own, other


def client_for(app, user):
    client = app.test_client()
    client.set_cookie("lang", "en")
    if user is not None:
        response = request(client, "POST", "/login", {"login": user.login, "password": PASSWORD})
        assert response.status_code == 302
    return client


def request(client, method: str, url: str, data: dict | None = None):
    """One request in its own app context, as in production (the test's context would share `g`,
    where the signed-in user is cached, between the clients of different users)."""
    with client.application.app_context():
        return client.get(url) if method == "GET" else client.post(url, data=data or {})


def test_the_walk_finds_the_back_office(app):
    endpoints = {r.endpoint for r in backoffice_rules(app)}
    assert {"manage.occupancy_grid", "manage.port_stop", "manage.sessions_csv"} <= endpoints
    unprotected = [
        f"{r.rule} ({r.endpoint})"
        for r in backoffice_rules(app)
        if not hasattr(app.view_functions[r.endpoint], "staff_roles") and r.endpoint not in PUBLIC_ENDPOINTS
    ]
    assert unprotected == [], "back-office routes without staff_required (or list them in PUBLIC_ENDPOINTS)"


def test_signed_out_visitors_and_residents_get_nothing(app, world):
    _a, _b, _admin, resident, own, _other = world
    anonymous, resident_client = client_for(app, None), client_for(app, resident)
    unknown: set[str] = set()
    for rule in backoffice_rules(app):
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        url = fill(rule, own, unknown)
        for method in methods(rule):
            response = request(anonymous, method, url)
            assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)
            assert request(resident_client, method, url).status_code == 403, (method, url)


def test_every_role_and_tenant_combination(app, world):
    a, b, admin, _resident, own, other = world
    unknown: set[str] = set()
    checked = 0
    users = [(role, a.users[role]) for role in (ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF, ROLE_PATROL)]
    users.append((ROLE_ADMIN, admin))
    markers = (b.shed.name, b.site.name)
    for role, user in users:
        client = client_for(app, user)
        for rule in backoffice_rules(app):
            if rule.endpoint in PUBLIC_ENDPOINTS:
                continue
            allowed = app.view_functions[rule.endpoint].staff_roles
            for method in methods(rule):
                where = f"{role} {method} {rule.rule}"
                if role not in allowed:
                    response = request(client, method, fill(rule, other, unknown))
                    assert response.status_code == 403, where
                    checked += 1
                    continue
                if role == ROLE_ADMIN:  # sees every tenant; must never fail
                    response = request(client, method, fill(rule, other, unknown))
                    assert response.status_code < 500, where
                    checked += 1
                    continue
                for ids in fillings(rule, own, other):
                    response = request(client, method, fill(rule, {**own, **ids}, unknown))
                    assert response.status_code in (403, 404), f"{where} with {ids}: {response.status_code}"
                    checked += 1
                if method == "GET":
                    response = request(client, method, fill(rule, own, unknown))
                    assert response.status_code < 500, where
                    body = response.get_data()
                    assert not any(marker.encode() in body for marker in markers), f"{where} shows tenant B"
                    if rule.rule.startswith("/manage") and set(rule.arguments) <= set(OTHER_TENANT):
                        assert response.status_code in (200, 302), f"{where}: own objects refused"
                    checked += 1
    assert checked > 100
    if unknown:
        warnings.warn(
            "URL parameters filled with a missing id (add them to OTHER_TENANT): " + ", ".join(sorted(unknown)),
            stacklevel=1,
        )


def test_every_back_office_post_needs_a_csrf_token(app, world):
    _a, _b, admin, _resident, own, _other = world
    client = client_for(app, admin)
    app.config["WTF_CSRF_ENABLED"] = True
    unknown: set[str] = set()
    posts = [r for r in backoffice_rules(app) if "POST" in r.methods]
    assert len(posts) >= 8
    for rule in posts:
        assert request(client, "POST", fill(rule, own, unknown)).status_code == 400, rule.rule
