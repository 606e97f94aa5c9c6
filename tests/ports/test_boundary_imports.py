"""ports/ is hardware only: it imports nothing from charging, safety or web."""

import ast
import pathlib

import chargeshed.ports

FORBIDDEN = ("chargeshed.charging", "chargeshed.safety", "chargeshed.web", "chargeshed.worker")


def test_ports_import_nothing_from_charging_safety_or_web():
    offenders = []
    for path in pathlib.Path(chargeshed.ports.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.startswith(FORBIDDEN)]
    assert offenders == []
