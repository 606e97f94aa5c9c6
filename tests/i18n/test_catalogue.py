"""The Chinese catalogue is complete: every string residents and staff see has a checked translation."""

from __future__ import annotations

import os

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from tests.i18n.catalogues import ROOT, TRANSLATIONS, ZH, format_problems, read_catalogue

HOW_TO_UPDATE = "run the two pybabel commands at the top of babel.cfg, then translate in " + ZH


def _messages(catalogue):
    return [m for m in catalogue if m.id]


def _forms(message) -> tuple[list[str], list[str]]:
    """(source texts, translations) of a message, plural or not."""
    if isinstance(message.id, tuple):
        return list(message.id), list(message.string)
    return [message.id], [message.string]


def test_every_chinese_message_is_translated_and_reviewed():
    problems = []
    for message in _messages(read_catalogue()):
        _, translations = _forms(message)
        if message.fuzzy:
            problems.append(f"fuzzy (review it, then drop the flag): {message.id!r}")
        elif not all(t and t.strip() for t in translations):
            problems.append(f"untranslated: {message.id!r}")
    assert problems == [], "\n".join(problems)


def test_translations_keep_exactly_the_placeholders_of_the_english_text():
    problems = []
    for message in _messages(read_catalogue()):
        sources, translations = _forms(message)
        source = sources[-1]  # Chinese has one plural form: it follows the plural text
        for translation in translations:
            problems += [f"{message.id!r}: {p}" for p in format_problems(source, translation) if translation]
    assert problems == [], "\n".join(problems)


def test_every_ui_string_in_the_code_is_in_the_catalogue():
    with open(os.path.join(ROOT, "babel.cfg")) as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {**DEFAULT_KEYWORDS, "_l": None}
    extracted = extract_from_dir(ROOT, method_map, options_map, keywords)
    in_code = {message if isinstance(message, str) else message[0] for _f, _l, message, _c, _x in extracted}
    assert len(in_code) > 100  # the extraction really found the templates and modules
    catalogued = {m.id if isinstance(m.id, str) else m.id[0] for m in _messages(read_catalogue())}
    missing = sorted(in_code - catalogued)
    assert missing == [], f"{len(missing)} UI strings not in the catalogue ({HOW_TO_UPDATE}):\n" + "\n".join(
        map(repr, missing)
    )


def test_catalogues_pass_the_checks_of_pybabel_compile():
    """`make translations` stops on these errors, and with it `make test` and `make run`."""
    problems = []
    for lang in sorted(os.listdir(TRANSLATIONS)):
        path = os.path.join(TRANSLATIONS, lang, "LC_MESSAGES", "messages.po")
        problems += [
            f"{lang}: {message.id!r}: {error}" for message, errors in read_catalogue(path).check() for error in errors
        ]
    assert problems == [], "\n".join(problems)
