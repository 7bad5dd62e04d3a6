"""onnxruntime's contrib ops (domain com.microsoft, and its own ops in the
ONNX domain) against onnxruntime's CPU kernels, on the cpu and under the
GPU-kernel simulator: the fused normalizations and activations its
transformer optimizer writes, one node at a time with every optional input
and output, then the committed BERT and GPT-2 fixtures rewritten by that
optimizer. BiasAdd has no CPU kernel in onnxruntime: NumPy is its
reference."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, TOLERANCES, kiln, run_kiln, run_reference

DEVICES = [("cpu", "cpu"), ("cuda:sm_80,sm_90a", "sim")]
FIXTURES = os.path.join(ROOT, "test", "fixtures", "transformers")


def node_model(path, op, inputs, outputs, domain="com.microsoft", opset=17,
               **attrs):
    """One node: `inputs` name -> array (None: omitted, "" in the node),
    `outputs` the names it produces ("" for one not asked for)."""
    names = [name if value is not None else "" for name, value in inputs]
    node = helper.make_node(op, names, outputs, domain=domain, **attrs)
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape)
         for name, value in inputs if value is not None],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
         for name in outputs if name])
    imports = [helper.make_opsetid("", opset)]
    if domain == "com.microsoft":
        imports.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=imports)
    onnx.save(model, str(path))
    return {name: value for name, value in inputs if value is not None}


def check(path, feeds, tmp_path, device, want=None):
    target, dev = device
    tmp_path.mkdir(parents=True, exist_ok=True)
    got = run_kiln(path, feeds, tmp_path, target=target, device=dev)
    want = want or run_reference(path, feeds)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], **TOLERANCES[
            np.dtype(np.float32)], err_msg=name)


rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


X, SKIP = f32(2, 5, 16), f32(2, 5, 16)
GAMMA, BETA, BIAS = f32(16), f32(16), f32(16)

# (id, op, inputs, outputs, attributes)
CASES = [
    ("skip-ln", "SkipLayerNormalization",
     [("x", X), ("skip", SKIP), ("gamma", GAMMA), ("beta", BETA),
      ("bias", BIAS)], ["y", "", "", "sum"], {}),
    ("skip-ln-2d-eps", "SkipLayerNormalization",
     [("x", X[0]), ("skip", SKIP[0]), ("gamma", GAMMA)], ["y"],
     {"epsilon": 1e-5}),
    ("skip-ln-no-beta-bias", "SkipLayerNormalization",
     [("x", X), ("skip", SKIP), ("gamma", GAMMA), ("beta", None),
      ("bias", BIAS)], ["y", "", "", "sum"], {}),
    ("skip-ln-stats", "SkipLayerNormalization",
     [("x", X), ("skip", SKIP), ("gamma", GAMMA), ("beta", BETA)],
     ["y", "mean", "inv_std", "sum"], {"epsilon": 1e-6}),
    ("skip-rms", "SkipSimplifiedLayerNormalization",
     [("x", X), ("skip", SKIP), ("gamma", GAMMA), ("bias", BIAS)],
     ["y", "", "", "sum"], {}),
    ("skip-rms-eps", "SkipSimplifiedLayerNormalization",
     [("x", X), ("skip", SKIP), ("gamma", GAMMA)], ["y"], {"epsilon": 1e-6}),
    ("gelu", "Gelu", [("x", X)], ["y"], {}),
    ("bias-gelu", "BiasGelu", [("x", X), ("bias", BIAS)], ["y"], {}),
    ("fast-gelu", "FastGelu", [("x", X)], ["y"], {}),
    ("fast-gelu-bias", "FastGelu", [("x", X), ("bias", BIAS)], ["y"], {}),
    ("quick-gelu", "QuickGelu", [("x", X)], ["y"], {}),
    ("quick-gelu-alpha", "QuickGelu", [("x", X)], ["y"], {"alpha": 1.0}),
]


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_contrib_op(case, device, tmp_path):
    _, op, inputs, outputs, attrs = case
    path = tmp_path / "model.onnx"
    feeds = node_model(path, op, inputs, outputs, **attrs)
    check(path, feeds, tmp_path, device)


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
def test_onnx_domain_contrib_ops(device, tmp_path):
    """onnxruntime's SimplifiedLayerNormalization, and LayerNormalization in
    a model of opset 14 (onnxruntime's before it was standard)."""
    path = tmp_path / "rms.onnx"
    feeds = node_model(path, "SimplifiedLayerNormalization",
                       [("x", X), ("gamma", GAMMA)], ["y"], domain="")
    check(path, feeds, tmp_path / "rms", device)
    path = tmp_path / "ln.onnx"
    feeds = node_model(path, "LayerNormalization",
                       [("x", X), ("gamma", GAMMA), ("beta", BETA)], ["y"],
                       domain="", opset=14, epsilon=1e-6)
    check(path, feeds, tmp_path / "ln", device)


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
def test_bias_add(device, tmp_path):
    path = tmp_path / "model.onnx"
    feeds = node_model(path, "BiasAdd",
                       [("x", X), ("bias", BIAS), ("skip", SKIP)], ["y"])
    check(path, feeds, tmp_path, device, want={"y": X + BIAS + SKIP})


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("fusions", ["norms-only", "default"])
@pytest.mark.parametrize("name,model_type", [("bert", "bert"),
                                             ("gpt2", "gpt2")])
def test_optimized_fixtures(name, model_type, fusions, device, tmp_path):
    """The fixtures as onnxruntime's transformer optimizer rewrites them:
    SkipLayerNormalization, BiasGelu (BERT) and FastGelu (GPT-2) in every
    layer; with its default fusions, BERT's Attention too (its
    EmbedLayerNormalization fusion does not match this export; the op is
    tested alone)."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions
    options = FusionOptions(model_type)
    if fusions == "norms-only":
        options.enable_attention = False
        options.enable_embed_layer_norm = False
    source = os.path.join(FIXTURES, name, "model.onnx")
    optimized = optimizer.optimize_model(
        source, model_type=model_type, num_heads=4, hidden_size=64,
        optimization_options=options, opt_level=0)
    ops = {(n.domain, n.op_type) for n in optimized.model.graph.node}
    assert ("com.microsoft", "SkipLayerNormalization") in ops
    assert ("com.microsoft", "BiasGelu" if name == "bert" else "FastGelu") in ops
    if fusions == "default" and name == "bert":
        assert ("com.microsoft", "Attention") in ops
    path = tmp_path / "optimized.onnx"
    optimized.save_model_to_file(str(path))
    feeds = {}
    for graph_input in onnx.load(str(path)).graph.input:
        feeds[graph_input.name] = np.load(os.path.join(
            FIXTURES, name, f"in_{graph_input.name}.npy"))
    check(path, feeds, tmp_path, device)


ROTARY = [  # (layout, interleaved, rotary_embedding_dim, position_ids)
    ("3d", 0, 0, "2d"), ("3d", 1, 4, "offset"), ("4d", 0, 4, "2d"),
    ("4d", 1, 0, "offset"),
]


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("layout,interleaved,rotary,positions", ROTARY,
                         ids=["-".join(map(str, r)) for r in ROTARY])
def test_rotary_embedding(layout, interleaved, rotary, positions, device,
                          tmp_path):
    """RotaryEmbedding (com.microsoft): input, position_ids, cos_cache,
    sin_cache; [B, S, hidden] with num_heads or [B, H, S, D]; partial
    rotary dims; position_ids per batch and position, or a [1] offset."""
    b, s, h, d = 2, 5, 3, 8
    half = (rotary or d) // 2
    cos, sin = f32(16, half), f32(16, half)
    x = f32(b, s, h * d) if layout == "3d" else f32(b, h, s, d)
    pos = (rng.integers(0, 16, (b, s)) if positions == "2d"
           else np.array([3])).astype(np.int64)
    attrs = {"interleaved": interleaved, "num_heads": h}
    if rotary:
        attrs["rotary_embedding_dim"] = rotary
    node = helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"],
                            ["y"], domain="com.microsoft", **attrs)
    graph = helper.make_graph([node], "rotary", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
        helper.make_tensor_value_info("pos", TensorProto.INT64, pos.shape),
        helper.make_tensor_value_info("cos", TensorProto.FLOAT, cos.shape),
        helper.make_tensor_value_info("sin", TensorProto.FLOAT, sin.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]),
        str(path))
    check(path, {"x": x, "pos": pos, "cos": cos, "sin": sin}, tmp_path,
          device)


ATTENTION = [  # (id, mask_index, attention_bias, attributes)
    ("plain", None, False, {}),
    ("end", "end", False, {}),
    ("end-start", "end-start", False, {"scale": 0.3}),
    ("raw-2d", "2d", False, {}),
    ("raw-3d-bias", "3d", True, {"mask_filter_value": -1000.0}),
    ("causal", "2d", False, {"unidirectional": 1}),
    ("sizes", None, False, {"qkv_hidden_sizes": [8, 8, 16]}),
]


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("case", ATTENTION, ids=[c[0] for c in ATTENTION])
def test_attention(case, device, tmp_path):
    """Attention (com.microsoft): the packed projection, every mask_index
    form, attention_bias, unidirectional, qkv_hidden_sizes."""
    _, mask_kind, with_bias, attrs = case
    b, s, hidden, heads = 2, 6, 16, 2
    sizes = attrs.get("qkv_hidden_sizes", [hidden] * 3)
    x, w, bias = f32(b, s, hidden), f32(hidden, sum(sizes)) * 0.3, \
        f32(sum(sizes))
    feeds = {"x": x, "w": w, "bias": bias}
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, w.shape),
              helper.make_tensor_value_info("bias", TensorProto.FLOAT,
                                            bias.shape)]
    names = ["x", "w", "bias", "", "", ""]
    if mask_kind:
        mask = {"end": np.array([4, 6]),
                "end-start": np.array([5, 6, 1, 0]),
                "2d": (rng.random((b, s)) > 0.3),
                "3d": (rng.random((b, s, s)) > 0.3)}[mask_kind]
        mask = mask.astype(np.int32)
        if mask_kind in ("2d", "3d"):
            mask[..., 0] = 1  # no row without a key
        feeds["mask"] = mask
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.INT32,
                                                    mask.shape))
        names[3] = "mask"
    if with_bias:
        feeds["extra"] = f32(1, heads, s, s)
        inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT,
                                                    (1, heads, s, s)))
        names[5] = "extra"
    while names and names[-1] == "":
        names.pop()
    node = helper.make_node("Attention", names, ["y"], domain="com.microsoft",
                            num_heads=heads, **attrs)
    graph = helper.make_graph([node], "attention", inputs, [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]),
        str(path))
    check(path, feeds, tmp_path, device)


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("segments,mask,positions",
                         [(True, True, False), (False, False, True)],
                         ids=["segments-mask", "position-ids"])
def test_embed_layer_norm(segments, mask, positions, device, tmp_path):
    b, s, h, vocab = 2, 5, 8, 20
    ids = rng.integers(0, vocab, (b, s)).astype(np.int32)
    tables = {"word": f32(vocab, h), "pos": f32(16, h), "seg": f32(2, h),
              "gamma": GAMMA[:h], "beta": BETA[:h]}
    feeds = {"ids": ids}
    names = ["ids", "", "word", "pos", "", "gamma", "beta"]
    if segments:
        feeds["segment_ids"] = rng.integers(0, 2, (b, s)).astype(np.int32)
        names[1], names[4] = "segment_ids", "seg"
    if mask:
        feeds["mask"] = np.array([[1, 1, 1, 0, 0], [1] * 5], np.int32)
        names.append("mask")
    if positions:
        feeds["position_ids"] = rng.integers(0, 16, (b, s)).astype(np.int32)
        names += [""] * (8 - len(names)) + ["position_ids"]
    node = helper.make_node("EmbedLayerNormalization", names,
                            ["y", "mask_index", "sum"], domain="com.microsoft")
    graph = helper.make_graph(
        [node], "embed",
        [helper.make_tensor_value_info(n, TensorProto.INT32, v.shape)
         for n, v in feeds.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("mask_index", TensorProto.INT32, None),
         helper.make_tensor_value_info("sum", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, n) for n, v in tables.items()
         if n in names])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]),
        str(path))
    target, dev = device
    got = run_kiln(path, feeds, tmp_path, target=target, device=dev)
    want = run_reference(path, feeds)
    np.testing.assert_array_equal(got["mask_index"], want["mask_index"])
    for name in ("y", "sum"):
        np.testing.assert_allclose(got[name], want[name], **TOLERANCES[
            np.dtype(np.float32)], err_msg=name)


GQA = [  # (id, S, past, seqlens_k, attributes, packed QKV)
    ("prompt", 5, 0, [4, 4], {}, False),
    ("prompt-padded", 5, 0, [2, 4], {}, False),
    ("decode", 1, 4, [4, 4], {}, False),
    ("decode-padded", 1, 4, [2, 4], {}, False),
    # onnxruntime takes a chunk of several tokens after a past at batch 1.
    ("chunk-window-softcap", 3, 4, [6], {"local_window_size": 3,
                                         "softcap": 2.0}, False),
    ("rotary-packed", 4, 2, [5], {"do_rotary": 1}, True),
    ("rotary-interleaved", 5, 0, [4, 3], {"do_rotary": 1,
                                          "rotary_interleaved": 1,
                                          "scale": 0.2}, False),
]


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("case", GQA, ids=[c[0] for c in GQA])
def test_group_query_attention(case, device, tmp_path):
    """GroupQueryAttention (com.microsoft): 4 query heads over 2 KV heads,
    a prompt, decode steps over a past, padded batches (seqlens_k), a
    local window, softcap, rotary, packed QKV; the output and the present
    keys and values."""
    _, s, past, seqlens, attrs, packed = case
    # onnxruntime's rotary wants head sizes that are multiples of 16.
    b, heads, kv_heads = len(seqlens), 4, 2
    h = 16 if attrs.get("do_rotary") else 8
    feeds = {}
    names = []
    if packed:
        feeds["q"] = f32(b, s, (heads + 2 * kv_heads) * h)
        names += ["q", "", ""]
    else:
        feeds["q"], feeds["k"], feeds["v"] = (
            f32(b, s, heads * h), f32(b, s, kv_heads * h),
            f32(b, s, kv_heads * h))
        names += ["q", "k", "v"]
    feeds["past_k"] = f32(b, kv_heads, past, h)
    feeds["past_v"] = f32(b, kv_heads, past, h)
    feeds["seqlens"] = np.array(seqlens, np.int32)
    feeds["total"] = np.array(past + s, np.int32)
    names += ["past_k", "past_v", "seqlens", "total"]
    if attrs.get("do_rotary"):
        feeds["cos"], feeds["sin"] = f32(16, h // 2), f32(16, h // 2)
        names += ["cos", "sin"]
    types = {"seqlens": TensorProto.INT32, "total": TensorProto.INT32}
    node = helper.make_node("GroupQueryAttention", names,
                            ["y", "present_k", "present_v"],
                            domain="com.microsoft", num_heads=heads,
                            kv_num_heads=kv_heads, **attrs)
    graph = helper.make_graph(
        [node], "gqa",
        [helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT),
                                       feeds[n].shape) for n in feeds],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
         for n in ["y", "present_k", "present_v"]])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]),
        str(path))
    check(path, feeds, tmp_path, device)


MHA = [  # (id, key layout, bias, key_padding_mask, attention_bias, past,
       #  attributes)
    ("plain", "3d", False, None, False, 0, {}),
    ("bias-end-mask", "3d", True, "end", False, 0, {}),
    ("raw-mask-attn-bias", "3d", False, "2d", True, 0,
     {"mask_filter_value": -1000.0}),
    ("past-causal", "3d", False, None, False, 3, {"unidirectional": 1}),
    ("split-heads-scale", "4d", False, None, False, 0, {"scale": 0.4}),
]


@pytest.mark.parametrize("device", DEVICES, ids=[d for _, d in DEVICES])
@pytest.mark.parametrize("case", MHA, ids=[c[0] for c in MHA])
def test_multi_head_attention(case, device, tmp_path):
    """MultiHeadAttention (com.microsoft): Q, K, V 3-D or K, V split into
    heads, the bias, key_padding_mask, attention_bias, a past with the
    present outputs, unidirectional."""
    _, layout, with_bias, mask_kind, with_extra, past, attrs = case
    # Cross attention (6 keys for 4 queries) without a past; self attention
    # over a past.
    b, s, l, heads, h = 2, 4, 4 if past else 6, 2, 8
    d = heads * h
    feeds = {"q": f32(b, s, d)}
    if layout == "3d":
        feeds["k"], feeds["v"] = f32(b, l, d), f32(b, l, d)
    else:
        feeds["k"], feeds["v"] = f32(b, heads, l, h), f32(b, heads, l, h)
    names = ["q", "k", "v"]
    if with_bias:
        feeds["bias"] = f32(3 * d)
        names.append("bias")
    keys = l + past
    if mask_kind:
        names += [""] * (4 - len(names)) + ["mask"]
        feeds["mask"] = (np.array([3, keys]) if mask_kind == "end" else
                         (rng.random((b, keys)) > 0.3)).astype(np.int32)
        if mask_kind == "2d":
            feeds["mask"][:, 0] = 1
    if with_extra:
        names += [""] * (5 - len(names)) + ["extra"]
        feeds["extra"] = f32(1, heads, s, keys)
    outputs = ["y"]
    if past:
        names += [""] * (6 - len(names)) + ["past_k", "past_v"]
        feeds["past_k"], feeds["past_v"] = f32(b, heads, past, h), \
            f32(b, heads, past, h)
        outputs += ["present_k", "present_v"]
    types = {"mask": TensorProto.INT32}
    node = helper.make_node("MultiHeadAttention", names, outputs,
                            domain="com.microsoft", num_heads=heads, **attrs)
    graph = helper.make_graph(
        [node], "mha",
        [helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT),
                                       feeds[n].shape) for n in feeds],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
         for n in outputs])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]),
        str(path))
    check(path, feeds, tmp_path, device)


def test_unsupported_contrib_ops_say_so(tmp_path):
    path = tmp_path / "model.onnx"
    node_model(path, "DecoderMaskedMultiHeadAttention", [("x", X)], ["y"])
    result = kiln("compile", str(path), "-o", str(tmp_path / "m.kiln"),
                  check=False)
    assert result.returncode == 1
    assert ("(op 'DecoderMaskedMultiHeadAttention', domain 'com.microsoft', "
            "opset 1): this onnxruntime contrib op is not supported; "
            "docs/onnx-coverage.md lists the com.microsoft ops Kiln imports"
            in result.stderr), result.stderr
    node_model(path, "Foo", [("x", X)], ["y"], domain="org.example")
    result = kiln("compile", str(path), "-o", str(tmp_path / "m.kiln"),
                  check=False)
    assert result.returncode == 1
    assert ("ops of domain 'org.example' are not supported; Kiln imports the "
            "ai.onnx domain and onnxruntime's com.microsoft ops"
            in result.stderr), result.stderr
