"""The GPU bundle: built here, its runner checked against --device sim (the
same table the GPU machine prints), and its runtime-only binary checked for
a clear error where there is no driver."""
import ctypes
import os
import subprocess
import sys

import pytest

from conftest import KILN, ROOT
from test_cuda import needs_ptxas


def has_driver():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@needs_ptxas
def test_bundle_runner_passes_under_the_simulator(tmp_path):
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_bundle.py"),
                    str(bundle), "--kiln", KILN, "--only", "fixture_mlp",
                    "fixture_attention", "op_gemm_all_attrs", "op_softmax11_flatten",
                    "bert_dynamic_2x11"],
                   check=True, capture_output=True)
    assert os.path.getsize(str(bundle) + ".tar.gz") < 60 * 1024 * 1024
    result = subprocess.run([sys.executable, str(bundle / "run.py"), "--kiln", KILN,
                             "--device", "sim"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed, 0 failed" in result.stdout
    assert "fixture_attention" in result.stdout
    assert "bert_dynamic_2x11" in result.stdout

    if not has_driver():
        runner = subprocess.run(
            [str(bundle / "bin" / "kiln-runner"),
             str(bundle / "cases" / "fixture_mlp" / "model.kiln"),
             "--input", f"x={'@'}{bundle / 'cases' / 'fixture_mlp' / 'in_x.npy'}"],
            capture_output=True, text=True)
        assert runner.returncode == 1
        assert "no CUDA driver: cannot load libcuda.so.1" in runner.stderr
