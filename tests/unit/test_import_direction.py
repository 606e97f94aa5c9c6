"""The direction of imports (../shared/DESIGN.md): web → features → models/extensions, and no cycles.

Each feature package may import only the packages listed for it below (plus the shared base modules);
nothing under a feature imports `chargeshed.web`, `flask.request`, Flask's `abort` or Flask-Login, nor
the app-level modules (cli, demo, models, worker). A new import that breaks the direction fails here
with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "chargeshed"

# Modules every package may use: configuration, extensions, domain errors, clock, i18n, PDF fonts.
BASE = {"config", "extensions", "errors", "timeutil", "i18n", "pdffonts"}
# Feature packages, lowest first, and which other features each may import.
ALLOWED: dict[str, set[str]] = {
    "money": set(),
    "sites": set(),
    "accounts": {"sites"},
    "charging": {"sites", "accounts", "money", "ports"},
    "payments": {"money", "charging", "sites", "accounts"},
    "safety": {"accounts", "sites", "charging", "ports"},
    "passes": {"accounts", "sites", "charging", "money"},
    "settlement": {"accounts", "sites", "charging", "money", "payments", "passes"},
}
# ports/ is hardware only: it may know the sites' Port rows and nothing above them.
PORTS_ALLOWED = {"sites"}
FEATURES = set(ALLOWED) | {"ports"}
APP_LEVEL = {"web", "cli", "demo", "models", "worker", "__init__"}
# Web-only things a feature module must not import (the web layer turns domain errors into responses).
WEB_ONLY = {
    ("flask", "request"),
    ("flask", "abort"),
    ("flask", "session"),
    ("flask_login", "current_user"),
    ("flask_login", "login_required"),
}


def _imports(path: Path):
    """(line, chargeshed top-level name or None, module, imported names) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def _target(module: str, names: tuple) -> set[str]:
    """The chargeshed top-level packages or modules an import reaches."""
    parts = module.split(".")
    if parts[0] != "chargeshed":
        return set()
    if len(parts) > 1:
        return {parts[1]}
    return set(names)  # from chargeshed import x, y


def _violations(package: str, allowed: set[str]) -> list[str]:
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        for line, module, names in _imports(path):
            for target in _target(module, names) - {package}:
                if target in BASE:
                    continue
                if target in APP_LEVEL or (target in FEATURES and target not in allowed):
                    found.append(f"{rel}:{line} imports chargeshed.{target}")
            if module.split(".")[0] in ("flask", "flask_login"):
                for name in names:
                    if (module, name) in WEB_ONLY:
                        found.append(f"{rel}:{line} imports {module}.{name} (web only)")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_feature_packages_import_only_downwards(package):
    assert _violations(package, ALLOWED[package]) == []


def test_ports_is_hardware_only():
    assert _violations("ports", PORTS_ALLOWED) == []


def test_the_rules_have_no_cycle():
    """The allowed graph itself is a hierarchy, so following it can never build a package cycle."""
    graph = {**ALLOWED, "ports": PORTS_ALLOWED}
    seen: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " → ".join((*path, name))
        if seen.get(name):
            return
        for dependency in graph.get(name, ()):
            visit(dependency, (*path, name))
        seen[name] = 1

    for name in graph:
        visit(name, ())


def test_the_check_catches_a_wrong_import(tmp_path, monkeypatch):
    """A sites module importing charging is reported with its file and line."""
    package = tmp_path / "chargeshed" / "sites"
    package.mkdir(parents=True)
    (package / "bad.py").write_text("from chargeshed.charging.models import ChargeSession\nfrom flask import abort\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", tmp_path / "chargeshed")
    assert _violations("sites", ALLOWED["sites"]) == [
        "chargeshed/sites/bad.py:1 imports chargeshed.charging",
        "chargeshed/sites/bad.py:2 imports flask.abort (web only)",
    ]
