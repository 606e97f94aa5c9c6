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


def read_catalogue(path: str = ZH):
    """The parsed .po file."""
    with open(path, "rb") as handle:
        return read_po(handle)


NAMED = re.compile(r"%\([^)]*\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]")


def format_problems(source: str, translation: str) -> list[str]:
    """How a translation breaks the %-formatting of its source text (empty when it is safe).

    Named placeholders (%(amount)s) must be the same set; an escaped %% must stay escaped; and a
    translation may only contain % where its source does (template strings are always %-formatted).
    """
    problems = []
    named, translated = sorted(set(NAMED.findall(source))), sorted(set(NAMED.findall(translation)))
    if named != translated:
        problems.append(f"placeholders {translated} instead of {named}")
    if source.count("%%") != translation.count("%%"):
        problems.append("%% (a literal percent sign) not kept")
    if "%" in translation and "%" not in source:
        problems.append("a % that the source does not have")
    return problems


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
