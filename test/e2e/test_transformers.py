"""Real transformer exports (test/fixtures/transformers: GPT-2, a BERT-style
encoder, a LLaMA-style decoder with RMSNorm, RoPE, SwiGLU and grouped-query
attention; random weights, fixed seed), compiled for the CPU and for
cuda:sm_80,sm_90a, and compared with onnxruntime's outputs stored next to
them: the CPU artifact runs here, the cuda one under the GPU-kernel
simulator."""
import glob
import os

import numpy as np
import pytest

from conftest import ROOT, kiln, run_kiln

FIXTURES = os.path.join(ROOT, "test", "fixtures", "transformers")
# Logits of a 2-layer model: f32 with reassociated sums.
RTOL, ATOL = 1e-3, 1e-4

MODELS = sorted(glob.glob(os.path.join(FIXTURES, "*", "model*.onnx")))
# What the dynamo exporter writes for GPT-2 uses sequence ops; Kiln says so.
UNSUPPORTED = {"gpt2/model_dynamo.onnx": "unsupported op 'SplitToSequence'"}


def case_id(path):
    return os.path.relpath(path, FIXTURES)


def load_case(path):
    folder = os.path.dirname(path)
    inputs = {os.path.basename(p)[3:-4]: np.load(p)
              for p in sorted(glob.glob(os.path.join(folder, "in_*.npy")))}
    want = np.load(os.path.join(folder, "want_output.npy"))
    return inputs, want


def test_the_three_families_are_there():
    names = {case_id(p) for p in MODELS}
    assert {"gpt2/model.onnx", "bert/model.onnx", "llama/model.onnx"} <= names


@pytest.mark.parametrize("path", MODELS, ids=case_id)
@pytest.mark.parametrize("target,device", [("cpu", "cpu"),
                                           ("cuda:sm_80,sm_90a", "sim")])
def test_transformer_matches_onnxruntime(path, target, device, tmp_path):
    inputs, want = load_case(path)
    expected_error = UNSUPPORTED.get(case_id(path))
    if expected_error:
        result = kiln("compile", path, "-o", str(tmp_path / "m.kiln"),
                      "--target", target, check=False)
        assert result.returncode == 1 and expected_error in result.stderr, \
            result.stderr
        assert not (tmp_path / "m.kiln").exists()
        return
    got = run_kiln(path, inputs, tmp_path, target, device)["output"]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
