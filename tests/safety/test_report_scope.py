"""The public report form knows only the compound the reporter came from, with a real second tenant:
it never lists another compound's name or buildings, refuses their ids, and its duplicate hint answers
only for the compound's own buildings."""

from __future__ import annotations

import io
import re

from sqlalchemy import func, select

from chargeshed.extensions import db
from chargeshed.safety.models import HazardCase
from chargeshed.sites.models import Building


def _client(app, user=None):
    client = app.test_client()
    client.set_cookie("lang", "en")
    if user is not None:
        assert client.post("/login", data={"login": user.login, "password": "secret-pass"}).status_code == 302
    return client


def _building_options(page: str) -> set[int]:
    return {int(v) for v in re.findall(r'<option[^>]*value="(\d+)"', page)}


def _buildings(site) -> set[int]:
    return set(db.session.execute(select(Building.id).where(Building.site_id == site.id)).scalars())


def _cases() -> int:
    return db.session.execute(select(func.count(HazardCase.id))).scalar_one()


def test_a_compounds_form_lists_only_its_own_buildings(app, two_compounds):
    a, b, _admin = two_compounds
    for url in (f"/report/s/{a.site.id}", f"/report/b/{a.building.id}"):
        page = _client(app).get(url)
        text = page.get_data(as_text=True)
        assert page.status_code == 200, url
        assert _building_options(text) == _buildings(a.site), url
        assert a.site.name in text and b.site.name not in text, url


def test_plain_report_asks_which_compound_and_never_lists_them(app, two_compounds):
    a, b, _admin = two_compounds
    client = _client(app)
    page = client.get("/report")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-testid="report-where"' in text
    assert a.site.name not in text and b.site.name not in text and "<option" not in text
    found = client.get(f"/report?code={b.ports[0].code.lower()}")
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/report/s/{b.site.id}")
    unknown = client.get("/report?code=ZZZZZZ")
    assert unknown.status_code == 404 and "No port has the code ZZZZZZ" in unknown.get_data(as_text=True)
    short = client.get("/report?code=AB")
    assert short.status_code == 404 and "A port code has 6 letters and digits" in short.get_data(as_text=True)
    sent = client.post("/report", data={"hazard_type": "flying_wire", "building": str(a.building.id), "floor": "2"})
    assert sent.status_code == 400 and _cases() == 2  # the two fixture cases only


def test_a_signed_in_resident_reports_in_their_own_compound(app, two_compounds):
    a, b, _admin = two_compounds
    page = _client(app, b.residents[0]).get("/report").get_data(as_text=True)
    assert _building_options(page) == _buildings(b.site)
    assert b.site.name in page and a.site.name not in page


def test_another_compounds_building_is_refused_on_the_form(app, two_compounds):
    a, b, _admin = two_compounds
    data = {"hazard_type": "flying_wire", "building": str(b.building.id), "floor": "3", "spot": "stairs"}
    before = _cases()
    for url in (f"/report/s/{a.site.id}", f"/report/b/{a.building.id}"):
        response = _client(app).post(url, data=data)
        assert response.status_code == 400, url
        assert "Choose a building from the list." in response.get_data(as_text=True)
    assert _cases() == before


def test_ids_of_nothing_are_404_never_500(app, two_compounds):
    client = _client(app)
    for url in ("/report/s/987654", "/report/b/987654", "/report/s/99999999999", "/report/s/987654/similar"):
        assert client.get(url).status_code == 404, url
        assert client.post(url, data={"hazard_type": "flying_wire"}).status_code in (404, 405), url


def test_the_duplicate_hint_answers_only_for_the_compounds_own_buildings(app, two_compounds):
    a, b, _admin = two_compounds  # each has an open case in building 4, unit 1, floor 2
    client = _client(app)
    hx = {"HX-Request": "true"}
    foreign = client.get(f"/report/s/{a.site.id}/similar?building={b.building.id}&unit=1&floor=2", headers=hx)
    assert foreign.status_code == 404 and "already open" not in foreign.get_data(as_text=True)
    own = client.get(f"/report/s/{a.site.id}/similar?building={a.building.id}&unit=1&floor=2", headers=hx)
    text = own.get_data(as_text=True)
    assert own.status_code == 200 and text.count('data-testid="similar-hint"') == 1  # A's case, not B's
    assert "Building 4 Unit 1 2F" in text and "lobby" not in text
    assert client.get(f"/report/s/{b.site.id}/similar?building=abc", headers=hx).status_code == 200


def test_the_form_without_javascript_shows_the_hint_when_sent_back(app, two_compounds):
    a, _b, _admin = two_compounds
    response = _client(app).post(
        f"/report/s/{a.site.id}", data={"hazard_type": "", "building": str(a.building.id), "unit": "1", "floor": "2"}
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 400 and "Choose what kind of hazard it is." in text
    assert "A case at Building 4 Unit 1 2F is already open" in text


def test_pages_of_a_compound_link_to_its_own_report_form(app, two_compounds):
    _a, b, _admin = two_compounds
    client = _client(app)
    link = f'href="/report/s/{b.site.id}" data-testid="report-link"'
    for url in (f"/p/{b.ports[0].code}", f"/site/{b.site.id}", f"/report/t/{b.case.tracking_token}"):
        assert link in client.get(url).get_data(as_text=True), url


def test_a_request_too_large_gets_its_compounds_form_back(app, two_compounds):
    a, b, _admin = two_compounds
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    data = {"hazard_type": "flying_wire", "building": str(a.building.id), "floor": "2"}
    data["photos"] = [(io.BytesIO(b"\xff" * (2 * 1024 * 1024)), "big.jpg")]
    response = _client(app).post(f"/report/b/{a.building.id}", data=data, content_type="multipart/form-data")
    text = response.get_data(as_text=True)
    assert response.status_code == 413 and "too large together" in text
    assert _building_options(text) == _buildings(a.site) and b.site.name not in text
