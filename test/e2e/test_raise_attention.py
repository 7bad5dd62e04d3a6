"""Spellings of decomposed attention that kiln-raise-attention takes beside
the exporters' plain chain: a half-precision model's softmax widened to f32
(HF's `softmax(dtype=torch.float32)`: Cast, Softmax, Cast back) and
softcapping (Gemma 2: Div by the cap, Tanh, Mul by it). Each is raised to
one kiln.attention (counted by `kiln inspect --json`'s "raised") and
matches onnxruntime on the cpu and, under --precision, on the cuda
kernels run by the simulator; near misses are left alone and still
match."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, TOLERANCES, kiln, normwise_error,
                      run_kiln, run_reference)

B, H, S, D = 2, 4, 24, 32


def attention_model(path, dtype, spelling):
    """q, k, v [B, H, S, D] -> y, with a causal mask, spelled one way."""
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    nodes, consts = [], []

    def const(name, value, t=dtype):
        consts.append(numpy_helper.from_array(np.asarray(value, t), name))
        return name

    def node(op, inputs, out, **attrs):
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    causal = np.triu(np.full((S, S), np.finfo(np.float32).min, np.float32), 1)
    kt = node("Transpose", ["k"], "kt", perm=[0, 1, 3, 2])
    scores = node("MatMul", ["q", kt], "scores")
    x = node("Mul", [scores, const("scale", 1 / np.sqrt(D))], "scaled")
    if spelling == "widened":
        x = node("Cast", [x], "wide", to=TensorProto.FLOAT)
        x = node("Add", [x, const("mask", causal, np.float32)], "masked")
        x = node("Softmax", [x], "probs", axis=-1)
        x = node("Cast", [x], "narrow", to=elem)
    elif spelling in ("softcap", "mask_then_cap"):
        cap = const("cap", 2.0)
        mask = const("mask", causal, dtype)
        if spelling == "mask_then_cap":  # the cap would apply to the mask
            x = node("Add", [x, mask], "masked")
        x = node("Div", [x, cap], "down")
        x = node("Tanh", [x], "capped")
        x = node("Mul", [x, cap], "up")
        if spelling == "softcap":
            x = node("Add", [x, mask], "masked")
        x = node("Softmax", [x], "probs", axis=-1)
    node("MatMul", [x, "v"], "y")
    io = [helper.make_tensor_value_info(n, elem, [B, H, S, D])
          for n in ("q", "k", "v")]
    graph = helper.make_graph(
        nodes, "attention", io,
        [helper.make_tensor_value_info("y", elem, [B, H, S, D])], consts)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(path))


def inputs(dtype):
    rng = np.random.default_rng(3)
    return {n: (2 * rng.standard_normal((B, H, S, D))).astype(dtype)
            for n in ("q", "k", "v")}


def raised(tmp_path):
    info = json.loads(kiln("inspect", str(tmp_path / "model.kiln"),
                           "--json").stdout)
    return info.get("raised", {}).get("attention", 0)


@pytest.mark.parametrize("spelling,dtype,count", [
    ("widened", np.float16, 1),
    ("softcap", np.float32, 1),
    ("mask_then_cap", np.float32, 0),
])
def test_cpu(spelling, dtype, count, tmp_path):
    path = tmp_path / "m.onnx"
    attention_model(path, dtype, spelling)
    x = inputs(dtype)
    want = run_reference(path, x)["y"]
    got = run_kiln(path, x, tmp_path)["y"]
    assert got.dtype == dtype
    if dtype == np.float16:
        assert normwise_error(got, want) <= PRECISION_TOLERANCES["fp16"]
    else:
        np.testing.assert_allclose(got, want, **TOLERANCES[np.dtype(dtype)])
    assert raised(tmp_path) == count


@pytest.mark.parametrize("spelling,dtype,precision", [
    ("widened", np.float16, "fp32"),
    ("widened", np.float16, "fp16"),
    ("softcap", np.float32, "bf16"),
])
def test_flash_under_sim(spelling, dtype, precision, tmp_path):
    """On cuda the raised op runs as flash attention (softcap and the f32
    softmax in registers), within the precision's tolerance. An f16 model
    needs no --precision: cuda raises half-precision chains at the
    model's own precision."""
    path = tmp_path / "m.onnx"
    attention_model(path, dtype, spelling)
    x = inputs(dtype)
    want = run_reference(path, x)["y"]
    got = run_kiln(path, x, tmp_path, "cuda:sm_80", "sim", precision)["y"]
    tolerance = "fp16" if dtype == np.float16 else precision
    assert normwise_error(got, want) <= PRECISION_TOLERANCES[tolerance]
    assert raised(tmp_path) == 1
    info = json.loads(kiln("inspect", str(tmp_path / "model.kiln"),
                           "--json").stdout)
    assert any(k["strategy"] == "flash-attention-mma-sync"
               for k in info["kernels"])
