"""All code is kept in one format and passes the lint rules, so a diff shows only what changed."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _ruff(*args):
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, str(ROOT)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_every_python_file_is_formatted_by_the_one_formatter():
    result = _ruff("format", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_rules_pass():
    result = _ruff("check")
    assert result.returncode == 0, result.stdout + result.stderr
