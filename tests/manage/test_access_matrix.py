"""Role and tenant matrix over EVERY registered back-office URL (/manage, /operator, /safety).

The routes are read from app.url_map, so routes added later are walked too. Expected roles come
from each view's staff_required(...) declaration. URL parameters are filled with real objects of both
tenants (sites, sheds, ports, buildings, alerts, staff, hazard cases with a photo, port incidents,
charges with a goodwill refund, agreements, reviewed and issued statements in every download format,
workflow steps): tenant A's staff of every role must get 403/404 for every mix that names one of
tenant B's objects, and no page of A's may show B's names. A parameter without a filler fails the
walk: add one to OTHER_TENANT below.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from datetime import date

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
# The settled month both tenants have a statement for (the fake clock stands in November 2026).
STATEMENT_MONTH = "2026-10"
# Marks written into tenant B's objects: none may appear on a page of tenant A's staff.
B_MARKS = ("B-only site 3K", "B-only shed 7Q", "B-only operator 5R", "B-only refund 2W", "B-only spot 8V", "B-fix 4T")
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
    """An open hazard case of the tenant's building, with a photo (so photo URLs are real too)."""
    from chargeshed.safety import uploads, workflow
    from tests.safety import samples

    label = "B-only spot 8V" if tenant.shed.name.startswith("B-only") else "lobby"
    photo = uploads.clean_photo(uploads.read_upload(io.BytesIO(samples.plain_jpeg())))
    case = workflow.file_report(workflow.NewReport("bike_indoors", _building(tenant), floor=1, spot=label), [photo])
    db.session.commit()
    return case.id


def _photo(tenant: Tenant) -> int:
    from chargeshed.safety.models import CasePhoto, HazardCase

    return db.session.execute(
        select(CasePhoto.id)
        .join(HazardCase, HazardCase.id == CasePhoto.case_id)
        .where(HazardCase.site_id == tenant.site.id)
        .order_by(CasePhoto.id)
        .limit(1)
    ).scalar_one()


def _incident(tenant: Tenant) -> int:
    """An open overload incident on the tenant's shed, with what fixed it once it is closed."""
    from chargeshed.safety.models import INCIDENT_OPEN, Incident

    incident = Incident(
        shed_id=tenant.shed.id,
        kind="overload",
        state=INCIDENT_OPEN,
        occurrences=1,
        opened_at=START,
        last_seen_at=START,
        resolution="B-fix 4T" if tenant.shed.name.startswith("B-only") else "",
    )
    db.session.add(incident)
    db.session.commit()
    return incident.id


def _session(tenant: Tenant) -> int:
    """An ended, paid charge of a resident of the tenant, on the tenant's port, refunded in part."""
    from chargeshed.accounts.models import ROLE_RESIDENT
    from chargeshed.accounts.services import create_user
    from chargeshed.charging import sessions as charging
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import Payment
    from chargeshed.payments.refunds import refund_session

    resident = create_user(f"1370000{tenant.site.id:04d}", PASSWORD, ROLE_RESIDENT, site_id=tenant.site.id)
    topup = fulfilment.create_topup(resident.id, 1000, [1000], "cny", "demo")
    topup.checkout_ref = f"demo_{topup.id}"
    db.session.commit()
    fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, 1000, "cny"))
    session = charging.start_session(resident.id, tenant.ports[1], now=START)
    charging.mark_charging(session, START)
    session.tier_watts = session.watts = 180
    session.energy_wh = 288
    db.session.commit()
    charging.end_session(session, charging.FULL, START.replace(hour=START.hour + 2), stop_port=False)
    reason = "B-only refund 2W" if tenant.shed.name.startswith("B-only") else "port cut out"
    refund_session(tenant.users[ROLE_OPERATOR_STAFF].id, session, 10, reason, now=START)
    db.session.commit()
    return session.id


def _agreement(tenant: Tenant) -> int:
    from chargeshed.settlement.agreements import PartyInput, create_agreement

    agreement = create_agreement(
        operator_id=tenant.operator_id,
        site_id=tenant.site.id,
        shed_id=None,
        valid_from=date(2026, 1, 1),
        valid_to=None,
        electricity_fen_per_kwh=0,
        fee_mode="shared",
        parties=[PartyInput(f"运营{tenant.site.id}", "operator", 10000, pays_electricity=True)],
    )
    db.session.commit()
    return agreement.id


def _statement(tenant: Tenant) -> str:
    """The key of the tenant's issued statement for STATEMENT_MONTH (the agreement is made first)."""
    from chargeshed.settlement import statements
    from chargeshed.settlement.periods import Period

    period = Period.month(STATEMENT_MONTH)
    if statements.find_statement(tenant.operator_id, tenant.site.id, period) is None:
        row = statements.review(tenant.operator_id, tenant.site.id, period, None)
        statements.issue(row, None)
        db.session.commit()
    return period.key


# How to find a tenant's object for a URL parameter. Extend this when a route takes a new kind of id.
# (Order matters: the agreement comes before the statement it settles.)
OTHER_TENANT: dict[str, Callable[[Tenant], int | str]] = {
    "site_id": lambda t: t.site.id,
    "shed_id": lambda t: t.shed.id,
    "port_id": lambda t: t.ports[0].id,
    "operator_id": lambda t: t.operator_id,
    "building_id": _building,
    "alert_id": _alert,
    "user_id": lambda t: t.users[ROLE_PATROL].id,  # staff administration: the other site's patrol
    "case_id": _case,
    "photo_id": _photo,
    "incident_id": _incident,
    "session_id": _session,
    "agreement_id": _agreement,
    "key": _statement,
}
# Parameters that are not ids: every value a route serves is walked.
VARIANTS: dict[str, tuple[str, ...]] = {
    "fmt": ("csv", "xlsx", "pdf"),
    "action": ("verify", "no_hazard", "note", "duplicate"),
}


def backoffice_rules(app) -> list[Rule]:
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(PREFIXES)]
    return sorted(rules, key=lambda r: (r.rule, sorted(r.methods)))


def methods(rule: Rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def fill(rule: Rule, ids: dict[str, int | str], unknown: set[str]) -> str:
    """The rule's path with its parameters filled from `ids` (AnyConverter: its first value)."""
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
            values[name] = "x"
            unknown.add(f"{rule.endpoint}:{name}")
    return rule.build(values, append_unknown=False)[1]


def urls(rule: Rule, ids: dict[str, int | str], unknown: set[str]) -> list[str]:
    """The rule's paths: one per value of its non-id parameters (VARIANTS; AnyConverter: each value)."""
    choices = []
    for name, converter in rule._converters.items():
        if isinstance(converter, AnyConverter):
            choices.append([(name, v) for v in sorted(converter.items)])
        elif name in VARIANTS:
            choices.append([(name, v) for v in VARIANTS[name]])
    return sorted({fill(rule, {**ids, **dict(combo)}, unknown) for combo in itertools.product(*choices)})


def fillings(rule: Rule, own: dict[str, int], other: dict[str, int]) -> list[dict[str, int]]:
    """Every mix of own and other-tenant ids for the rule's known parameters with at least one foreign id."""
    known = [name for name in rule.arguments if name in OTHER_TENANT and own[name] != other[name]]
    mixes = []
    for choice in itertools.product((False, True), repeat=len(known)):
        if any(choice):
            mixes.append({name: (other if foreign else own)[name] for name, foreign in zip(known, choice, strict=True)})
    return mixes


@pytest.fixture
def world(app, tenants, tmp_path):
    """Tenants A and B with real objects behind every id a back-office URL takes, B's marked B_MARKS."""
    from chargeshed.sites.models import Operator

    app.config["SAFETY_UPLOAD_DIR"] = str(tmp_path / "uploads")
    a, b, admin, resident = tenants
    b.site.name = "B-only site 3K"
    db.session.get(Operator, b.operator_id).name = "B-only operator 5R"
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
        response = client.get(url) if method == "GET" else client.post(url, data=data or {})
        response.get_data()  # a streamed export is read to its end and closed here, as a server does
        response.close()
        return response


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
        for url in urls(rule, own, unknown):
            for method in methods(rule):
                response = request(anonymous, method, url)
                assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)
                assert request(resident_client, method, url).status_code == 403, (method, url)
    assert unknown == set()


def test_every_role_and_tenant_combination(app, world):
    a, b, admin, _resident, own, other = world
    unknown: set[str] = set()
    checked = 0
    users = [(role, a.users[role]) for role in (ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF, ROLE_PATROL)]
    users.append((ROLE_ADMIN, admin))
    for role, user in users:
        client = client_for(app, user)
        for rule in backoffice_rules(app):
            if rule.endpoint in PUBLIC_ENDPOINTS:
                continue
            allowed = app.view_functions[rule.endpoint].staff_roles
            for method in methods(rule):
                where = f"{role} {method} {rule.rule}"
                if role not in allowed:
                    for url in urls(rule, other, unknown):
                        assert request(client, method, url).status_code == 403, f"{where}: {url}"
                        checked += 1
                    continue
                if role == ROLE_ADMIN:  # sees every tenant; must never fail
                    for url in urls(rule, other, unknown):
                        assert request(client, method, url).status_code < 500, f"{where}: {url}"
                        checked += 1
                    continue
                for ids in fillings(rule, own, other):
                    for url in urls(rule, {**own, **ids}, unknown):
                        response = request(client, method, url)
                        assert response.status_code in (403, 404), f"{where} with {ids}: {response.status_code}"
                        checked += 1
                if method == "GET":
                    for url in urls(rule, own, unknown):
                        response = request(client, method, url)
                        assert response.status_code < 500, f"{where}: {url}"
                        body = response.get_data()
                        shown = [mark for mark in B_MARKS if mark.encode() in body]
                        assert shown == [], f"{where} ({url}) shows tenant B: {shown}"
                        if rule.rule.startswith("/manage") and set(rule.arguments) <= set(OTHER_TENANT):
                            assert response.status_code in (200, 302), f"{where}: own objects refused"
                        checked += 1
    assert checked > 300
    assert unknown == set(), "URL parameters without a real object (add them to OTHER_TENANT): " + ", ".join(
        sorted(unknown)
    )


def test_tenant_b_objects_behind_the_urls_are_real(app, world):
    """The walk above names real objects of B: each id exists and belongs to B, not A."""
    from chargeshed.charging.models import ChargeSession
    from chargeshed.payments.models import SessionRefund
    from chargeshed.safety.models import CasePhoto, HazardCase, Incident
    from chargeshed.settlement.models import Statement

    a, b, _admin, _resident, own, other = world
    assert db.session.get(HazardCase, other["case_id"]).site_id == b.site.id
    assert db.session.get(CasePhoto, other["photo_id"]).case_id == other["case_id"]
    assert db.session.get(Incident, other["incident_id"]).shed_id == b.shed.id
    assert db.session.get(ChargeSession, other["session_id"]).shed_id == b.shed.id
    refund = db.session.execute(select(SessionRefund).where(SessionRefund.session_id == other["session_id"]))
    assert refund.scalar_one().reason == "B-only refund 2W"
    issued = db.session.execute(select(Statement).where(Statement.site_id == b.site.id)).scalar_one()
    assert (issued.operator_id, issued.status, issued.number is not None) == (b.operator_id, "issued", True)
    assert all(own[name] != other[name] for name in OTHER_TENANT if name != "key")
    # The marks are really shown where B's objects may be seen (so their absence above means something).
    admin_client = client_for(app, _admin)
    seen = {
        "/operator/refunds/": "B-only refund 2W",
        f"/safety/cases/{other['case_id']}": "B-only spot 8V",
        f"/operator/{b.operator_id}/{b.site.id}/statements/{other['key']}": "B-only site 3K",
        "/safety/incidents": "B-only shed 7Q",
        "/operator/": "B-only operator 5R",
    }
    for url, mark in seen.items():
        assert mark in request(admin_client, "GET", url).get_data(as_text=True), url


def test_every_back_office_post_needs_a_csrf_token(app, world):
    _a, _b, admin, _resident, own, _other = world
    client = client_for(app, admin)
    app.config["WTF_CSRF_ENABLED"] = True
    unknown: set[str] = set()
    posts = [r for r in backoffice_rules(app) if "POST" in r.methods]
    assert len(posts) >= 8
    for rule in posts:
        for url in urls(rule, own, unknown):
            assert request(client, "POST", url).status_code == 400, url


# --- The residents' own pages -------------------------------------------------------------------------

# Pages outside the back office that anyone may open with any id (public by design).
PUBLIC_ID_PAGES = {
    "resident.site_ports",  # a compound's free ports
    "passes.plans_public",  # a compound's pass plans
    "resident.watch_shed",  # "tell me when a port here is free": any shed a resident can charge at
    "report.new",  # the hazard report form of a compound or building
    "report.similar",  # its duplicate hint (tests/safety/test_report_scope.py)
    "report.track_photo",  # behind an unguessable tracking token (tests/safety/test_access.py)
}


def _resident_objects(tenant: Tenant, session_id: int) -> dict[str, int]:
    """The ids a resident's pages take, all of the resident who charged in `session_id`: the charge,
    a bike, a top-up, a cash-out, a monthly pass and its plan."""
    from chargeshed.accounts.services import add_bike
    from chargeshed.charging.models import ChargeSession
    from chargeshed.passes import service as passes
    from chargeshed.passes.models import PassPlan
    from chargeshed.payments.models import CashOut, TopUp

    user_id = db.session.get(ChargeSession, session_id).user_id
    owner = db.session.get(ChargeSession, session_id).user
    bike = add_bike(owner, f"P{tenant.site.id}RES01")
    plan = PassPlan(
        site_id=tenant.site.id,
        name=f"plan {tenant.site.id}",
        price_fen=300,
        days=30,
        charges_per_day=2,
        hours_per_charge=8,
        max_watts=400,
    )
    db.session.add(plan)
    db.session.flush()
    monthly = passes.buy(user_id, plan, START)
    cashout = CashOut(user_id=user_id, amount_fen=100, provider="demo", created_at=START)
    db.session.add(cashout)
    db.session.commit()
    topup = db.session.execute(select(TopUp.id).where(TopUp.user_id == user_id).limit(1)).scalar_one()
    return {
        "session_id": session_id,
        "bike_id": bike.id,
        "topup_id": topup,
        "cashout_id": cashout.id,
        "pass_id": monthly.id,
        "plan_id": plan.id,
    }


def test_tenant_a_people_get_nothing_of_tenant_b_residents(app, world):
    """Every page that takes the id of a resident's charge, bike, top-up, cash-out or pass answers
    403/404 to tenant A's staff of every role, to A's residents and to the platform admin, and
    changes nothing."""
    from chargeshed.accounts.models import Bike
    from chargeshed.charging.models import ChargeSession
    from chargeshed.passes.models import MonthlyPass

    a, b, admin, resident, own, other = world
    theirs = _resident_objects(b, other["session_id"])
    rules = [
        r
        for r in app.url_map.iter_rules()
        if not r.rule.startswith(PREFIXES)
        and r.endpoint not in PUBLIC_ID_PAGES
        and any(isinstance(c, IntegerConverter) for c in r._converters.values())
    ]
    assert {"resident.session_page", "resident.cashout_detail", "passes.refund", "resident.delete_bike"} <= {
        r.endpoint for r in rules
    }
    unknown: set[str] = set()
    state_before = db.session.get(ChargeSession, theirs["session_id"]).state
    people = [("resident", resident), ("admin", admin)] + [(role, user) for role, user in a.users.items()]
    checked = 0
    for who, user in people:
        client = client_for(app, user)
        for rule in rules:
            for method in methods(rule):
                for url in urls(rule, theirs, unknown):
                    response = request(client, method, url)
                    assert response.status_code in (403, 404), f"{who} {method} {url}: {response.status_code}"
                    checked += 1
    assert unknown == set(), "resident pages with an id this test cannot fill: " + ", ".join(sorted(unknown))
    assert checked > 50
    db.session.expire_all()
    assert db.session.get(Bike, theirs["bike_id"]) is not None
    assert db.session.get(MonthlyPass, theirs["pass_id"]).status != "refunded"
    assert db.session.get(ChargeSession, theirs["session_id"]).state == state_before
