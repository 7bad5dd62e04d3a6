"""Decomposed rotary embeddings raised to kiln.rotary_embedding
(kiln-raise-rotary): each exporter spelling (rotate-half by Slice or Split,
GPT-J's interleaved pairs, partial rotary, tables computed from positions
or gathered from a cache, f16, symbolic batch and sequence) is raised,
counted by `kiln inspect --json`'s "raised", and matches onnxruntime on cpu
and under the GPU-kernel simulator; spellings that only look alike are not
raised and still match."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, TOLERANCES, kiln, normwise_error,
                      run_kiln, run_reference)

TARGETS = [("cpu", "cpu"), ("cuda:sm_80", "sim")]
B, H, S, D = 2, 3, 7, 16
MAX_POSITIONS = 32


class Graph:
    """A small ONNX graph built node by node, inputs named as given."""

    def __init__(self, dtype=np.float32):
        self.dtype = dtype
        self.nodes, self.consts, self.n = [], [], 0

    def const(self, value, dtype=None):
        self.n += 1
        name = f"c{self.n}"
        self.consts.append(numpy_helper.from_array(
            np.asarray(value, dtype or self.dtype), name))
        return name

    def ints(self, *values):
        return self.const(list(values), np.int64)

    def __call__(self, op, *inputs, outputs=1, **attrs):
        names = []
        for _ in range(outputs):
            self.n += 1
            names.append(f"t{self.n}")
        self.nodes.append(helper.make_node(op, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def save(self, path, inputs, y, y_shape):
        """`inputs`: (name, element type, shape) of each graph input."""
        self.nodes[-1].output[0] = "y"
        for node in self.nodes:
            node.input[:] = ["y" if i == y else i for i in node.input]
        graph = helper.make_graph(
            self.nodes, "g",
            [helper.make_tensor_value_info(*i) for i in inputs],
            [helper.make_tensor_value_info("y", inputs[0][1], y_shape)],
            self.consts)
        onnx.save(helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def frequencies(half, positions):
    """[positions, half] angles, LLaMA's base."""
    inv = 10000.0 ** (-np.arange(half) / half)
    return np.outer(np.arange(positions), inv)


def rotate_half_slices(g, x, r):  # cat(-x[..., r:2r], x[..., :r])
    x1 = g("Slice", x, g.ints(0), g.ints(r), g.ints(-1))
    x2 = g("Slice", x, g.ints(r), g.ints(2 * r), g.ints(-1))
    return g("Concat", g("Neg", x2), x1, axis=-1)


def rotate_half_split(g, x, r):  # Split into halves
    x1, x2 = g("Split", x, g.ints(r, r), axis=-1, outputs=2)
    return g("Concat", g("Neg", x2), x1, axis=-1)


def rotate_every_two(g, x, r):  # stack(-x[..., 1::2], x[..., ::2]).flatten(-2)
    x1 = g("Slice", x, g.ints(0), g.ints(2 * r), g.ints(-1), g.ints(2))
    x2 = g("Slice", x, g.ints(1), g.ints(2 * r), g.ints(-1), g.ints(2))
    pairs = g("Concat", g("Unsqueeze", g("Neg", x2), g.ints(-1)),
              g("Unsqueeze", x1, g.ints(-1)), axis=-1)
    return g("Reshape", pairs, g.ints(0, 0, 0, 2 * r))


def computed_tables(g, r, positions=S):
    """cos/sin [S, 2r] of cat(freqs, freqs), freqs = inv_freq (x) positions
    computed in the graph (HF LLaMA since 4.38)."""
    inv = 10000.0 ** (-np.arange(r) / r)
    freqs = g("Transpose", g("MatMul", g.const(inv[:, None]),
                             g.const(np.arange(positions)[None, :])),
              perm=[1, 0])
    emb = g("Concat", freqs, freqs, axis=-1)
    return g("Cos", emb), g("Sin", emb)


def hf_computed(g, x, inputs):
    cos, sin = computed_tables(g, D // 2)
    return g("Add", g("Mul", x, cos),
             g("Mul", rotate_half_slices(g, x, D // 2), sin))


def gathered_cache(g, x, inputs):
    """cos/sin caches [MAX_POSITIONS, D] gathered by position ids, unsqueezed
    to [B, 1, S, D] (HF LLaMA before 4.38, GPT-NeoX)."""
    f = frequencies(D // 2, MAX_POSITIONS)
    emb = np.concatenate([f, f], -1)
    inputs.append(("position_ids", TensorProto.INT64, [B, S]))
    cos = g("Unsqueeze", g("Gather", g.const(np.cos(emb)), "position_ids"),
            g.ints(1))
    sin = g("Unsqueeze", g("Gather", g.const(np.sin(emb)), "position_ids"),
            g.ints(1))
    return g("Add", g("Mul", rotate_half_split(g, x, D // 2), sin),
             g("Mul", x, cos))


def gptj_interleaved(g, x, inputs):
    """Pairs (2i, 2i + 1); tables repeated twice each along the head."""
    f = frequencies(D // 2, S)

    def repeat2(table):
        t = g("Unsqueeze", g.const(table), g.ints(-1))
        return g("Reshape", g("Concat", t, t, axis=-1), g.ints(S, D))
    return g("Add", g("Mul", x, repeat2(np.cos(f))),
             g("Mul", rotate_every_two(g, x, D // 2), repeat2(np.sin(f))))


def partial_rotary(g, x, inputs):
    """GPT-NeoX with rotary_pct 0.5: the first half of each head rotated
    (pairs by halves of it), the rest passed through."""
    r = D // 4
    rot = g("Slice", x, g.ints(0), g.ints(2 * r), g.ints(-1))
    keep = g("Slice", x, g.ints(2 * r), g.ints(D), g.ints(-1))
    cos, sin = computed_tables(g, r)
    out = g("Add", g("Mul", rot, cos), g("Mul", rotate_half_slices(g, rot, r), sin))
    return g("Concat", out, keep, axis=-1)


def sign_in_table(g, x, inputs):
    """The same numbers with the minus folded into the sin table: not the
    spelling the pass raises (left alone, still correct)."""
    f = frequencies(D // 2, S)
    x1 = g("Slice", x, g.ints(0), g.ints(D // 2), g.ints(-1))
    x2 = g("Slice", x, g.ints(D // 2), g.ints(D), g.ints(-1))
    swapped = g("Concat", x2, x1, axis=-1)
    sin = g.const(np.concatenate([-np.sin(f), np.sin(f)], -1))
    cos = g.const(np.concatenate([np.cos(f), np.cos(f)], -1))
    return g("Add", g("Mul", x, cos), g("Mul", swapped, sin))


def angles_per_head(g, x, inputs):
    """Tables that differ per head: not a rotary embedding's [B, S] angles."""
    f = frequencies(D // 2, S)[None] * np.arange(1, H + 1)[:, None, None]
    emb = np.concatenate([f, f], -1)
    return g("Add", g("Mul", x, g.const(np.cos(emb))),
             g("Mul", rotate_half_slices(g, x, D // 2), g.const(np.sin(emb))))


def unpaired_angles(g, x, inputs):
    """cat(f, f + 1): the two elements of a pair rotate by different angles."""
    f = frequencies(D // 2, S)
    emb = np.concatenate([f, f + 1], -1)
    return g("Add", g("Mul", x, g.const(np.cos(emb))),
             g("Mul", rotate_half_slices(g, x, D // 2), g.const(np.sin(emb))))


def make(build, path, dtype=np.float32, x_shape=(B, H, S, D)):
    g = Graph(dtype)
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    inputs = [("x", elem, list(x_shape))]
    y = build(g, "x", inputs)
    g.save(path, inputs, y, list(x_shape))
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((B, H, S, D)).astype(dtype)}
    if len(inputs) > 1:
        feeds["position_ids"] = rng.integers(0, MAX_POSITIONS, (B, S))
    return feeds


def raised(tmp_path):
    info = json.loads(kiln("inspect", str(tmp_path / "model.kiln"),
                           "--json").stdout)
    return info.get("raised", {})


@pytest.mark.parametrize("target,device", TARGETS)
@pytest.mark.parametrize("build,count", [
    (hf_computed, 1),
    (gathered_cache, 1),
    (gptj_interleaved, 1),
    (partial_rotary, 1),
    (sign_in_table, 0),
    (angles_per_head, 0),
    (unpaired_angles, 0),
])
def test_rotary(build, count, target, device, tmp_path):
    path = tmp_path / "rope.onnx"
    feeds = make(build, path)
    want = run_reference(path, feeds)["y"]
    got = run_kiln(path, feeds, tmp_path, target, device)["y"]
    np.testing.assert_allclose(got, want, **TOLERANCES[np.dtype(np.float32)])
    assert raised(tmp_path).get("rotary_embedding", 0) == count


@pytest.mark.parametrize("target,device", TARGETS)
def test_f16_model(target, device, tmp_path):
    """An f16 export: f16 tables, raised, within f16 roundoff of
    onnxruntime (normwise, PRECISION_TOLERANCES["fp16"])."""
    path = tmp_path / "rope16.onnx"
    feeds = make(gathered_cache, path, np.float16)
    want = run_reference(path, feeds)["y"]
    got = run_kiln(path, feeds, tmp_path, target, device)["y"]
    assert got.dtype == np.float16
    assert normwise_error(got, want) <= PRECISION_TOLERANCES["fp16"]
    assert raised(tmp_path) == {"rotary_embedding": 1}


def test_symbolic_dims(tmp_path):
    """Symbolic batch and sequence: positions from the input's shape
    (Shape, Gather, Range), tables computed; one artifact runs two sizes."""
    g = Graph()
    inputs = [("x", TensorProto.FLOAT, ["batch", H, "seq", D])]
    seq = g("Gather", g("Shape", "x"), g.const(2, np.int64), axis=0)
    positions = g("Cast", g("Range", g.const(0, np.int64), seq,
                            g.const(1, np.int64)), to=TensorProto.FLOAT)
    r = D // 2
    inv = g.const((10000.0 ** (-np.arange(r) / r))[:, None])
    freqs = g("Transpose", g("MatMul", inv, g("Unsqueeze", positions, g.ints(0))),
              perm=[1, 0])
    emb = g("Concat", freqs, freqs, axis=-1)
    y = g("Add", g("Mul", "x", g("Cos", emb)),
          g("Mul", rotate_half_slices(g, "x", r), g("Sin", emb)))
    path = tmp_path / "rope_dyn.onnx"
    g.save(path, inputs, y, ["batch", H, "seq", D])
    artifact = str(tmp_path / "model.kiln")
    kiln("compile", str(path), "-o", artifact, "--dim", "batch=1..4",
         "--dim", "seq=1..64")
    assert raised(tmp_path) == {"rotary_embedding": 1}
    rng = np.random.default_rng(5)
    for shape in [(1, H, 5, D), (3, H, 11, D)]:
        x = rng.standard_normal(shape).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        kiln("run", artifact, "--input", f"x=@{tmp_path / 'x.npy'}",
             "--output-dir", str(tmp_path / "out"))
        got = np.load(tmp_path / "out" / "y.npy")
        want = run_reference(path, {"x": x})["y"]
        np.testing.assert_allclose(got, want, **TOLERANCES[np.dtype(np.float32)])
