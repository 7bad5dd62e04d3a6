"""Every e2e model compiles for cuda:sm_80,sm_90a: each kernel passes ptxas
for both architectures without spilling, and the artifact run under the
GPU-kernel simulator (--device sim) matches onnxruntime."""
import json
import os
import shutil

import onnx
import pytest

import numpy as np

from conftest import ROOT, assert_matches, kiln
from test_ops import CASES

needs_ptxas = pytest.mark.skipif(
    not (shutil.which("ptxas") or os.path.exists("/usr/local/cuda/bin/ptxas")),
    reason="no CUDA toolkit (ptxas)")

MODELS = [("fixture_" + n, os.path.join(ROOT, "test", "fixtures", n, "model.onnx"))
          for n in ("mlp", "attention")] + [("op_" + n, None) for n in sorted(CASES)]


@needs_ptxas
@pytest.mark.parametrize("name,path", MODELS, ids=[m[0] for m in MODELS])
def test_compiles_for_both_architectures(name, path, tmp_path):
    if path is None:
        path = tmp_path / "model.onnx"
        onnx.save(CASES[name[len("op_"):]][0], path)
    artifact = str(tmp_path / "model.kiln")
    kiln("compile", str(path), "--target", "cuda:sm_80,sm_90a",
         "--embed-kernel-ir", "-o", artifact)
    info = json.loads(kiln("inspect", artifact, "--json").stdout)
    assert info["target"] == "cuda:sm_80,sm_90a"
    # Models that only reshape have no kernels at all, just copies.
    launches = info["entry_points"][0]["launches"]
    assert info["kernels"] or all(l["kind"] == "copy" for l in launches)
    for kernel in info["kernels"]:
        archs = sorted(image["arch"] for image in kernel["images"])
        assert archs == ["sm_80", "sm_90a"], kernel["name"]
        for image in kernel["images"]:
            assert image["cubin_bytes"] > 0
            assert image["spill_store_bytes"] == 0, kernel["name"]
    for launch in launches:
        if launch["kind"] == "kernel":
            assert len(launch["grid"]) == 3 and len(launch["block"]) == 3


@needs_ptxas
@pytest.mark.parametrize("name,path", MODELS, ids=[m[0] for m in MODELS])
def test_simulator_matches_onnxruntime(name, path, tmp_path):
    if path is None:
        model, inputs = CASES[name[len("op_"):]]
        path = tmp_path / "model.onnx"
        onnx.save(model, path)
    else:
        inputs = {"x": np.load(os.path.join(os.path.dirname(path), "x.npy"))}
    assert_matches(path, inputs, tmp_path, target="cuda:sm_80,sm_90a",
                   device="sim")
