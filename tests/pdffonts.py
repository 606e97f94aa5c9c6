"""Reading a PDF's fonts with poppler's `pdffonts`, as a print shop's preflight would."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from tests.conftest import skip_or_fail


def pdf_font_table(pdf: bytes) -> list[dict[str, str]]:
    """One row per font: name, type, emb (yes/no), sub (yes/no)."""
    tool = shutil.which("pdffonts")
    if tool is None:
        skip_or_fail("pdffonts (poppler-utils) is not installed")
    with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
        handle.write(pdf)
        handle.flush()
        lines = subprocess.run([tool, handle.name], check=True, capture_output=True, text=True).stdout.splitlines()
    rows = []
    for line in lines[2:]:  # a heading and a rule first
        parts = line.split()
        # name type [type…] encoding emb sub uni object-id generation
        rows.append({"name": parts[0], "emb": parts[-5], "sub": parts[-4]})
    return rows


def assert_every_font_embedded(pdf: bytes) -> list[dict[str, str]]:
    """Every font in the PDF is embedded (as a subset); returns the table for further checks."""
    table = pdf_font_table(pdf)
    assert table, "no fonts at all"
    assert [row for row in table if row["emb"] != "yes"] == [], table
    return table
