"""engine/ must never import torch or streamlit (the UI process and the server stay light)."""

import pkgutil
import subprocess
import sys

import engine

ROOT = __import__("conftest").ROOT


def test_engine_imports_neither_torch_nor_streamlit():
    modules = sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine.") if not m.name.endswith("__main__"))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from engine.cli import main, _load_commands\n"
        "_load_commands()\n"
        "heavy = ('torch', 'streamlit', 'sentence_transformers', 'transformers', 'optimum')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(len(sys.modules), bad)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(modules) >= 10
