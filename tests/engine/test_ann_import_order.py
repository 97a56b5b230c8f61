"""usearch loaded before onnxruntime crashed the process at ``import onnxruntime`` (SIGSEGV): the ANN
index must never load usearch first."""

import subprocess
import sys


def test_building_an_index_then_importing_onnxruntime_does_not_crash():
    code = ("import numpy as np\n"
            "from engine.ann_index import AnnIndex, AnnOptions\n"
            "AnnIndex.empty(8, AnnOptions())\n"
            "import onnxruntime\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-500:])
