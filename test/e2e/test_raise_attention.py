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
from test_symbolic_dims import run

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


HP, DP, MAXPOS = 2, 16, 64


def past_model(path):
    """GPT-2's attention with a KV cache as the TorchScript exporter writes
    it (transformers' `self.bias[:, :, L - S : L, :L]`): x [1, seq, 32]
    projected to q, k, v with a past of symbolic length concatenated in
    front of k and v, and the causal mask a slice of a constant [64, 64]
    triangle by the key and query counts, applied with Where. The mask's
    offset is the past's length: aligned to the end."""
    f = TensorProto.FLOAT
    rng = np.random.default_rng(11)
    nodes, consts = [], []

    def const(name, value, t=np.float32):
        consts.append(numpy_helper.from_array(np.asarray(value, t), name))
        return name

    def node(op, inputs, out, **attrs):
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    shape = const("heads_shape", [1, -1, HP, DP], np.int64)
    split = {}
    for name in ("q", "k", "v"):
        w = const(f"w{name}", rng.standard_normal((HP * DP, HP * DP)) / 6)
        y = node("MatMul", ["x", w], f"{name}_flat")
        y = node("Reshape", [y, shape], f"{name}_heads")
        split[name] = node("Transpose", [y], f"{name}_t", perm=[0, 2, 1, 3])
    k = node("Concat", ["past_k", split["k"]], "k_all", axis=2)
    v = node("Concat", ["past_v", split["v"]], "v_all", axis=2)
    kt = node("Transpose", [k], "kt", perm=[0, 1, 3, 2])
    scores = node("MatMul", [split["q"], kt], "scores")
    scores = node("Div", [scores, const("scale", np.sqrt(DP))], "scaled")
    # key_length - query_length : key_length, from the shapes.
    two = const("two", [2], np.int64)
    s = node("Gather", [node("Shape", [split["q"]], "q_shape"), two], "s")
    l = node("Gather", [node("Shape", [k], "k_shape"), two], "l")
    start = node("Sub", [l, s], "start")
    zero = const("zero", [0], np.int64)
    rows = node("Slice", [const("tril", np.tril(np.ones((1, 1, MAXPOS, MAXPOS),
                                                       bool)), np.bool_),
                          start, l, two], "rows")
    three = const("three", [3], np.int64)
    mask = node("Slice", [rows, zero, l, three], "mask")
    fill = const("fill", np.finfo(np.float32).min)
    masked = node("Where", [mask, scores, fill], "masked")
    probs = node("Softmax", [masked], "probs", axis=-1)
    y = node("MatMul", [probs, v], "heads_out")
    y = node("Transpose", [y], "merged_t", perm=[0, 2, 1, 3])
    node("Reshape", [y, const("out_shape", [1, -1, HP * DP], np.int64)], "y")
    graph = helper.make_graph(
        nodes, "past", [
            helper.make_tensor_value_info("x", f, [1, "sequence", HP * DP]),
            helper.make_tensor_value_info("past_k", f, [1, HP, "past", DP]),
            helper.make_tensor_value_info("past_v", f, [1, HP, "past", DP])],
        [helper.make_tensor_value_info("y", f, [1, "sequence", HP * DP])],
        consts)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(path))


PAST_DIMS = ["--dim", "sequence=1..16", "--dim", "past=1..40"]


@pytest.mark.parametrize("target,device,precision", [
    ("cpu", "cpu", "fp32"), ("cuda:sm_80", "sim", "bf16")])
def test_a_past_of_symbolic_length_is_causal_from_the_end(target, device,
                                                          precision, tmp_path):
    """The mask sliced from a triangle by the key and query counts is, at
    every sample of the symbolic dims, causal with the past's length as its
    offset: the chain is raised to one kiln.attention with
    `causal_from_end` and no bias, and one artifact runs every (sequence,
    past) against onnxruntime: one new token, a prompt longer than the
    past, the bounds."""
    path = tmp_path / "past.onnx"
    past_model(path)
    artifact = tmp_path / "past.kiln"
    extra = ["--embed-kernel-ir"] if device == "sim" else []
    kiln("compile", str(path), "-o", str(artifact), "--target", target,
         "--precision", precision, *PAST_DIMS, *extra)
    info = json.loads(kiln("inspect", str(artifact), "--json").stdout)
    assert info.get("raised", {}).get("attention") == 1, info.get("raised")
    ir = kiln("compile", str(path), "-o", str(tmp_path / "d.mlir"), "--target",
              target, "--precision", precision, *PAST_DIMS, "--emit",
              "dispatch-mlir").stdout
    text = (tmp_path / "d.mlir").read_text()
    (line,) = [l for l in text.splitlines() if "kiln.attention" in l]
    assert "causal_from_end" in line and "causal_offset = 0" in line, line
    assert line.count("%") == 4, line  # q, k, v and the result: no bias
    strategy = ("flash-attention-mma-sync" if device == "sim"
                else "cpu-flash-attention")
    assert any(k["strategy"] == strategy for k in info["kernels"]), info["kernels"]
    for seq, past in [(1, 7), (5, 3), (16, 40), (9, 1)]:
        rng = np.random.default_rng(seq * 100 + past)
        x = {"x": rng.standard_normal((1, seq, HP * DP)).astype(np.float32),
             "past_k": rng.standard_normal((1, HP, past, DP)).astype(np.float32),
             "past_v": rng.standard_normal((1, HP, past, DP)).astype(np.float32)}
        want = run_reference(path, x)["y"]
        run(artifact, x, tmp_path, device)
        got = np.load(tmp_path / "out" / "y.npy")
        assert got.shape == want.shape
        if precision == "fp32":
            np.testing.assert_allclose(got, want, err_msg=f"{seq}/{past}",
                                       **TOLERANCES[np.dtype(np.float32)])
        else:
            error = normwise_error(got, want)
            assert error <= PRECISION_TOLERANCES[precision], (seq, past, error)
