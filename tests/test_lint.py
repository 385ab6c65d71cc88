"""ruff and mypy are part of the test run, so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SOURCES = ["envtasks", "tests", "bench", "scripts", "app", "tasks.py"]


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", *SOURCES],
        ["ruff", "format", "--check", *SOURCES],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(argv: list[str]) -> None:
    tool = BIN / argv[0]
    if not tool.is_file():
        pytest.fail(f"{argv[0]} is not installed beside {sys.executable}; pip install -e '.[dev]'")
    done = subprocess.run(
        [str(tool), *argv[1:]], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
