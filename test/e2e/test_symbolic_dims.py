"""Symbolic dims (`kiln compile --dim NAME=MIN..MAX`): one artifact runs
every shape in the bounds. A block of a transformer layer (LayerNorm,
projections, GELU, softmax, a residual add) with symbolic batch and
sequence is compiled once per target and run at several shapes against
onnxruntime: the CPU artifact directly, the cuda one under the simulator.
Inputs outside the bounds, or two inputs that disagree on a dim, are
refused with an error naming the input and the dim."""
import json
import os
import re
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import (PRECISION_TOLERANCES, TOLERANCES, kiln, normwise_error,
                      run_reference)
from test_sass import count, needs_ptxas, sass_by_function

SHAPES = [(1, 1), (2, 5), (4, 16), (3, 7)]
BOUNDS = ["--dim", "batch=1..4", "--dim", "seq=1..16"]


def block_model(path):
    rng = np.random.default_rng(7)
    weights = {
        "w1": rng.standard_normal((64, 32)).astype(np.float32) / 8,
        "b1": rng.standard_normal((32,)).astype(np.float32),
        "w2": rng.standard_normal((32, 16)).astype(np.float32) / 8,
        "scale": rng.standard_normal((64,)).astype(np.float32),
    }
    nodes = [
        helper.make_node("LayerNormalization", ["x", "scale"], ["n"], axis=-1),
        helper.make_node("MatMul", ["n", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Gelu", ["a1"], ["g"]),
        helper.make_node("MatMul", ["g", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "residual"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["batch", "seq", 64]),
         helper.make_tensor_value_info("residual", TensorProto.FLOAT,
                                       ["batch", "seq", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                       ["batch", "seq", 16])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 20)])
    onnx.save(model, path)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("symbolic") / "block.onnx"
    block_model(str(path))
    return path


def inputs_for(batch, seq):
    rng = np.random.default_rng(batch * 100 + seq)
    return {"x": rng.standard_normal((batch, seq, 64)).astype(np.float32),
            "residual": rng.standard_normal((batch, seq, 16))
                           .astype(np.float32)}


def run(artifact, inputs, tmp_path, device, check=True):
    args = ["run", str(artifact), "--device", device, "--output-dir",
            str(tmp_path / "out")]
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}=@{tmp_path / (name + '.npy')}"]
    return kiln(*args, check=check)


@pytest.mark.parametrize("target,device", [("cpu", "cpu"),
                                           ("cuda:sm_80,sm_90a", "sim")])
def test_one_artifact_runs_every_shape_in_bounds(model, target, device,
                                                 tmp_path):
    artifact = tmp_path / "block.kiln"
    kiln("compile", str(model), "-o", str(artifact), "--target", target,
         "--embed-kernel-ir", *BOUNDS)
    inspect = kiln("inspect", str(artifact)).stdout
    assert "f32[batch,seq,64]" in inspect and "batch" in inspect
    if device == "sim":
        # Elementwise steps over symbolic rows take the vector strategy (the
        # grid computed from the sizes per run), not the generic one.
        kernels = json.loads(kiln("inspect", str(artifact), "--json").stdout)["kernels"]
        assert sum(k["strategy"] == "elementwise" for k in kernels) >= 4, kernels
    for batch, seq in SHAPES:
        inputs = inputs_for(batch, seq)
        run(artifact, inputs, tmp_path, device)
        got = np.load(tmp_path / "out" / "y.npy")
        want = run_reference(model, inputs)["y"]
        assert got.shape == want.shape == (batch, seq, 16)
        np.testing.assert_allclose(got, want, err_msg=f"{batch}x{seq}",
                                   **TOLERANCES[want.dtype])


def test_shapes_outside_the_bounds_are_refused(model, tmp_path):
    artifact = tmp_path / "block.kiln"
    kiln("compile", str(model), "-o", str(artifact), *BOUNDS)
    result = run(artifact, inputs_for(5, 3), tmp_path, "cpu", check=False)
    assert result.returncode == 1
    assert ("dim 'batch' is 5, outside the bounds 1..4 it was compiled for"
            in result.stderr), result.stderr
    assert not (tmp_path / "out" / "y.npy").exists()

    inputs = inputs_for(2, 5)
    inputs["residual"] = inputs["residual"][:, :3]
    result = run(artifact, inputs, tmp_path, "cpu", check=False)
    assert result.returncode == 1
    assert ("input #1 'residual' must be f32[batch=1..4,seq=1..16,16], got "
            "f32[2,3,16]: dim 'seq' is 5 in input #0 'x' but 3 here"
            in result.stderr), result.stderr


def test_ops_without_symbolic_support_say_so(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Hardmax", ["x"], ["y"])], "hardmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["batch", 4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                       ["batch", 4, 2])])
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    result = kiln("compile", str(path), "-o", str(tmp_path / "f.kiln"),
                  "--dim", "batch=1..8", check=False)
    assert result.returncode == 1
    assert "op 'Hardmax' is not supported with symbolic dims yet" in \
        result.stderr
    assert not (tmp_path / "f.kiln").exists()
    # Given a value, the same model compiles.
    kiln("compile", str(path), "-o", str(tmp_path / "f.kiln"),
         "--dim", "batch=8")


def kv_cache_model(path):
    """Attention over a cache of past keys and values plus the new ones:
    Concat along the symbolic `past` and `seq` dims."""
    nodes = [
        helper.make_node("Concat", ["past", "new"], ["cat"], axis=2),
        helper.make_node("Transpose", ["cat"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Softmax", ["s"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "cat"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "kv",
        [helper.make_tensor_value_info("past", TensorProto.FLOAT,
                                       ["batch", 2, "past", 4]),
         helper.make_tensor_value_info("new", TensorProto.FLOAT,
                                       ["batch", 2, "seq", 4]),
         helper.make_tensor_value_info("q", TensorProto.FLOAT,
                                       ["batch", 2, "seq", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                       ["batch", 2, "seq", 4]),
         helper.make_tensor_value_info("cat", TensorProto.FLOAT,
                                       ["batch", 2, "total", 4])])
    onnx.save(helper.make_model(graph,
                                opset_imports=[helper.make_opsetid("", 17)]),
              path)


@pytest.mark.parametrize("target,device", [("cpu", "cpu"),
                                           ("cuda:sm_80,sm_90a", "sim")])
def test_a_cache_grows_along_a_symbolic_dim(target, device, tmp_path):
    model = tmp_path / "kv.onnx"
    kv_cache_model(str(model))
    artifact = tmp_path / "kv.kiln"
    kiln("compile", str(model), "-o", str(artifact), "--target", target,
         "--embed-kernel-ir", "--dim", "batch=1..2", "--dim", "past=1..8",
         "--dim", "seq=1..4")
    for batch, past, seq in [(1, 3, 1), (2, 8, 4), (2, 1, 2)]:
        rng = np.random.default_rng(batch * 100 + past * 10 + seq)
        inputs = {
            "past": rng.standard_normal((batch, 2, past, 4)).astype(np.float32),
            "new": rng.standard_normal((batch, 2, seq, 4)).astype(np.float32),
            "q": rng.standard_normal((batch, 2, seq, 4)).astype(np.float32),
        }
        run(artifact, inputs, tmp_path, device)
        want = run_reference(model, inputs)
        for name in ("y", "cat"):
            got = np.load(tmp_path / "out" / f"{name}.npy")
            assert got.shape == want[name].shape
            np.testing.assert_allclose(got, want[name],
                                       err_msg=f"{name} {batch}/{past}/{seq}",
                                       **TOLERANCES[want[name].dtype])


@pytest.mark.parametrize("target,device", [("cpu", "cpu"),
                                           ("cuda:sm_80,sm_90a", "sim")])
def test_reductions_over_a_symbolic_dim(target, device, tmp_path):
    """Mean pooling over tokens: the mean divides by a count known at run
    time."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1]),
        helper.make_node("ReduceSum", ["x", "axes"], ["sum"], keepdims=0),
        helper.make_node("ReduceMax", ["x"], ["max"], axes=[-2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["batch", "seq", 8])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT,
                                       ["batch", 1, 8]),
         helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_value_info("max", TensorProto.FLOAT,
                                       ["batch", 8])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = tmp_path / "pool.onnx"
    onnx.save(helper.make_model(graph,
                                opset_imports=[helper.make_opsetid("", 17)]),
              str(model))
    artifact = tmp_path / "pool.kiln"
    kiln("compile", str(model), "-o", str(artifact), "--target", target,
         "--embed-kernel-ir", "--dim", "batch=1..3", "--dim", "seq=1..9")
    for batch, seq in [(1, 1), (3, 9), (2, 5)]:
        x = np.random.default_rng(batch * 10 + seq).standard_normal(
            (batch, seq, 8)).astype(np.float32)
        run(artifact, {"x": x}, tmp_path, device)
        want = run_reference(model, {"x": x})
        for name in ("mean", "sum", "max"):
            np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.npy"),
                                       want[name], err_msg=name,
                                       **TOLERANCES[want[name].dtype])


@pytest.mark.parametrize("target,device", [("cpu", "cpu"),
                                           ("cuda:sm_80,sm_90a", "sim")])
def test_cumulative_sums_over_a_symbolic_dim(target, device, tmp_path):
    """Positions from an attention mask of run-time length, as exports of
    decoders compute them (cumsum(mask) - 1, masked), and a reversed,
    exclusive float scan."""
    nodes = [
        helper.make_node("CumSum", ["mask", "axis"], ["count"]),
        helper.make_node("Sub", ["count", "one"], ["from0"]),
        helper.make_node("Mul", ["from0", "mask"], ["positions"]),
        helper.make_node("CumSum", ["x", "axis"], ["rest"], reverse=1,
                         exclusive=1),
    ]
    graph = helper.make_graph(
        nodes, "cumsum",
        [helper.make_tensor_value_info("mask", TensorProto.INT64,
                                       ["batch", "keys"]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["batch", "keys"])],
        [helper.make_tensor_value_info("positions", TensorProto.INT64,
                                       ["batch", "keys"]),
         helper.make_tensor_value_info("rest", TensorProto.FLOAT,
                                       ["batch", "keys"])],
        [numpy_helper.from_array(np.array(1, np.int64), "axis"),
         numpy_helper.from_array(np.array(1, np.int64), "one")])
    model = tmp_path / "cumsum.onnx"
    onnx.save(helper.make_model(graph,
                                opset_imports=[helper.make_opsetid("", 17)]),
              str(model))
    artifact = tmp_path / "cumsum.kiln"
    kiln("compile", str(model), "-o", str(artifact), "--target", target,
         "--embed-kernel-ir", "--dim", "batch=1..3", "--dim", "keys=1..40")
    for batch, keys in [(1, 1), (3, 40), (2, 17)]:
        rng = np.random.default_rng(batch * 100 + keys)
        mask = np.ones((batch, keys), np.int64)
        mask[0, :keys // 3] = 0  # left padding
        x = rng.standard_normal((batch, keys)).astype(np.float32)
        run(artifact, {"mask": mask, "x": x}, tmp_path, device)
        want = run_reference(model, {"mask": mask, "x": x})
        np.testing.assert_array_equal(
            np.load(tmp_path / "out" / "positions.npy"), want["positions"])
        np.testing.assert_allclose(np.load(tmp_path / "out" / "rest.npy"),
                                   want["rest"], **TOLERANCES[np.dtype(np.float32)])


def test_the_runner_cycles_input_shapes(model, tmp_path):
    """kiln-runner --cycle runs several input sets of other shapes in turn
    (what the GPU bundle measures the CUDA graph cache with)."""
    artifact = tmp_path / "block.kiln"
    kiln("compile", str(model), "-o", str(artifact), *BOUNDS)
    runner = os.path.join(os.environ["KILN_BUILD_DIR"], "bin", "kiln-runner")
    args = [runner, str(artifact), "--device", "cpu", "--repeat", "3"]
    for i, (batch, seq) in enumerate(SHAPES):
        folder = tmp_path / f"set{i}"
        folder.mkdir()
        for name, value in inputs_for(batch, seq).items():
            np.save(folder / f"in_{name}.npy", value)
            if i == 0:
                args += ["--input", f"{name}=@{folder / f'in_{name}.npy'}"]
        if i:
            args += ["--cycle", str(folder)]
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"timing: cycle {len(SHAPES)} sets [0-9.]+ ms per run "
                     r"\(p50 of 3 rounds, device cpu\)", result.stdout), \
        result.stdout
    # A set that does not fit the bounds is an error naming it.
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, value in inputs_for(5, 3).items():
        np.save(bad / f"in_{name}.npy", value)
    result = subprocess.run(args + ["--cycle", str(bad)], capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert (f"cycle set {len(SHAPES)}: input #0 'x' must be "
            "f32[batch=1..4,seq=1..16,64], got f32[5,3,64]: dim 'batch' is 5, "
            "outside the bounds" in result.stderr), result.stderr


def attention_model(path, mask=None, past=False, keys="keys"):
    """An opset-23 Attention node over symbolic batch, query and key
    counts: grouped-query heads (4 over 2), causal (upper-left), a value
    head wider than the query's; `mask`: "float" (additive, per batch row
    and key) or "bool" (per query and key); `past`: a KV cache input (and
    the present outputs); `keys`: the name of K's and V's new-key dim."""
    f = TensorProto.FLOAT
    vi = helper.make_tensor_value_info
    inputs = [vi("q", f, ["batch", 4, "seq", 16]),
              vi("k", f, ["batch", 2, keys, 16]),
              vi("v", f, ["batch", 2, keys, 24])]
    names = ["q", "k", "v"]
    if mask == "float":
        inputs.append(vi("mask", f, ["batch", 1, 1, "keys"]))
    elif mask == "bool":
        inputs.append(vi("mask", TensorProto.BOOL, ["seq", "keys"]))
    names.append("mask" if mask else "")
    if past:
        inputs += [vi("past_k", f, ["batch", 2, "past", 16]),
                   vi("past_v", f, ["batch", 2, "past", 24])]
        names += ["past_k", "past_v"]
    while not names[-1]:
        names.pop()
    outputs = [vi("y", f, ["batch", 4, "seq", 24])]
    if past:
        outputs += [vi("present_k", f, ["batch", 2, "total", 16]),
                    vi("present_v", f, ["batch", 2, "total", 24])]
    graph = helper.make_graph(
        [helper.make_node("Attention", names, [o.name for o in outputs],
                          is_causal=1)],
        "attention", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    onnx.save(model, path)


def attention_reference(q, k, v, mask=None, past_k=None, past_v=None):
    if past_k is not None:
        k = np.concatenate([past_k, k], axis=2)
        v = np.concatenate([past_v, v], axis=2)
    past = 0 if past_k is None else past_k.shape[2]
    k = np.repeat(k.astype(np.float64), 2, axis=1)
    v = np.repeat(v.astype(np.float64), 2, axis=1)
    scores = q.astype(np.float64) @ k.transpose(0, 1, 3, 2) / 4.0
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if mask.dtype == bool \
            else scores + mask
    seq, keys = q.shape[2], k.shape[2]
    allowed = np.arange(keys)[None, :] <= np.arange(seq)[:, None] + past
    scores = np.where(allowed, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    p = np.exp(scores - np.where(np.isfinite(top), top, 0))
    total = p.sum(axis=-1, keepdims=True)
    # A row whose keys are all masked gives 0, as the op says.
    return np.where(total > 0, p / np.where(total > 0, total, 1), 0) @ v


BOUNDS_ATTENTION = ["--dim", "batch=1..3", "--dim", "seq=1..40",
                    "--dim", "keys=1..40"]


@pytest.mark.parametrize("mask", [None, "float", "bool"])
def test_attention_with_symbolic_dims_is_one_cpu_kernel(mask, tmp_path):
    """The CPU runs kiln.attention with symbolic batch, query and key
    counts as one cpu-flash-attention kernel: counts that are not
    multiples of its key block, more queries than keys and fewer, an
    additive or a boolean mask over symbolic dims, and (with a mask) a
    query row that sees no key at all (its output is 0)."""
    model = tmp_path / "attention.onnx"
    attention_model(str(model), mask=mask)
    artifact = tmp_path / "attention.kiln"
    kiln("compile", str(model), "-o", str(artifact), *BOUNDS_ATTENTION)
    info = kiln("inspect", str(artifact), "--json").stdout
    assert '"strategy": "cpu-flash-attention"' in info, info
    for batch, seq, keys in [(1, 1, 1), (2, 17, 17), (3, 40, 23), (1, 5, 40)]:
        rng = np.random.default_rng(batch * 1000 + seq * 10 + keys)
        inputs = {
            "q": rng.standard_normal((batch, 4, seq, 16)).astype(np.float32),
            "k": rng.standard_normal((batch, 2, keys, 16)).astype(np.float32),
            "v": rng.standard_normal((batch, 2, keys, 24)).astype(np.float32),
        }
        if mask == "float":
            m = (0.5 * rng.standard_normal((batch, 1, 1, keys))).astype(np.float32)
            m[-1, ..., 0] = -np.inf  # batch row -1's query 0 sees nothing
            inputs["mask"] = m
        elif mask == "bool":
            m = rng.random((seq, keys)) < 0.7
            m[0, :] = False  # query 0 sees nothing
            inputs["mask"] = m
        run(artifact, inputs, tmp_path, "cpu")
        got = np.load(tmp_path / "out" / "y.npy")
        want = attention_reference(**inputs)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, err_msg=f"{batch}/{seq}/{keys}",
                                   **TOLERANCES[np.dtype(np.float32)])


@pytest.mark.parametrize("target,device,precision", [
    ("cpu", "cpu", "fp32"), ("cuda:sm_80", "sim", "bf16")])
def test_attention_with_a_past_of_symbolic_length(target, device, precision,
                                                  tmp_path):
    """A KV cache of symbolic length in front of K and V: one artifact
    runs every (batch, queries, past), causal aligned to the end (query i
    sees the past and new keys up to i); the present outputs are the
    concatenations. On cuda at bf16 it is the flash kernel."""
    model = tmp_path / "attention.onnx"
    attention_model(str(model), past=True, keys="seq")
    artifact = tmp_path / "attention.kiln"
    extra = ["--embed-kernel-ir"] if device == "sim" else []
    kiln("compile", str(model), "-o", str(artifact), "--target", target,
         "--precision", precision, "--dim", "batch=1..3", "--dim", "seq=1..40",
         "--dim", "past=1..48", *extra)
    info = kiln("inspect", str(artifact), "--json").stdout
    strategy = ("flash-attention-mma-sync" if device == "sim"
                else "cpu-flash-attention")
    assert f'"strategy": "{strategy}"' in info, info
    for batch, seq, past in [(1, 1, 7), (2, 17, 3), (3, 40, 48), (1, 5, 1)]:
        rng = np.random.default_rng(batch * 1000 + seq * 10 + past)
        inputs = {
            "q": rng.standard_normal((batch, 4, seq, 16)).astype(np.float32),
            "k": rng.standard_normal((batch, 2, seq, 16)).astype(np.float32),
            "v": rng.standard_normal((batch, 2, seq, 24)).astype(np.float32),
            "past_k": rng.standard_normal((batch, 2, past, 16)).astype(np.float32),
            "past_v": rng.standard_normal((batch, 2, past, 24)).astype(np.float32),
        }
        run(artifact, inputs, tmp_path, device)
        got = np.load(tmp_path / "out" / "y.npy")
        want = attention_reference(**inputs)
        assert got.shape == want.shape
        case = f"{batch}/{seq}/{past}"
        if precision == "fp32":
            np.testing.assert_allclose(got, want, err_msg=case,
                                       **TOLERANCES[np.dtype(np.float32)])
        else:
            error = normwise_error(got, want)
            assert error <= PRECISION_TOLERANCES[precision], (case, error)
        for name, part, new in (("present_k", "past_k", "k"),
                                ("present_v", "past_v", "v")):
            np.testing.assert_array_equal(
                np.load(tmp_path / "out" / f"{name}.npy"),
                np.concatenate([inputs[part], inputs[new]], axis=2))


def test_causal_attention_with_a_past_needs_a_key_per_query(tmp_path):
    """Causal with a symbolic past, K's new keys counted apart from the
    queries: where the diagonal ends is not known; a clear error."""
    model = tmp_path / "attention.onnx"
    attention_model(str(model), past=True)
    artifact = tmp_path / "attention.kiln"
    result = kiln("compile", str(model), "-o", str(artifact),
                  *BOUNDS_ATTENTION, "--dim", "past=1..8", check=False)
    assert result.returncode == 1
    assert ("causal Attention with a past and symbolic dims needs as many new "
            "keys as queries" in result.stderr), result.stderr
    assert not artifact.exists()


def test_gpu_attention_with_symbolic_dims_says_so(tmp_path):
    """The GPU's attention kernels need static shapes: a clear error."""
    model = tmp_path / "attention.onnx"
    attention_model(str(model))
    artifact = tmp_path / "attention.kiln"
    result = kiln("compile", str(model), "-o", str(artifact), "--target",
                  "cuda:sm_80", *BOUNDS_ATTENTION, check=False)
    assert result.returncode == 1
    assert ("cannot decompose 'kiln.attention' with dynamic shapes yet; "
            "specialize the model's symbolic dims with --dim NAME=VALUE"
            in result.stderr), result.stderr
    assert not artifact.exists()


def test_attention_with_unrelated_symbolic_dims_says_so(tmp_path):
    """K's batch must be Q's: two different symbolic dims are an error,
    not reads past K's end."""
    f = TensorProto.FLOAT
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Attention", ["q", "k", "v"], ["y"])], "attention",
        [vi("q", f, ["batch", 2, "seq", 8]), vi("k", f, ["other", 2, "seq", 8]),
         vi("v", f, ["other", 2, "seq", 8])],
        [vi("y", f, ["batch", 2, "seq", 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    path = tmp_path / "attention.onnx"
    onnx.save(model, str(path))
    artifact = tmp_path / "attention.kiln"
    result = kiln("compile", str(path), "-o", str(artifact), "--dim",
                  "batch=1..3", "--dim", "other=1..3", "--dim", "seq=1..8",
                  check=False)
    assert result.returncode == 1
    assert "must share dim 0 and dim 0 (the same symbolic dim or size)" in \
        result.stderr, result.stderr
    assert not artifact.exists()


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_sass_of_symbolic_flash_attention(arch, tmp_path):
    """The flash kernel over symbolic batch, query and past counts (causal
    from the end): tensor cores, cp.async, no local memory."""
    model = tmp_path / "attention.onnx"
    attention_model(str(model), past=True, keys="seq")
    artifact = str(tmp_path / "attention.kiln")
    kiln("compile", str(model), "-o", artifact, "--target", "cuda:sm_80,sm_90a",
         "--precision", "bf16", "--dim", "batch=1..3", "--dim", "seq=1..40",
         "--dim", "past=1..48")
    info, sass = sass_by_function(artifact, arch)
    (kernel,) = [k for k in info["kernels"]
                 if k["strategy"] == "flash-attention-mma-sync"]
    code = sass[kernel["symbol"]]
    assert count(code, "HMMA.16816.F32.BF16") >= 1
    assert count(code, "LDGSTS.E.BYPASS.128") >= 1
    assert count(code, "STL") == 0 and count(code, "LDL") == 0
