"""What a transformer export costs to compile and to ship: identical
kernels of the layers compiled once, weights stored once (the exporter's
transposed copy of a tied embedding included), and the numerics unchanged,
on cpu and under the simulator. The model is bench/make_gpt2.py's GPT-2
graph at a small size (node for node what the TorchScript exporter writes),
80 wide so that no bias is small enough to be inlined into its kernel."""
import json
import os
import sys

import numpy as np
import onnx
import pytest

from conftest import ROOT, assert_matches, kiln

sys.path.insert(0, os.path.join(ROOT, "bench"))
import make_gpt2  # noqa: E402

LAYERS = 3


def make(tmp_path_factory, layers):
    path = tmp_path_factory.mktemp("gpt2") / f"model{layers}.onnx"
    onnx.save(make_gpt2.build(layers, 80, 4, 96, 8, 20), str(path))
    return path


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return make(tmp_path_factory, LAYERS)


@pytest.fixture(scope="module")
def gpt2_more_layers(tmp_path_factory):
    return make(tmp_path_factory, LAYERS + 2)


def inspect(artifact):
    return json.loads(kiln("inspect", str(artifact), "--json").stdout)


@pytest.mark.parametrize("target,device", [
    ("cpu", "cpu"), ("cuda:sm_80,sm_90a", "sim")])
def test_tied_gpt2_matches_onnxruntime(gpt2, target, device, tmp_path):
    ids = np.random.default_rng(3).integers(0, 96, (1, 8)).astype(np.int64)
    assert_matches(gpt2, {"input_ids": ids}, tmp_path, target, device)


@pytest.mark.parametrize("target", ["cpu", "cuda:sm_80"])
def test_layers_share_kernels_and_weights_are_stored_once(
        gpt2, gpt2_more_layers, target, tmp_path):
    def compile(model):
        artifact = tmp_path / (model.stem + ".kiln")
        kiln("compile", str(model), "-o", str(artifact), "--target", target)
        info = inspect(artifact)
        return info, sum(len(e["launches"]) for e in info["entry_points"])

    info, launches = compile(gpt2)
    more, more_launches = compile(gpt2_more_layers)
    # The layers between the first and the last launch the same kernels:
    # two layers more, more launches, but not one kernel more.
    assert more_launches > launches
    assert len(more["kernels"]) == len(info["kernels"])

    model = onnx.load(str(gpt2))
    stored = sum(onnx.numpy_helper.to_array(t).nbytes
                 for t in model.graph.initializer)
    tied = onnx.numpy_helper.to_array(
        next(t for t in model.graph.initializer
             if t.name == "onnx::MatMul_lm_head"))
    # The lm_head's copy of the embedding is not stored again, and neither
    # are the LayerNorm scales and biases the layers share (all ones and all
    # zeros at initialization).
    assert info["weight_bytes"] <= stored - tied.nbytes
    names = [w["name"] for w in info["weights"]]
    assert "onnx::MatMul_lm_head" not in names
    # Stored once: on the cpu in the LM head's column panels, which the
    # embedding's gather reads too (kiln-cpu-pack-weights); on cuda as it is.
    embedding = [n for n in names if n.startswith("transformer.wte.weight")]
    if target == "cpu":
        assert len(embedding) == 1 and ".panels" in embedding[0], embedding
    else:
        assert embedding == ["transformer.wte.weight"]
