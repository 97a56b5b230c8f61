"""The code style the project follows (ruff, configured in pyproject.toml) holds for every file."""

import shutil
import subprocess
import sys

import pytest

ROOT = __import__("conftest").ROOT


def test_ruff_is_clean():
    if shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],
                                                      capture_output=True).returncode != 0:
        pytest.skip("ruff is not installed (requirements-dev.txt)")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
