"""Static files as a phone receives them: hashed names, precompressed, cached for a year; htmx only where used."""

from __future__ import annotations

import re

from chargeshed import assets

ASSET = re.compile(r'(?:href|src)="(/static/[^"]+)"')


def test_pay_page_links_hashed_compressed_assets_cached_for_a_year_and_no_htmx(client, make_site):
    make_site()
    page = client.get("/p/T11001")
    html = page.get_data(as_text=True)
    links = ASSET.findall(html)
    assert links and all(assets.HASHED_NAME.search(link) for link in links), links
    assert "htmx" not in html and "hx-headers" not in html
    assert "Set-Cookie" not in page.headers  # an anonymous scan starts no session
    for link in links:
        plain = client.get(link, headers={"Accept-Encoding": "identity"})
        for encoding in ("br", "gzip"):
            packed = client.get(link, headers={"Accept-Encoding": encoding})
            assert packed.status_code == 200 and packed.headers["Content-Encoding"] == encoding
            assert len(packed.get_data()) < len(plain.get_data()) / 2
            assert "immutable" in packed.headers["Cache-Control"]
            assert int(re.search(r"max-age=(\d+)", packed.headers["Cache-Control"]).group(1)) >= 365 * 86400
            assert "Accept-Encoding" in packed.headers["Vary"]
            assert packed.headers["X-Content-Type-Options"] == "nosniff"


def test_a_page_using_htmx_loads_it_by_its_hashed_name(client, make_site, make_resident, login):
    from chargeshed.charging.sessions import start_session
    from chargeshed.extensions import db
    from chargeshed.sites.models import Port

    make_site()
    resident = login(make_resident(balance_fen=1000))
    session = start_session(resident.id, db.session.execute(db.select(Port).limit(1)).scalar_one())
    html = client.get(f"/s/{session.id}").get_data(as_text=True)
    script = re.search(r'<script src="(/static/vendor/htmx\.min\.[0-9a-f]{12}\.js)" defer>', html)
    assert script and "hx-headers" in html
    assert client.get(script.group(1), headers={"Accept-Encoding": "br"}).headers["Content-Encoding"] == "br"


def test_build_compresses_each_version_once_and_keeps_the_plain_name(tmp_path):
    source, target = tmp_path / "src", tmp_path / "out"
    (source / "css").mkdir(parents=True)
    (source / "css" / "a.css").write_text("body { color: black; }\n" * 200)
    first = assets.build(str(source), str(target))
    hashed = target / first["css/a.css"]
    assert hashed.exists() and (target / (first["css/a.css"] + ".br")).exists()
    stamp = (target / (first["css/a.css"] + ".gz")).stat().st_mtime_ns
    assert assets.build(str(source), str(target)) == first
    assert (target / (first["css/a.css"] + ".gz")).stat().st_mtime_ns == stamp  # not compressed again
    (source / "css" / "a.css").write_text("body { color: red; }\n" * 200)
    second = assets.build(str(source), str(target))
    assert second["css/a.css"] != first["css/a.css"] and hashed.exists()  # old version kept for old pages
    assert (target / "css" / "a.css").read_text().startswith("body { color: red")
