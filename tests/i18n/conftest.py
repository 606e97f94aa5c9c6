"""Compiled catalogues for the page tests (make does this too; plain pytest runs need it)."""

import pytest

from tests.i18n.catalogues import compile_catalogues


@pytest.fixture(autouse=True, scope="session")
def compiled_catalogues():
    compile_catalogues()
