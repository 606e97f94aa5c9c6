"""Finding a port: the public per-site page with live counts, and typing a damaged sticker's code."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.sites.models import PORT_MAINTENANCE, Port


def _port(code: str) -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


def test_the_site_page_counts_free_busy_and_out_of_service_ports_per_shed_for_anyone(
    app, client, make_site, make_resident
):
    site = make_site(sheds=(4, 3))
    charging.start_session(make_resident(balance_fen=1000).id, _port("T11001"))
    _port("T11002").status = PORT_MAINTENANCE
    db.session.commit()

    page = client.get(f"/site/{site.id}").get_data(as_text=True)
    first, second = page.split('data-shed="1号车棚"')[1].split('data-shed="2号车棚"')
    assert 'data-testid="free-count">2<' in first and 'data-testid="busy-count">1<' in first
    assert 'data-testid="out-count">1<' in first and "空闲：3、4 号" in first
    assert 'data-testid="free-count">3<' in second and 'data-testid="busy-count">0<' in second
    assert 'hx-trigger="every 10s"' in page


def test_the_site_page_stops_polling_after_about_ten_minutes(app, client, make_site):
    site = make_site()
    live = client.get(f"/site/{site.id}?round=3", headers={"HX-Request": "true"})
    assert live.status_code == 200 and "round=4" in live.get_data(as_text=True)
    done = client.get(f"/site/{site.id}?round=60", headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling
    body = done.get_data(as_text=True)
    assert "hx-trigger" not in body and "已停止自动更新" in body
    assert client.get("/site/999").status_code == 404


def test_every_port_page_and_the_busy_message_link_to_free_ports(app, client, make_site, make_resident, login):
    site = make_site()
    charging.start_session(make_resident(balance_fen=1000).id, _port("T11001"))
    assert f'href="/site/{site.id}"' in client.get("/p/T11002").get_data(as_text=True)

    login(make_resident(balance_fen=1000))
    busy = client.get("/p/T11001").get_data(as_text=True)
    assert "该插座正在使用" in busy and 'data-testid="find-free"' in busy
    assert 'href="/p/T11002"' in busy  # the nearest free port of the same shed


def test_a_typed_code_opens_the_port_in_any_case_and_with_spaces(app, client, make_site):
    make_site()
    for typed in ("t11002", " T11 002 ", "t1-1002"):
        response = client.get("/go", query_string={"code": typed})
        assert response.status_code == 302 and response.headers["Location"].endswith("/p/T11002"), typed
    wrong = client.get("/go", query_string={"code": "zz99zz"})
    assert wrong.status_code == 404 and "没有编号为 ZZ99ZZ 的插座" in wrong.get_data(as_text=True)
    short = client.get("/go", query_string={"code": "ab1"})
    assert short.status_code == 404 and "共 6 位" in short.get_data(as_text=True)
    assert 'name="code"' in client.get("/go").get_data(as_text=True)


def test_the_home_page_and_the_404_page_offer_the_code_box(app, client, make_site):
    make_site()
    assert 'data-testid="code-input"' in client.get("/").get_data(as_text=True)
    missing = client.get("/p/NOPE99")
    assert missing.status_code == 404 and 'data-testid="code-input"' in missing.get_data(as_text=True)
