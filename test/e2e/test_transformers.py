"""Real transformer exports (test/fixtures/transformers: GPT-2, a BERT-style
encoder, a LLaMA-style decoder with RMSNorm, RoPE, SwiGLU and grouped-query
attention; random weights, fixed seed), compiled for the CPU and for
cuda:sm_80,sm_90a, and compared with onnxruntime's outputs stored next to
them: the CPU artifact runs here, the cuda one under the GPU-kernel
simulator."""
import glob
import json
import os

import numpy as np
import pytest

from conftest import (PRECISION_TOLERANCES, ROOT, kiln, normwise_error,
                      run_artifact, run_kiln, run_reference)

FIXTURES = os.path.join(ROOT, "test", "fixtures", "transformers")
# Logits of a 2-layer model: f32 with reassociated sums.
RTOL, ATOL = 1e-3, 1e-4

# model_past*.onnx (a cache in and out, symbolic dims) are
# test_onnx_past.py's and test_generate_onnx.py's.
MODELS = sorted(p for p in glob.glob(os.path.join(FIXTURES, "*", "model*.onnx"))
                if not p.endswith("model_dynamic.onnx") and
                not os.path.basename(p).startswith("model_past"))
# Exports with symbolic batch and sequence dims, compiled once with bounds.
DYNAMIC = sorted(glob.glob(os.path.join(FIXTURES, "*", "model_dynamic.onnx")))
BOUNDS = ["--dim", "batch=1..2", "--dim", "sequence=1..16"]
SHAPES = [(1, 3), (2, 11), (2, 16)]
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


def dynamic_inputs(path, batch, seq):
    """Token ids (and a padding mask and token types where the model takes
    them) of one shape."""
    rng = np.random.default_rng(batch * 100 + seq)
    folder = os.path.dirname(path)
    inputs = {}
    for name in sorted(os.path.basename(p)[3:-4]
                       for p in glob.glob(os.path.join(folder, "in_*.npy"))):
        if name == "attention_mask":
            mask = np.ones((batch, seq), dtype=np.int64)
            mask[0, seq - seq // 3:] = 0
            inputs[name] = mask
        elif name == "token_type_ids":
            inputs[name] = rng.integers(0, 2, (batch, seq), dtype=np.int64)
        else:
            inputs[name] = rng.integers(0, 256, (batch, seq), dtype=np.int64)
    return inputs


def test_every_family_has_a_dynamic_export():
    names = {case_id(p) for p in DYNAMIC}
    assert {"gpt2/model_dynamic.onnx", "bert/model_dynamic.onnx",
            "llama/model_dynamic.onnx"} <= names


@pytest.mark.parametrize("path", DYNAMIC, ids=case_id)
@pytest.mark.parametrize("target,device", [("cpu", "cpu"),
                                           ("cuda:sm_80,sm_90a", "sim")])
def test_dynamic_export_runs_every_shape(path, target, device, tmp_path):
    """One artifact with symbolic batch and sequence against onnxruntime at
    several shapes."""
    artifact = tmp_path / "m.kiln"
    kiln("compile", path, "-o", str(artifact), "--target", target,
         "--embed-kernel-ir", *BOUNDS)
    for batch, seq in SHAPES:
        inputs = dynamic_inputs(path, batch, seq)
        want = run_reference(path, inputs)["output"]
        got = run_artifact(artifact, inputs, tmp_path, device)["output"]
        assert got.shape == want.shape, (batch, seq)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{batch}x{seq}")


@pytest.mark.parametrize("path", DYNAMIC, ids=case_id)
def test_dynamic_export_on_tensor_cores(path, tmp_path):
    """The dynamic exports at bf16 on cuda: their projections, whose rows
    (batch x sequence) are symbolic, run on gemm-mma-sync (the batch folded
    into M, the grid's y an expression of both dims, the edges guarded by
    the run's sizes) with their epilogues fused; under the simulator
    against onnxruntime at several shapes, within the bf16 tolerance."""
    artifact = tmp_path / "m.kiln"
    kiln("compile", path, "-o", str(artifact), "--target", "cuda:sm_80,sm_90a",
         "--precision", "bf16", "--embed-kernel-ir", *BOUNDS)
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    assert any(k["strategy"] == "gemm-mma-sync" for k in info["kernels"])
    for batch, seq in SHAPES:
        inputs = dynamic_inputs(path, batch, seq)
        want = run_reference(path, inputs)["output"]
        got = run_artifact(artifact, inputs, tmp_path, "sim")["output"]
        assert got.shape == want.shape, (batch, seq)
        assert normwise_error(got, want) <= PRECISION_TOLERANCES["bf16"], (
            batch, seq, normwise_error(got, want))


def test_llama_projections_on_tensor_core_gemms(tmp_path):
    """LLaMA's q/k/v projections, whose weights the export reshapes into
    [K, heads, head_dim], run on the tensor-core GEMM strategies with their
    rounding as the epilogue (kiln-gpu-collapse-contraction-loops folds the
    two N loops into one), not on the SIMT GEMM. The rotary embeddings of
    q and k run inside the flash kernel, which evaluates them where it
    loads their tiles: 10 launches per layer (norm, q, k, v, attention,
    o + residual, norm, gate, up + SiLU x gate, down + residual). The only
    SIMT GEMM left is the rotary angles' outer product (K = 1, f32)."""
    path = os.path.join(FIXTURES, "llama", "model.onnx")
    artifact = tmp_path / "m.kiln"
    kiln("compile", path, "-o", str(artifact), "--target", "cuda:sm_80,sm_90a",
         "--precision", "bf16")
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    strategy = {k["symbol"]: k["strategy"] for k in info["kernels"]}
    launches = [strategy[l["kernel"]] for l in info["entry_points"][0]["launches"]]
    assert launches.count("gemm-simt") == 1, launches
    layers = launches.count("flash-attention-mma-sync")
    assert layers == 2
    # Embedding, the rotary tables (angles, cos, sin), and the final norm
    # and LM head around the layers.
    assert len(launches) - 7 == 10 * layers, launches
    first = launches.index("flash-attention-mma-sync")
    assert launches[first - 4:first] == ["row-fused"] + ["gemm-small-m"] * 3
