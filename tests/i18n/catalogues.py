"""The translation catalogues as tests see them: paths, parsing, and compiling .po to .mo."""

from __future__ import annotations

import os
import re

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSLATIONS = os.path.join(ROOT, "chargeshed", "translations")
# Babel normalises zh_CN to zh_Hans_CN and Flask-Babel looks the catalogue up under that name.
ZH = os.path.join(TRANSLATIONS, "zh_Hans_CN", "LC_MESSAGES", "messages.po")

# Every %-conversion Python (and Jinja's newstyle gettext) applies: %(name)s, %s, %d, %%; a lone % is
# matched too, because formatting fails on it.
CONVERSION = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z%]|%")


def read_catalogue(path: str = ZH):
    """The parsed .po file."""
    with open(path, "rb") as handle:
        return read_po(handle)


def placeholders(text: str) -> tuple[list[str], list[str]]:
    """(named placeholders, each once; other conversions, each time), sorted: (['%(amount)s'], ['%%'])."""
    found = CONVERSION.findall(text)
    named = sorted({f for f in found if f.startswith("%(")})
    return named, sorted(f for f in found if not f.startswith("%("))


def compile_catalogues() -> None:
    """Write each messages.mo from its .po when missing or older (what `make translations` does)."""
    for lang in os.listdir(TRANSLATIONS):
        po = os.path.join(TRANSLATIONS, lang, "LC_MESSAGES", "messages.po")
        mo = po[:-2] + "mo"
        if not os.path.exists(po):
            continue
        if os.path.exists(mo) and os.path.getmtime(mo) >= os.path.getmtime(po):
            continue
        catalogue = read_catalogue(po)
        partial = f"{mo}.{os.getpid()}.tmp"
        with open(partial, "wb") as handle:
            write_mo(handle, catalogue, use_fuzzy=True)
        os.replace(partial, mo)  # other test runs may be reading it
