"""flask statement OPERATOR_ID SITE_ID YYYY-MM --format csv|xlsx|pdf -o FILE."""

from __future__ import annotations

import csv
import io

from openpyxl import load_workbook
from pypdf import PdfReader

from chargeshed.extensions import db
from chargeshed.settlement import statements
from chargeshed.settlement.periods import Period
from tests.settlement.conftest import local


def _october(site, make_resident, ports, charge, agree, at):
    at(2026, 9, 1)
    agree(site)
    user = make_resident(balance_fen=5000)
    charge(user, ports(site)[1][0], local(2026, 10, 8, 20), minutes=200, watts=300)
    at(2026, 11, 3)


def test_writes_a_draft_then_the_issued_statement(
    app, runner, tmp_path, make_site, make_resident, ports, charge, agree, at
):
    site = make_site()
    _october(site, make_resident, ports, charge, agree, at)
    out = tmp_path / "october.csv"
    result = runner.invoke(
        args=["statement", "1", str(site.id), "2026-10", "--format", "csv", "-o", str(out), "--lang", "en"]
    )
    assert result.exit_code == 0, result.output
    assert "draft statement (not issued)" in result.output
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
    assert ["Gross revenue", "2.00"] in rows and ["Statement No.", "– (not issued)"] in rows

    statements.issue(statements.review(1, site.id, Period.month("2026-10"), None), None)
    db.session.commit()
    pdf = tmp_path / "october.pdf"
    result = runner.invoke(args=["statement", "1", str(site.id), "2026-10", "--format", "pdf", "-o", str(pdf)])
    assert result.exit_code == 0 and "statement ST-1-1-0001" in result.output
    text = PdfReader(str(pdf)).pages[0].extract_text()
    assert "ST-1-1-0001" in text and "结算单" in text  # the site's language by default: Chinese
    xlsx = tmp_path / "october.xlsx"
    assert (
        runner.invoke(args=["statement", "1", str(site.id), "2026-10", "--format", "xlsx", "-o", str(xlsx)]).exit_code
        == 0
    )
    assert load_workbook(xlsx).worksheets[0]["B2"].value == "ST-1-1-0001"


def test_refuses_open_months_bad_months_and_strangers(app, runner, tmp_path, make_site, at):
    site = make_site()
    make_site()  # operator 2 runs no shed at site 1
    at(2026, 11, 20)
    out = tmp_path / "x.csv"
    cases = [
        (["1", str(site.id), "2026-11"], "2026-11 is not finished yet"),
        (["1", str(site.id), "2026-13"], "YYYY-MM"),
        (["2", str(site.id), "2026-10"], "operator 2 runs no shed at site 1"),
    ]
    for args, words in cases:
        result = runner.invoke(args=["statement", *args, "--format", "csv", "-o", str(out), "--lang", "en"])
        assert result.exit_code != 0 and words in result.output, result.output
    assert not out.exists()
    unknown = runner.invoke(args=["statement", "1", "1", "2026-10", "--format", "doc", "-o", str(out)])
    assert unknown.exit_code == 2
