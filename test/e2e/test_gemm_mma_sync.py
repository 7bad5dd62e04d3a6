"""The sm_80 tensor-core GEMM strategy (gemm-mma-sync): every configuration
selection chooses for it, on the orientations and shapes the importer
produces (transposed operands read in place, batched and broadcast
batches, edges that are not multiples of the tile), run under the
simulator against NumPy on the same f16/bf16-rounded operands; and its
SASS on both architectures: HMMA (mma.sync), LDSM (ldmatrix), LDGSTS
(cp.async), no local-memory spills."""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import kiln
from test_sass import count, needs_ptxas, sass_by_function

TARGET = "cuda:sm_80,sm_90a"


def narrow(x, precision):
    """float32 values rounded to bf16 or f16 (nearest even), as float64."""
    x = np.asarray(x, dtype=np.float32)
    if precision == "fp16":
        return x.astype(np.float16).astype(np.float64)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


def build(kind, rng):
    """(model, inputs, reference(precision)) for one contraction shape."""
    f = TensorProto.FLOAT
    vi = helper.make_tensor_value_info
    if kind in ("aligned", "edges", "mid", "large", "unaligned_n", "odd_n",
                "large_odd_n"):
        # unaligned_n: a weight whose rows (N = 100) cannot be copied in
        # 16-byte chunks; the cuda target stores it [N, K] instead. mid and
        # large fill the SMs with 64x64 and 128x128 tiles. odd_n: N odd (a
        # vocabulary), the output rows start anywhere in a sector: the
        # epilogue stages each strip in B's ring (odd_n, 3 slices of K) or
        # in a buffer of its own (large_odd_n: one slice, a ring of 2 too
        # short for the strip).
        m, k, n = {"aligned": (64, 128, 96), "edges": (40, 72, 24),
                   "mid": (704, 32, 704), "large": (1536, 32, 1536),
                   "unaligned_n": (48, 72, 100), "odd_n": (40, 72, 101),
                   "large_odd_n": (1152, 32, 1537)}[kind]
        w = rng.standard_normal((k, n)).astype(np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], kind,
            [vi("x", f, [m, k])], [vi("y", f, [m, n])],
            [numpy_helper.from_array(w, "w")])
        inputs = {"x": rng.standard_normal((m, k)).astype(np.float32)}
        return graph, inputs, lambda p: narrow(inputs["x"], p) @ narrow(w, p)
    if kind in ("split_k", "split_k_batched_odd_n"):
        # Few tiles against a long K: split-K (the blocks of one tile sum
        # their runs of K into a workspace, a second launch adds them up).
        # The second: a batch of 2 over a weight (broadcast), N = 71 odd.
        x_shape, (k, n) = {"split_k": ([24, 2048], (2048, 128)),
                           "split_k_batched_odd_n": ([2, 24, 2048], (2048, 71))}[kind]
        w = rng.standard_normal((k, n)).astype(np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], kind,
            [vi("x", f, x_shape)], [vi("y", f, x_shape[:-1] + [n])],
            [numpy_helper.from_array(w, "w")])
        inputs = {"x": rng.standard_normal(x_shape).astype(np.float32)}
        return graph, inputs, lambda p: narrow(inputs["x"], p) @ narrow(w, p)
    if kind == "trans_b":  # x @ y^T of two activations: B read K-innermost
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["x", "y"], ["z"], transB=1)], kind,
            [vi("x", f, [48, 64]), vi("y", f, [40, 64])], [vi("z", f, [48, 40])])
        inputs = {"x": rng.standard_normal((48, 64)).astype(np.float32),
                  "y": rng.standard_normal((40, 64)).astype(np.float32)}
        return graph, inputs, lambda p: narrow(inputs["x"], p) @ narrow(inputs["y"], p).T
    if kind == "trans_a":  # x^T @ y: A read M-innermost
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["x", "y"], ["z"], transA=1)], kind,
            [vi("x", f, [64, 48]), vi("y", f, [64, 40])], [vi("z", f, [48, 40])])
        inputs = {"x": rng.standard_normal((64, 48)).astype(np.float32),
                  "y": rng.standard_normal((64, 40)).astype(np.float32)}
        return graph, inputs, lambda p: narrow(inputs["x"], p).T @ narrow(inputs["y"], p)
    if kind == "heads":  # [M, heads, dim] reshaped to [M, heads*dim] @ W
        w = rng.standard_normal((64, 40)).astype(np.float32)
        shape = numpy_helper.from_array(np.array([48, 64], np.int64), "shape")
        graph = helper.make_graph(
            [helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"])], kind,
            [vi("x", f, [48, 4, 16])], [vi("y", f, [48, 40])],
            [numpy_helper.from_array(w, "w"), shape])
        inputs = {"x": rng.standard_normal((48, 4, 16)).astype(np.float32)}
        return graph, inputs, lambda p: narrow(inputs["x"].reshape(48, 64), p) @ narrow(w, p)
    if kind in ("batched", "broadcast"):
        a_shape, b_shape = {"batched": ([2, 3, 32, 48], [2, 3, 48, 40]),
                            "broadcast": ([2, 1, 32, 48], [1, 3, 48, 40])}[kind]
        out = list(np.broadcast_shapes(a_shape[:-2], b_shape[:-2])) + [32, 40]
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])], kind,
            [vi("a", f, a_shape), vi("b", f, b_shape)], [vi("c", f, out)])
        inputs = {"a": rng.standard_normal(a_shape).astype(np.float32),
                  "b": rng.standard_normal(b_shape).astype(np.float32)}
        return graph, inputs, lambda p: np.matmul(narrow(inputs["a"], p),
                                                  narrow(inputs["b"], p))
    raise ValueError(kind)


def compile_case(kind, precision, tmp_path):
    graph, inputs, reference = build(kind, np.random.default_rng(len(kind)))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = str(tmp_path / f"{kind}.onnx")
    onnx.save(model, path)
    artifact = str(tmp_path / f"{kind}.kiln")
    kiln("compile", path, "--target", TARGET, "--precision", precision,
         "--embed-kernel-ir", "-o", artifact)
    return artifact, inputs, reference


def mma_kernels(artifact):
    info = json.loads(kiln("inspect", artifact, "--json").stdout)
    return info, [k for k in info["kernels"] if k["strategy"] == "gemm-mma-sync"]


@needs_ptxas
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("kind", ["aligned", "edges", "trans_a", "trans_b",
                                  "batched", "broadcast", "heads",
                                  "unaligned_n", "odd_n", "mid", "large",
                                  "large_odd_n", "split_k",
                                  "split_k_batched_odd_n"])
def test_gemm_mma_sync_under_the_simulator(kind, precision, tmp_path):
    if kind in ("mid", "large", "large_odd_n") and precision == "fp16":
        pytest.skip("one precision of the 64x64 and 128x128 tiles is enough")
    artifact, inputs, reference = compile_case(kind, precision, tmp_path)
    _, kernels = mma_kernels(artifact)
    # Split-K adds its combine launch to the dispatch.
    split = kind.startswith("split_k")
    assert len(kernels) == (2 if split else 1), \
        "the contraction did not take gemm-mma-sync"
    config = kernels[0]["config"]
    # The largest tile whose blocks fill the SMs (108 on the A100, the
    # fewest of the two architectures), else the smallest.
    tile = {"large": 128, "large_odd_n": 128, "mid": 64}.get(kind, 32)
    assert config["tile"] == [tile, tile, 32]
    # 2x4 warps of 64x32 for the 128 tile (fewer registers per lane), else
    # 2x2.
    assert config["warps"] == ([2, 4] if tile == 128 else [2, 2])
    assert config["stages"] == 3
    # Split-K where 32-tiles leave most of the A100's 108 SMs idle, as far
    # as the workspace traffic allows: 4 tiles -> 6 splits; 3 tiles x 2
    # batches -> 4.
    assert config.get("split_k") == {"split_k": 6,
                                     "split_k_batched_odd_n": 4}.get(kind), config
    args = ["run", artifact, "--device", "sim", "--output-dir", str(tmp_path / "out")]
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}=@{tmp_path / (name + '.npy')}"]
    kiln(*args)
    got = np.load(next((tmp_path / "out").glob("*.npy")))
    # The sums are exact in the simulator and rounded to f32 once, then to
    # the narrow type: NumPy's product of the rounded operands, rounded the
    # same way, agrees to one unit in the last place of the narrow type
    # (2^-7 relative for bf16, 2^-10 for f16, at the bottom of a binade).
    want = narrow(reference(precision).astype(np.float32), precision)
    ulp = 2.0 ** -7 if precision == "bf16" else 2.0 ** -10
    atol = ulp * 1e-3
    if split:
        # Each split's sum is rounded to f32 before the combine adds them:
        # a unit of f32 roundoff of the largest result per split more,
        # which shows where a sum cancels to nearly nothing.
        atol += config["split_k"] * 2.0 ** -23 * float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=ulp, atol=atol)


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_sass_of_gemm_mma_sync(arch, tmp_path):
    artifact, _, _ = compile_case("aligned", "bf16", tmp_path)
    info, sass = sass_by_function(artifact, arch)
    _, kernels = mma_kernels(artifact)
    (kernel,) = kernels
    code = sass[kernel["symbol"]]
    config = kernel["config"]
    warp_m = config["tile"][0] // config["warps"][0]
    warp_n = config["tile"][1] // config["warps"][1]
    k_steps = config["tile"][2] // 16
    # One HMMA per m16n8k16 tile of the warp and k16 step of the slice,
    # for each slice ptxas unrolled (K = 128: 4 slices of 32).
    per_slice = (warp_m // 16) * (warp_n // 8) * k_steps
    hmma = count(code, "HMMA.16816.F32.BF16")
    assert hmma >= per_slice and hmma % per_slice == 0, hmma
    assert count(code, "LDSM.16.M88.4") >= 1       # A fragments
    assert count(code, "LDSM.16.MT88.2") >= 1      # B fragments, transposed
    assert count(code, "LDGSTS.E.BYPASS.128") >= 2  # cp.async of 16 bytes
    assert count(code, "LDGDEPBAR") >= 1 and count(code, "DEPBAR.LE") >= 1
    assert count(code, "STL") == 0 and count(code, "LDL") == 0
    image = next(i for i in kernel["images"] if i["arch"] == arch)
    stages, tile = config["stages"], config["tile"]
    assert image["shared_bytes"] == stages * (tile[0] + tile[1]) * tile[2] * 2
    assert image["registers"] <= 128  # 4 warps x 128 registers: 4 blocks/SM


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("kind", ["large_odd_n", "odd_n", "split_k"])
def test_sass_of_the_staged_and_split_epilogues(kind, arch, tmp_path):
    """The odd-N epilogue (a strip through shared memory, the window loop
    kept rolled) and split-K (partials to a workspace, a combine launch):
    no local memory, and the registers of the plain kernel: a 128-tile
    within 128 (2 blocks of 256 threads per SM), the others far below."""
    artifact, _, _ = compile_case(kind, "bf16", tmp_path)
    _, sass = sass_by_function(artifact, arch)
    _, kernels = mma_kernels(artifact)
    for kernel in kernels:
        code = sass[kernel["symbol"]]
        assert count(code, "STL") == 0 and count(code, "LDL") == 0, kernel["symbol"]
        image = next(i for i in kernel["images"] if i["arch"] == arch)
        limit = 128 if kernel["config"]["tile"][0] == 128 else 64
        assert image["registers"] <= limit, (kernel["symbol"], image["registers"])
    main = sass[kernels[0]["symbol"]]
    assert count(main, "HMMA.16816.F32.BF16") >= 1
    if kind.endswith("odd_n"):
        # The strip: 8-byte shared stores of fragment pairs, 4-byte global
        # stores of one element per lane.
        assert count(main, "STS.64") >= 1 and count(main, "STG.E") >= 1, main
