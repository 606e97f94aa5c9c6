"""Fixtures for the back office: staff users and two tenants that must not see each other."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from chargeshed.accounts.models import (
    ROLE_ADMIN,
    ROLE_OPERATOR_STAFF,
    ROLE_PATROL,
    ROLE_SITE_MANAGER,
    User,
)
from chargeshed.extensions import db
from chargeshed.sites.models import Port, Shed, Site

PASSWORD = "secret-pass"


@pytest.fixture(autouse=True)
def english(client):
    """These tests read the English text (the msgids); the default language is Chinese."""
    client.set_cookie("lang", "en")


@pytest.fixture
def make_staff(app):
    """Create a staff user: make_staff(role, site=None, operator_id=None)."""
    from chargeshed.accounts.services import create_user

    counter = {"n": 0}

    def factory(role: str, site: Site | None = None, operator_id: int | None = None, name: str = "") -> User:
        counter["n"] += 1
        login = f"{role}{counter['n']}"
        user = create_user(
            login,
            PASSWORD,
            role,
            display_name=name or login.replace("_", " "),
            site_id=site.id if site else None,
            operator_id=operator_id,
        )
        db.session.commit()
        return user

    return factory


@dataclass
class Tenant:
    """One compound with its own operator, a shed and staff of every role."""

    site: Site
    shed: Shed
    ports: list[Port]
    operator_id: int
    users: dict[str, User]


@pytest.fixture
def tenants(app, make_site, make_staff, make_resident):
    """Two compounds, A and B, each with its own operator, shed, ports and staff."""

    def build(label: str) -> Tenant:
        site = make_site(name=f"小区{label}", sheds=(3,))
        shed = db.session.execute(select(Shed).where(Shed.site_id == site.id)).scalar_one()
        ports = list(db.session.execute(select(Port).where(Port.shed_id == shed.id).order_by(Port.number)).scalars())
        users = {
            ROLE_SITE_MANAGER: make_staff(ROLE_SITE_MANAGER, site=site),
            ROLE_OPERATOR_STAFF: make_staff(ROLE_OPERATOR_STAFF, site=site, operator_id=shed.operator_id),
            ROLE_PATROL: make_staff(ROLE_PATROL, site=site),
        }
        return Tenant(site, shed, ports, shed.operator_id, users)

    a, b = build("A"), build("B")
    b.shed.name = "B-only shed 7Q"
    db.session.commit()
    admin = make_staff(ROLE_ADMIN)
    resident = make_resident(balance_fen=1000)
    return a, b, admin, resident


@pytest.fixture
def sign_in(client):
    """Sign a user in (signing out whoever was signed in before)."""

    def do(user: User):
        client.post("/logout")
        response = client.post("/login", data={"login": user.login, "password": PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return do
