"""Hugging Face decoder exports with a KV cache (test/fixtures/transformers/
*/model_past*.onnx, written by export_past.py with the TorchScript and the
dynamo exporters: `past_key_values.L.key/value`
in, `present.L.key/value` out, the attention mask over past and new
positions): compiled once with symbolic past and sequence lengths, each
layer's attention raised to one kernel (transformers' mask from index
arithmetic, torch's safe softmax), and run at several lengths and left
paddings against onnxruntime, on the cpu and for cuda under the
simulator."""
import glob
import json
import os

import numpy as np
import onnx
import pytest

from conftest import (PRECISION_TOLERANCES, ROOT, TOLERANCES, kiln,
                      normwise_error, run_reference)
from test_symbolic_dims import run

FIXTURES = os.path.join(ROOT, "test", "fixtures", "transformers")
MODELS = sorted(glob.glob(os.path.join(FIXTURES, "*", "model_past*.onnx")))
DIMS = ["--dim", "batch_size=1", "--dim", "sequence_length=1..24",
        "--dim", "past_sequence_length=1..40",
        "--dim", "past_sequence_length + sequence_length=2..64"]
# (new tokens, past tokens, left padding): one decode step, a prompt longer
# than the past, padding, the upper bounds (the models have 64 positions),
# the lower bounds.
SHAPES = [(1, 7, 0), (5, 3, 0), (4, 2, 1), (24, 40, 3), (1, 1, 0)]


def case_id(path):
    return os.path.relpath(path, FIXTURES)


def inputs_for(model, seq, past, pad):
    """Token ids, a mask with `pad` masked positions on the left, positions
    counted from the first real token, and a random cache."""
    rng = np.random.default_rng(seq * 100 + past)
    feeds = {"input_ids": rng.integers(0, 256, (1, seq), dtype=np.int64)}
    mask = np.ones((1, past + seq), np.int64)
    mask[0, :pad] = 0
    feeds["attention_mask"] = mask
    feeds["position_ids"] = np.maximum(
        np.arange(past, past + seq) - pad, 0)[None].astype(np.int64)
    for value in model.graph.input:
        if value.name.startswith("past_key_values."):
            dims = value.type.tensor_type.shape.dim
            shape = (1, dims[1].dim_value, past, dims[3].dim_value)
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def test_the_fixtures_are_there():
    assert {case_id(p) for p in MODELS} == {
        f"{name}/model_past{kind}.onnx" for name in ("gpt2", "llama")
        for kind in ("", "_dynamo")}


@pytest.mark.parametrize("path", MODELS, ids=case_id)
@pytest.mark.parametrize("target,device,precision",
                         [("cpu", "cpu", "fp32"),
                          ("cuda:sm_80,sm_90a", "sim", "bf16")])
def test_a_decoder_with_a_cache_matches_onnxruntime(path, target, device,
                                                    precision, tmp_path):
    artifact = tmp_path / "m.kiln"
    extra = ["--embed-kernel-ir"] if device == "sim" else []
    kiln("compile", path, "-o", str(artifact), "--target", target,
         "--precision", precision, *DIMS, *extra)
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    model = onnx.load(path)
    layers = sum(v.name.startswith("past_key_values.") for v in
                 model.graph.input) // 2
    assert info["raised"].get("attention") == layers, info["raised"]
    strategy = ("flash-attention-mma-sync" if device == "sim"
                else "cpu-flash-attention")
    assert any(k["strategy"] == strategy for k in info["kernels"])
    for seq, past, pad in SHAPES:
        feeds = inputs_for(model, seq, past, pad)
        want = run_reference(path, feeds)
        run(artifact, feeds, tmp_path, device)
        for name, expected in want.items():
            got = np.load(tmp_path / "out" / f"{name}.npy")
            where = f"{name} at {seq} new, {past} past, {pad} padding"
            assert got.shape == expected.shape, where
            if precision == "fp32":
                np.testing.assert_allclose(got, expected, err_msg=where,
                                           **TOLERANCES[np.dtype(np.float32)])
            else:
                error = normwise_error(got, expected)
                assert error <= PRECISION_TOLERANCES[precision], (where, error)
