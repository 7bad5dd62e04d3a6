"""The GPU bundle: built here, its runner checked against --device sim (the
same table the GPU machine prints), and its runtime-only binary checked for
a clear error where there is no driver and for the glibc it needs."""
import ctypes
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import KILN, PRECISION_TOLERANCES, ROOT, TOLERANCES
from test_cuda import needs_ptxas

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from glibc_needed import glibc_versions, newest, version_key  # noqa: E402

BUNDLE = os.path.join(ROOT, "scripts", "gpu_bundle.py")
RUNNER = os.path.join(os.path.dirname(KILN), "kiln-runner")


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
                    "bert_dynamic_2x11", "tc_aligned_bf16", "tc_unaligned_n_fp16",
                    "gpt2_bf16", "hopper_edges_bf16"],
                   check=True, capture_output=True)
    assert os.path.getsize(str(bundle) + ".tar.gz") < 60 * 1024 * 1024
    result = subprocess.run([sys.executable, str(bundle / "run.py"), "--kiln", KILN,
                             "--device", "sim"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 passed, 0 failed" in result.stdout
    # The sm_90a-only case (gemm-wgmma) runs under the simulator; on a GPU
    # before Hopper the runner skips it.
    assert "hopper_edges_bf16" in result.stdout
    assert "tc_aligned_bf16" in result.stdout and "gpt2_bf16" in result.stdout
    assert "fixture_attention" in result.stdout
    assert "bert_dynamic_2x11" in result.stdout

    # The changing-shapes measurement, with the mock driver standing in for
    # a GPU (its kernels do nothing; the plumbing is what is checked).
    spec = importlib.util.spec_from_file_location("bundle_run", bundle / "run.py")
    bundle_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle_run)
    case = bundle / "cases" / "bert_dynamic_2x11"
    with open(case / "case.json") as f:
        case_spec = __import__("json").load(f)
    assert case_spec["cycle"] == ["cycle1", "cycle2", "cycle3"]
    mock = os.path.join(os.path.dirname(KILN), "..", "lib", "libkiln-mock-cuda.so")
    for label, env in bundle_run.CYCLE_SETTINGS:
        ms = bundle_run.run_cycle([str(bundle / "bin" / "kiln-runner")],
                                  str(case), case_spec, "cuda:0", 60,
                                  {**env, "KILN_CUDA_DRIVER": mock})
        assert isinstance(ms, float), f"{label}: {ms}"

    if not has_driver():
        runner = subprocess.run(
            [str(bundle / "bin" / "kiln-runner"),
             str(bundle / "cases" / "fixture_mlp" / "model.kiln"),
             "--input", f"x={'@'}{bundle / 'cases' / 'fixture_mlp' / 'in_x.npy'}"],
            capture_output=True, text=True)
        assert runner.returncode == 1
        assert "no CUDA driver: cannot load libcuda.so.1" in runner.stderr


def test_bundle_reports_the_glibc_its_runner_needs(tmp_path):
    result = subprocess.run([sys.executable, BUNDLE, str(tmp_path / "bundle"),
                             "--kiln", KILN, "--only", "no-such-case"],
                            check=True, capture_output=True, text=True)
    reported = re.search(r"^glibc: bin/kiln-runner: needs glibc ([0-9.]+)",
                         result.stdout, re.M)
    assert reported, result.stdout
    assert reported.group(1) == newest(glibc_versions(RUNNER))
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        # tools/kiln-runner/GlibcCompat.cpp's floor: hosts with glibc 2.28
        # run it.
        assert version_key(reported.group(1)) <= (2, 28), result.stdout


def test_bundle_runner_tolerances_are_the_e2e_tests():
    spec = importlib.util.spec_from_file_location(
        "gpu_bundle_run", os.path.join(ROOT, "scripts", "gpu_bundle_run.py"))
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    for dtype, tolerance in TOLERANCES.items():
        assert run.TOLERANCES[dtype] == (tolerance["rtol"], tolerance["atol"])
    assert np.dtype(np.int64) not in run.TOLERANCES  # integers match exactly
    assert run.PRECISION_TOLERANCES == PRECISION_TOLERANCES


@needs_ptxas
def test_bundle_runner_survives_a_crashing_and_a_hanging_case(tmp_path):
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, BUNDLE, str(bundle), "--kiln", KILN,
                    "--only", "op_relu"], check=True, capture_output=True)
    # Two planted cases that sort before the real one: `kiln run` stand-in
    # kills itself with SIGSEGV on one and hangs on the other, with a child
    # that holds the output pipes open.
    for name in ("a_planted_crash", "a_planted_hang"):
        shutil.copytree(bundle / "cases" / "op_relu", bundle / "cases" / name)
    fake = tmp_path / "fake-kiln"
    fake.write_text(f"""#!{sys.executable}
import os, signal, subprocess, sys, time
if "a_planted_crash" in sys.argv[2]:
    os.kill(os.getpid(), signal.SIGSEGV)
if "a_planted_hang" in sys.argv[2]:
    subprocess.Popen(["sleep", "600"])
    time.sleep(600)
os.execv({KILN!r}, [{KILN!r}, *sys.argv[1:]])
""")
    fake.chmod(0o755)
    result = subprocess.run([sys.executable, str(bundle / "run.py"), "--kiln",
                             str(fake), "--device", "sim", "--timeout", "3"],
                            capture_output=True, text=True, timeout=60)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert re.search(r"^a_planted_crash +CRASH", out, re.M), out
    assert "killed by SIGSEGV (-11)" in out
    assert re.search(r"^a_planted_hang +TIMEOUT", out, re.M), out
    assert "timeout after 3 s" in out
    assert re.search(r"^op_relu +pass", out, re.M), out
    assert "1 passed, 2 failed (1 CRASH, 1 TIMEOUT)" in out
