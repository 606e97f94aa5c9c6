"""Who may see and do what: role (403) and compound (404), for every safety page."""

import pytest

from chargeshed.extensions import db
from chargeshed.safety import workflow
from chargeshed.safety.models import CasePhoto, HazardCase
from chargeshed.safety.uploads import clean_photo
from tests.safety import samples

READ = [
    "/safety/cases",
    "/safety/cases/{case}",
    "/safety/photos/{photo}",
    "/safety/photos/{photo}/thumb",
    "/safety/incidents",
    "/safety/dashboard",
    "/safety/dashboard/trend.svg",
    "/safety/summary.pdf",
    "/safety/notices",
    "/safety/buildings/{building}/qr.svg",
    "/safety/cases/new",
]
OBJECT_READ = [
    "/safety/cases/{case}",
    "/safety/photos/{photo}",
    "/safety/photos/{photo}/thumb",
    "/safety/buildings/{building}/qr.svg",
]


@pytest.fixture
def world(client, make_site, building, make_staff, en_context):
    """Two compounds; a case with a photo in the first."""
    site = make_site()
    other = make_site()
    b4 = building(site, 4)
    with en_context():
        clean = clean_photo(samples.plain_jpeg())
    case = workflow.file_report(workflow.NewReport("flying_wire", b4.id, floor=6, contact="13800009999"), [clean])
    db.session.commit()
    photo = db.session.execute(db.select(CasePhoto)).scalar_one()
    ids = {"case": case.id, "photo": photo.id, "building": b4.id}
    return site, other, ids


def _urls(paths, ids):
    return [p.format(**ids) for p in paths]


def test_anonymous_is_sent_to_sign_in(client, world):
    site, other, ids = world
    for url in _urls(READ, ids):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_residents_get_403(client, world, make_resident, login):
    site, other, ids = world
    login(make_resident())
    for url in _urls(READ, ids):
        assert client.get(url).status_code == 403, url
    assert client.post(f"/safety/cases/{ids['case']}/step/verify").status_code == 403


@pytest.mark.parametrize("role", ["patrol", "site_manager"])
def test_staff_of_another_compound_get_404_for_its_records(client, world, make_staff, login, role):
    site, other, ids = world
    login(make_staff(role, other))
    for url in _urls(OBJECT_READ, ids):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/safety/cases/{ids['case']}/step/verify").status_code == 404
    assert client.post(f"/safety/cases/{ids['case']}/bike", data={"plate": "ZZA12345"}).status_code == 404
    listing = client.get("/safety/cases").get_data(as_text=True)
    assert f'data-case="{ids["case"]}"' not in listing
    assert client.get(f"/safety/dashboard?site={site.id}").status_code == 404
    assert client.get(f"/safety/summary.pdf?site={site.id}").status_code == 404


@pytest.mark.parametrize("role", ["patrol", "site_manager", "admin"])
def test_site_staff_and_admin_read_and_act(client, world, make_staff, login, role):
    site, other, ids = world
    login(make_staff(role, site))
    for url in _urls(READ, ids):
        assert client.get(url).status_code == 200, url
    page = client.get(f"/safety/cases/{ids['case']}").get_data(as_text=True)
    assert "13800009999" in page and 'data-testid="step-verify"' in page
    assert client.post(f"/safety/cases/{ids['case']}/step/verify").status_code == 303


def test_operator_staff_read_without_personal_data_and_cannot_act(client, world, make_staff, login):
    site, other, ids = world
    operator_id = site.sheds[0].operator_id
    login(make_staff("operator_staff", operator_id=operator_id))
    for url in _urls([u for u in READ if u != "/safety/cases/new"], ids):
        assert client.get(url).status_code == 200, url
    page = client.get(f"/safety/cases/{ids['case']}").get_data(as_text=True)
    assert "13800009999" not in page and "step-verify" not in page
    assert client.get("/safety/cases/new").status_code == 403
    assert client.post(f"/safety/cases/{ids['case']}/step/verify").status_code == 403
    assert client.post(f"/safety/cases/{ids['case']}/bike", data={"plate": "ZZA12345"}).status_code == 403


def test_operator_staff_of_another_operator_see_nothing(client, world, make_staff, login):
    site, other, ids = world
    login(make_staff("operator_staff", operator_id=other.sheds[0].operator_id))
    assert client.get(f"/safety/cases/{ids['case']}").status_code == 404
    assert client.get(f"/safety/photos/{ids['photo']}").status_code == 404


def test_tracking_link_serves_only_its_own_case_photos(client, world, building, en_context):
    site, other, ids = world
    first = db.session.get(HazardCase, ids["case"])
    second = workflow.file_report(workflow.NewReport("other", building(site, 5).id, floor=1, description="x"))
    db.session.commit()
    assert client.get(f"/report/t/{first.tracking_token}/photos/{ids['photo']}/thumb").status_code == 200
    assert client.get(f"/report/t/{second.tracking_token}/photos/{ids['photo']}").status_code == 404


def test_after_photos_are_not_on_the_tracking_link(client, world, make_staff, en_context):
    site, other, ids = world
    case = db.session.get(HazardCase, ids["case"])
    patrol = make_staff("patrol", site)
    with en_context():
        workflow.act(case, "verify", patrol.id)
        workflow.act(case, "rectify", patrol.id, photo=clean_photo(samples.plain_jpeg()))
    db.session.commit()
    after = db.session.execute(db.select(CasePhoto).where(CasePhoto.kind == "after")).scalar_one()
    assert client.get(f"/report/t/{case.tracking_token}/photos/{after.id}").status_code == 404


def test_csrf_is_required_on_posts(app, world, make_staff):
    site, other, ids = world
    app.config["WTF_CSRF_ENABLED"] = True
    anonymous = app.test_client()
    anonymous.set_cookie("lang", "en")
    response = anonymous.post(
        "/report", data={"hazard_type": "other", "building": str(ids["building"]), "floor": "2", "description": "x"}
    )
    assert response.status_code == 400 and "The page had expired" in response.get_data(as_text=True)
    assert db.session.execute(db.select(db.func.count(HazardCase.id))).scalar_one() == 1
    client = app.test_client()
    staff = make_staff("patrol", site)
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    client.post("/login", data={"login": staff.login, "password": "secret-pass", "csrf_token": token})
    assert client.post(f"/safety/cases/{ids['case']}/step/verify").status_code == 400
    assert db.session.get(HazardCase, ids["case"]).state == "reported"
