"""The resident's loop through the test client: scan, sign up, top up, charge, stop, pay exactly."""

import re

from sqlalchemy import select

from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.ports.sim import Bike


def _bike(watts=250):
    return Bike("lithium", cc_watts=watts, cc_minutes=600, taper_minutes=30)


def test_first_time_resident_scans_signs_up_tops_up_and_the_charge_starts_without_a_second_scan(
    app, client, make_site, driver, clock, tick
):
    make_site()
    page = client.get("/p/T11001")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "1号车棚" in text and 'data-state="free"' in text

    signup = client.post(
        "/register?next=/p/T11001",
        data={
            "phone": "138 0000 1234",
            "password": "long-enough",
            "confirm": "long-enough",
            "building": "4",
            "unit": "2",
        },
    )
    assert signup.status_code == 302 and signup.headers["Location"].endswith("/p/T11001")

    page = client.get("/p/T11001").get_data(as_text=True)
    assert "¥0.00" in page and 'data-testid="topup-start"' in page

    pay = client.post("/p/T11001/topup", data={"amount": "1000"})
    assert pay.status_code == 303
    demo_page = client.get(pay.headers["Location"]).get_data(as_text=True)
    assert "¥10.00" in demo_page
    paid = client.post(pay.headers["Location"])
    session_url = paid.headers["Location"]
    assert re.search(r"/s/\d+$", session_url)

    session = db.session.execute(select(ChargeSession)).scalar_one()
    assert session.state == "pending" and wallet_balance(session.user_id) == 1000 - 300

    driver.plug("T11001", bike=_bike(250))
    tick()
    clock.advance(minutes=90)
    tick()
    live = client.get(session_url + "/live", headers={"HX-Request": "true"})
    assert live.status_code == 200
    body = live.get_data(as_text=True)
    assert 'data-state="charging"' in body and "250 W" in body and 'data-fen="100"' in body  # 2 started h at ¥0.50

    stopped = client.post(session_url + "/stop")
    assert stopped.status_code == 302
    db.session.refresh(session)
    assert (session.state, session.end_reason, session.cost_fen) == ("ended", "user_stop", 100)
    assert wallet_balance(session.user_id) == 1000 - 100
    final = client.get(session_url + "/live", headers={"HX-Request": "true"})
    assert final.status_code == 286  # polling stops itself
    assert 'data-fen="100"' in final.get_data(as_text=True)
    tick()
    assert driver.read("T11001").relay_on is False
    assert check_ledger() == []


def test_double_tap_start_makes_one_session(app, client, make_site, make_resident, login):
    make_site()
    me = login(make_resident(balance_fen=2000))
    first = client.post("/p/T11001/start")
    second = client.post("/p/T11001/start")
    assert first.headers["Location"] == second.headers["Location"]
    assert db.session.query(ChargeSession).count() == 1
    assert wallet_balance(me.id) == 2000 - 300


def test_busy_port_is_refused_without_touching_the_wallet(app, client, make_site, make_resident, login):
    make_site()
    other = make_resident(balance_fen=1000)
    from chargeshed.charging.sessions import start_session
    from chargeshed.sites.models import Port

    start_session(other.id, db.session.execute(select(Port).where(Port.code == "T11001")).scalar_one())
    me = login(make_resident(balance_fen=1000))
    page = client.get("/p/T11001").get_data(as_text=True)
    assert 'data-state="charging"' in page and ("in use" in page.lower() or "使用" in page)
    response = client.post("/p/T11001/start", follow_redirects=True)
    assert response.status_code == 200
    assert wallet_balance(me.id) == 1000


def test_wallet_too_low_offers_top_up_instead_of_start(app, client, make_site, make_resident, login):
    make_site()
    login(make_resident(balance_fen=0))
    page = client.get("/p/T11001").get_data(as_text=True)
    assert 'data-testid="topup-start"' in page and 'data-testid="start"' not in page
    refused = client.post("/p/T11001/start", follow_redirects=True)
    assert refused.status_code == 200
    assert db.session.query(ChargeSession).count() == 0


def test_unknown_port_code_is_a_friendly_404(client):
    response = client.get("/p/NOPE99")
    assert response.status_code == 404
    assert "<html" in response.get_data(as_text=True)


def test_maintenance_port_cannot_start(app, client, make_site, make_resident, login):
    from chargeshed.sites.models import Port

    make_site()
    port = db.session.execute(select(Port).where(Port.code == "T11002")).scalar_one()
    port.status = "maintenance"
    db.session.commit()
    login(make_resident(balance_fen=1000))
    assert 'data-state="maintenance"' in client.get("/p/T11002").get_data(as_text=True)
    client.post("/p/T11002/start")
    assert db.session.query(ChargeSession).count() == 0


def test_another_residents_session_is_not_found(app, client, make_site, make_resident, login):
    from chargeshed.charging.sessions import start_session
    from chargeshed.sites.models import Port

    make_site()
    owner = make_resident(balance_fen=1000)
    session = start_session(owner.id, db.session.execute(select(Port).where(Port.code == "T11001")).scalar_one())
    login(make_resident(balance_fen=1000))
    assert client.get(f"/s/{session.id}").status_code == 404
    assert client.post(f"/s/{session.id}/stop").status_code == 404


def test_qr_codes_encode_the_public_url_never_the_host_header(app, client, make_site):
    import io

    import zxingcpp
    from PIL import Image

    make_site()
    png = client.get("/p/T11001/qr.png", headers={"Host": "evil.example"})
    assert png.status_code == 200 and png.mimetype == "image/png"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.data)))
    assert [d.text for d in decoded] == ["https://charge.example.cn/p/T11001"]
    svg = client.get("/p/T11001/qr.svg")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data


def test_bad_form_input_gets_messages_not_errors(app, client, make_site):
    make_site()
    response = client.post("/register", data={"phone": "12345", "password": "x", "confirm": "y"})
    assert response.status_code == 200
    assert response.get_data(as_text=True).count('class="error"') >= 2
    assert client.post("/wallet/topup", data={"amount": "abc"}).status_code == 302  # to login


def test_topup_amount_must_be_one_offered(app, client, make_resident, login):
    login(make_resident())
    response = client.post("/wallet/topup", data={"amount": "1"}, follow_redirects=True)
    assert response.status_code == 200
    from chargeshed.payments.models import TopUp

    assert db.session.query(TopUp).count() == 0


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok", "db": "ok"}


def test_registering_a_taken_phone_number_says_so_and_keeps_the_account(app, client, make_resident):
    from chargeshed.accounts.models import User

    existing = make_resident(phone="13800009999")
    response = client.post(
        "/register", data={"phone": "13800009999", "password": "long-enough", "confirm": "long-enough"}
    )
    assert response.status_code == 200 and 'class="error"' in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.query(User).count() == 1
    assert db.session.get(User, existing.id).check_password("secret-pass")
