"""Plate lookups stay inside the case's compound: a patrol of A learns nothing about B's residents."""

from __future__ import annotations

from chargeshed.accounts.models import ROLE_PATROL
from chargeshed.extensions import db
from chargeshed.safety import workflow
from chargeshed.safety.models import HazardCase


def _client(app, user):
    client = app.test_client()
    client.set_cookie("lang", "en")
    assert client.post("/login", data={"login": user.login, "password": "secret-pass"}).status_code == 302
    return client


def test_a_plate_of_another_compound_is_unknown_to_a_patrol(app, two_compounds):
    a, b, _admin = two_compounds
    case = workflow.file_report(
        workflow.NewReport("bike_indoors", a.building.id, floor=1, spot="lobby", plate="BPLATE02")
    )
    db.session.commit()
    client = _client(app, a.staff[ROLE_PATROL])
    page = client.get(f"/safety/cases/{case.id}").get_data(as_text=True)
    assert "is registered" not in page  # no suggestion from B's register
    other = client.post(f"/safety/cases/{case.id}/bike", data={"plate": "BPLATE02"})
    unknown = client.post(f"/safety/cases/{case.id}/bike", data={"plate": "NOPE1234"})
    assert other.status_code == unknown.status_code == 400
    assert "No registered bike has the plate BPLATE02" in other.get_data(as_text=True)
    assert workflow.find_bike("BPLATE02", a.site.id) is None
    own = client.post(f"/safety/cases/{case.id}/bike", data={"plate": "APLATE02"})
    assert own.status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    assert db.session.get(HazardCase, case.id).bike.plate == "APLATE02"


def test_a_case_linked_across_compounds_shows_no_owner_record(app, two_compounds):
    a, b, _admin = two_compounds
    case = a.case
    case.bike_id = b.residents[0].bikes[0].id  # as an old cross-tenant link would have left it
    db.session.commit()
    assert workflow.owner_record(case) is None
    page = _client(app, a.staff[ROLE_PATROL]).get(f"/safety/cases/{case.id}").get_data(as_text=True)
    assert b.residents[0].login not in page and "BPLATE01" not in page


def test_the_owner_record_counts_only_the_compounds_own_cases_and_charges(app, two_compounds):
    a, _b, _admin = two_compounds
    record = workflow.owner_record(a.case)
    assert record is not None and record.bike.plate == "APLATE01"
    assert [c.id for c in record.cases_for_bike] == [a.case.id] and record.cases_for_owner == 1
    assert record.shed_charges == 1
