"""A site manager chooses a new shed's operator and tariff among those already serving the site."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.extensions import db
from chargeshed.sites.models import Operator, Shed


def _client(app, user):
    client = app.test_client()
    client.set_cookie("lang", "en")
    assert client.post("/login", data={"login": user.login, "password": "secret-pass"}).status_code == 302
    return client


def _form(operator_id: int, tariff_id: int, name: str = "新车棚") -> dict:
    return {
        "name": name,
        "location": "",
        "operator_id": str(operator_id),
        "tariff_id": str(tariff_id),
        "numbers": "1-2",
    }


def _new_shed(site_id: int, name: str) -> tuple[int, int]:
    """(operator id, number of ports) of the stored shed of that name at the site."""
    shed = db.session.execute(select(Shed).where(Shed.site_id == site_id, Shed.name == name)).scalar_one()
    return shed.operator_id, len(shed.ports)


def test_a_site_manager_cannot_bring_another_operator_into_the_site(app, two_compounds):
    a, b, _admin = two_compounds
    b_operator = db.session.get(Operator, b.operator_id)
    client = _client(app, a.staff[ROLE_SITE_MANAGER])
    page = client.get(f"/manage/sites/{a.site.id}/sheds/new").get_data(as_text=True)
    assert b_operator.name not in page
    refused = client.post(f"/manage/sites/{a.site.id}/sheds/new", data=_form(b.operator_id, b.sheds[0].tariff_id))
    assert refused.status_code == 400
    assert (
        db.session.execute(select(Shed).where(Shed.operator_id == b.operator_id, Shed.site_id == a.site.id)).first()
        is None
    )
    created = client.post(f"/manage/sites/{a.site.id}/sheds/new", data=_form(a.operator_id, a.sheds[0].tariff_id))
    assert created.status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    assert _new_shed(a.site.id, "新车棚") == (a.operator_id, 2)


def test_the_platform_admin_may_choose_any_operator(app, two_compounds):
    a, b, admin = two_compounds
    client = _client(app, admin)
    assert db.session.get(Operator, b.operator_id).name in client.get(f"/manage/sites/{a.site.id}/sheds/new").get_data(
        as_text=True
    )
    created = client.post(
        f"/manage/sites/{a.site.id}/sheds/new", data=_form(b.operator_id, b.sheds[0].tariff_id, "B运营车棚")
    )
    assert created.status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    assert _new_shed(a.site.id, "B运营车棚") == (b.operator_id, 2)
