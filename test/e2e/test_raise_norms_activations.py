"""Decomposed norms and activations raised to kiln ops (kiln-raise-norms,
kiln-raise-activations): each exporter spelling is raised (counted by
`kiln inspect --json`'s "raised") and matches onnxruntime on cpu and under
the GPU-kernel simulator; spellings that only look alike are not raised
and still match."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, TOLERANCES, kiln, normwise_error,
                      run_kiln, run_reference)

TARGETS = [("cpu", "cpu"), ("cuda:sm_80", "sim")]


class Graph:
    """A small ONNX graph built node by node."""

    def __init__(self, dtype=np.float32):
        self.dtype = dtype
        self.nodes, self.consts, self.n = [], [], 0

    def const(self, value, dtype=None):
        self.n += 1
        name = f"c{self.n}"
        self.consts.append(numpy_helper.from_array(
            np.asarray(value, dtype or self.dtype), name))
        return name

    def __call__(self, op, *inputs, **attrs):
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def save(self, path, x_shape, y, elem=TensorProto.FLOAT):
        self.nodes[-1].output[0] = "y"
        for node in self.nodes:  # the last node's result is named y
            node.input[:] = ["y" if i == y else i for i in node.input]
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", elem, x_shape)],
            [helper.make_tensor_value_info("y", elem, x_shape)], self.consts)
        model = helper.make_model(graph,
                                  opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(model, str(path))


def gelu_erf_bert(g, x):  # x * 0.5 * (1 + erf(x / sqrt 2))
    e = g("Erf", g("Div", x, g.const(2 ** 0.5)))
    return g("Mul", g("Mul", x, g.const(0.5)), g("Add", e, g.const(1.0)))


def gelu_erf_other_order(g, x):  # 0.5 * x * (erf(x * (1/sqrt 2)) + 1)
    e = g("Erf", g("Mul", g.const(2 ** -0.5), x))
    return g("Mul", g("Mul", g.const(0.5), x), g("Add", g.const(1.0), e))


def gelu_tanh_gpt2(g, x):
    cube = g("Pow", x, g.const(3.0))
    inner = g("Add", x, g("Mul", g.const(0.044715), cube))
    t = g("Tanh", g("Mul", g.const((2 / np.pi) ** 0.5), inner))
    return g("Mul", g("Mul", g.const(0.5), x), g("Add", g.const(1.0), t))


def silu(g, x):
    return g("Mul", x, g("Sigmoid", x))


def quick_gelu(g, x):  # x * sigmoid(1.702 x): neither GELU nor SiLU
    return g("Mul", x, g("Sigmoid", g("Mul", x, g.const(1.702))))


@pytest.mark.parametrize("target,device", TARGETS)
@pytest.mark.parametrize("build,raised", [
    (gelu_erf_bert, {"gelu": 1}),
    (gelu_erf_other_order, {"gelu": 1}),
    (gelu_tanh_gpt2, {"gelu": 1}),
    (silu, {"silu": 1}),
    (quick_gelu, {}),
])
def test_activation(build, raised, target, device, tmp_path):
    g = Graph()
    x_shape = [3, 5, 48]
    y = build(g, "x")
    path = tmp_path / "act.onnx"
    g.save(path, x_shape, y)
    x = (3 * np.random.default_rng(0).standard_normal(x_shape)).astype(np.float32)
    want = run_reference(path, {"x": x})["y"]
    got = run_kiln(path, {"x": x}, tmp_path, target, device)["y"]
    np.testing.assert_allclose(got, want, **TOLERANCES[np.dtype(np.float32)])
    info = json.loads(kiln("inspect", str(tmp_path / "model.kiln"), "--json").stdout)
    assert info.get("raised", {}) == raised


def rms_llama(g, x, d, rng):  # Pow, ReduceMean, Add, Sqrt, Div(1, .), Mul, Mul w
    w = g.const(1 + 0.1 * rng.standard_normal(d))
    ms = g("ReduceMean", g("Pow", x, g.const(2.0)), axes=[-1], keepdims=1)
    inv = g("Div", g.const(1.0), g("Sqrt", g("Add", ms, g.const(1e-6))))
    return g("Mul", w, g("Mul", x, inv))


def rms_gemma(g, x, d, rng):  # x * 1/sqrt(mean(x*x) + eps) * (1 + w), Casts
    w = g.const(0.1 * rng.standard_normal(d))
    xf = g("Cast", x, to=TensorProto.FLOAT)
    ms = g("ReduceMean", g("Mul", xf, xf), axes=[-1], keepdims=1)
    inv = g("Reciprocal", g("Sqrt", g("Add", ms, g.const(1e-5))))
    return g("Mul", g("Mul", xf, inv), g("Add", g.const(1.0), w))


def layer_norm_decomposed(g, x, d, rng):  # the pre-opset-17 LayerNorm
    w = g.const(1 + 0.1 * rng.standard_normal(d))
    b = g.const(0.1 * rng.standard_normal(d))
    dx = g("Sub", x, g("ReduceMean", x, axes=[-1], keepdims=1))
    var = g("ReduceMean", g("Pow", dx, g.const(2.0)), axes=[-1], keepdims=1)
    xn = g("Div", dx, g("Sqrt", g("Add", var, g.const(1e-5))))
    return g("Add", g("Mul", xn, w), b)


def not_a_variance(g, x, d, rng):  # divides the sum of squares by D + 1
    s = g("ReduceSum", g("Mul", x, x), g.const([-1], np.int64), keepdims=1)
    inv = g("Div", g.const(1.0),
            g("Sqrt", g("Add", g("Div", s, g.const(float(d + 1))), g.const(1e-6))))
    return g("Mul", x, inv)


@pytest.mark.parametrize("target,device", TARGETS)
@pytest.mark.parametrize("build,raised", [
    (rms_llama, {"rms_norm": 1}),
    (rms_gemma, {"rms_norm": 1}),
    (layer_norm_decomposed, {"layer_norm": 1}),
    (not_a_variance, {}),
])
def test_norm(build, raised, target, device, tmp_path):
    d = 96
    rng = np.random.default_rng(d)
    g = Graph()
    x_shape = [2, 7, d]
    y = build(g, "x", d, rng)
    path = tmp_path / "norm.onnx"
    g.save(path, x_shape, y)
    x = (2 * rng.standard_normal(x_shape) + 0.5).astype(np.float32)
    want = run_reference(path, {"x": x})["y"]
    got = run_kiln(path, {"x": x}, tmp_path, target, device)["y"]
    np.testing.assert_allclose(got, want, **TOLERANCES[np.dtype(np.float32)])
    info = json.loads(kiln("inspect", str(tmp_path / "model.kiln"), "--json").stdout)
    assert info.get("raised", {}) == raised


@pytest.mark.parametrize("target,device", TARGETS)
@pytest.mark.parametrize("build,raised", [
    (gelu_tanh_gpt2, {"gelu": 1}),
    (silu, {"silu": 1}),
    (rms_llama, {"rms_norm": 1}),
])
def test_f16_model(build, raised, target, device, tmp_path):
    """An f16 export: the constants are f16 (sqrt(2/pi) to 11 bits), which
    the raising's tolerance allows for; the result is within f16 roundoff
    of onnxruntime's (normwise, PRECISION_TOLERANCES["fp16"])."""
    d = 64
    rng = np.random.default_rng(7)
    g = Graph(np.float16)
    x_shape = [4, d]
    if build is rms_llama:
        y = build(g, "x", d, rng)
    else:
        y = build(g, "x")
    path = tmp_path / "f16.onnx"
    g.save(path, x_shape, y, TensorProto.FLOAT16)
    x = (2 * rng.standard_normal(x_shape)).astype(np.float16)
    want = run_reference(path, {"x": x})["y"]
    got = run_kiln(path, {"x": x}, tmp_path, target, device)["y"]
    assert got.dtype == np.float16
    assert normwise_error(got, want) <= PRECISION_TOLERANCES["fp16"]
    info = json.loads(kiln("inspect", str(tmp_path / "model.kiln"), "--json").stdout)
    assert info.get("raised", {}) == raised
