"""The sm_90a tensor-core GEMM strategy (gemm-wgmma: TMA, mbarriers,
wgmma): the contractions it takes on a `cuda:sm_90a` target (activations x
weights, edges in M, N and K, a batch folded into M, a fused bias and
activation), run under the simulator against NumPy on the same bf16/f16-
rounded operands, with the descriptors the runtime encodes from the
manifest's tensor maps; the contractions that go elsewhere; and its SASS:
HGMMA (wgmma), UTMALDG (TMA), SYNCS (mbarriers), no local memory."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import kiln
from test_gemm_mma_sync import narrow
from test_sass import count, needs_ptxas, sass_by_function

F = TensorProto.FLOAT
# M x N tiles of 128 that make a full wave on the H100's 132 SMs.
# "deep": 7 slices of K through 6 stages, and blocks with two tiles: the
# ring wraps inside a tile and its count goes on into the next one (the
# mbarrier parities flip across both).
# "kmajor" and "odd": N not a multiple of 8, so the weight is stored [N, K]
# (K innermost, as GPT-2's tied lm_head) and read K-major; "odd" also
# leaves its output's pairs straddling rows.
SHAPES = {"aligned": (2048, 256, 1152), "edges": (2000, 200, 1160),
          "batched": ((8, 256), 128, 1152), "gelu": (2048, 128, 1152),
          "kmajor": (2048, 256, 1100), "odd": (2000, 136, 1101),
          "deep": (2048, 448, 1152)}
BIASED = ("edges", "batched", "gelu", "kmajor")


def build(kind, rng):
    """(graph, inputs, reference(precision)) for one case."""
    vi = helper.make_tensor_value_info
    m, k, n = SHAPES.get(kind, (2048, 256, 1152))
    rows = list(m) if isinstance(m, tuple) else [m]
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal(rows + [k]).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"])]
    inits = [numpy_helper.from_array(w, "w")]
    out = "t"
    if kind in BIASED:
        nodes.append(helper.make_node("Add", ["t", "b"], ["u"]))
        inits.append(numpy_helper.from_array(b, "b"))
        out = "u"
    if kind == "gelu":
        nodes.append(helper.make_node("Gelu", ["u"], ["v"]))
        out = "v"
    nodes.append(helper.make_node("Identity", [out], ["y"]))
    graph = helper.make_graph(nodes, kind, [vi("x", F, rows + [k])],
                              [vi("y", F, rows + [n])], inits)

    def reference(p):
        y = narrow(x, p) @ narrow(w, p)
        if kind in BIASED:
            y = y + narrow(b, p)
        if kind == "gelu":
            from math import erf, sqrt
            y = 0.5 * y * (1 + np.vectorize(erf)(y / sqrt(2)))
        return y
    # The sum of |terms| bounds what one rounding of each intermediate to
    # the narrow type can move the result by.
    scale = np.abs(narrow(x, "bf16")) @ np.abs(narrow(w, "bf16")) + np.abs(b)
    return graph, {"x": x}, reference, scale


def compile_case(kind, precision, tmp_path, target="cuda:sm_90a", graph=None,
                 extra=()):
    inputs = reference = scale = None
    if graph is None:
        graph, inputs, reference, scale = build(kind, np.random.default_rng(7))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    path = str(tmp_path / f"{kind}.onnx")
    onnx.save(model, path)
    artifact = str(tmp_path / f"{kind}.kiln")
    kiln("compile", path, "--target", target, "--precision", precision,
         "--embed-kernel-ir", "-o", artifact, *extra)
    info = json.loads(kiln("inspect", artifact, "--json").stdout)
    return artifact, info, inputs, reference, scale


def strategies(info):
    return [k["strategy"] for k in info["kernels"]]


@needs_ptxas
@pytest.mark.parametrize("kind, precision", [
    ("aligned", "bf16"), ("aligned", "fp16"), ("edges", "bf16"),
    ("batched", "bf16"), ("gelu", "fp16"), ("kmajor", "bf16"),
    ("odd", "fp16"), ("deep", "bf16")])
def test_gemm_wgmma_under_the_simulator(kind, precision, tmp_path):
    artifact, info, inputs, reference, scale = compile_case(kind, precision,
                                                            tmp_path)
    (kernel,) = [k for k in info["kernels"] if k["strategy"] == "gemm-wgmma"]
    # A persistent grid of one block per H100 SM.
    assert kernel["config"] == {"tile": [128, 128, 64], "stages": 6,
                                "blocks": 132}
    # The ring (no more stages than K has slices, plus one) and the slack
    # that aligns it to 1 KiB; the epilogue leaves from the registers.
    k = SHAPES[kind][1]
    stages = min(6, -(-k // 64) + 1)
    assert kernel["dynamic_shared_bytes"] == stages * 32768 + 1024
    # The epilogue (bias, GELU, the output cast) ran in the GEMM's kernel.
    assert strategies(info).count("gemm-wgmma") == 1
    launch = next(l for l in info["entry_points"][0]["launches"]
                  if l.get("tensor_maps"))
    assert len(launch["tensor_maps"]) == 2
    # B read through its [N, K] rows, K-major ([128 n][64 k] boxes), or
    # through its [K, N] rows, N-major ([64 k][64 n] boxes).
    m, k, n = SHAPES[kind]
    b_map = launch["tensor_maps"][1]["tensor"]
    if kind in ("kmajor", "odd"):
        assert launch["tensor_maps"][1]["buffer"].endswith(".T")
        assert f"[{n}x{k}] box [128x64]" in b_map, b_map
    else:
        assert f"[{k}x{n}] box [64x64]" in b_map, b_map
    args = ["run", artifact, "--device", "sim", "--output-dir",
            str(tmp_path / "out")]
    np.save(tmp_path / "x.npy", inputs["x"])
    args += ["--input", f"x=@{tmp_path / 'x.npy'}"]
    kiln(*args)
    got = np.load(next((tmp_path / "out").glob("*.npy")))
    want = reference(precision)
    # The product of the rounded operands is exact up to the f32 sums; the
    # intermediates (the GEMM's result, the sum with the bias) are rounded
    # to the narrow type once each: within two units of its last place of
    # the sum of the terms' magnitudes.
    ulp = 2.0 ** -8 if precision == "bf16" else 2.0 ** -11
    err = np.abs(got - want) / (scale + 1e-30)
    assert err.max() <= 2 * ulp, err.max()
    # And the rows past M and columns past N were never written past the
    # output (the simulator's bounds checks would have failed the run).
    assert got.shape == want.shape


@needs_ptxas
def test_what_gemm_wgmma_leaves_to_other_strategies(tmp_path):
    # Both architectures in one artifact share their kernels: mma.sync.
    _, info, *_ = compile_case("aligned", "bf16", tmp_path,
                               target="cuda:sm_80,sm_90a")
    assert "gemm-mma-sync" in strategies(info)
    assert "gemm-wgmma" not in strategies(info)
    # Too few 128x128 tiles to fill the SMs: mma.sync's smaller tiles.
    vi = helper.make_tensor_value_info
    rng = np.random.default_rng(3)
    small = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "small",
        [vi("x", F, [128, 256])], [vi("y", F, [128, 768])],
        [numpy_helper.from_array(rng.standard_normal((256, 768)).astype(
            np.float32), "w")])
    _, info, *_ = compile_case("small", "bf16", tmp_path, graph=small)
    assert "gemm-mma-sync" in strategies(info)
    assert "gemm-wgmma" not in strategies(info)
    # A batched B (a product of two activations, as attention's P @ V):
    # each batch has its own B, which the TMA maps here do not walk.
    batched = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "batched_b",
        [vi("a", F, [4, 512, 256]), vi("b", F, [4, 256, 640])],
        [vi("c", F, [4, 512, 640])])
    _, info, *_ = compile_case("batched_b", "bf16", tmp_path, graph=batched)
    assert "gemm-wgmma" not in strategies(info)
    assert "gemm-mma-sync" in strategies(info)


@needs_ptxas
def test_sass_of_gemm_wgmma(tmp_path):
    artifact, info, *_ = compile_case("gelu", "bf16", tmp_path)
    _, sass = sass_by_function(artifact, "sm_90a")
    (kernel,) = [k for k in info["kernels"] if k["strategy"] == "gemm-wgmma"]
    code = sass[kernel["symbol"]]
    # Per 64-deep slice, each consumer warpgroup: 4 (k16)
    # wgmma.m64n128k16.
    hgmma = count(code, "HGMMA.64x128x16.F32.BF16")
    assert hgmma >= 4 and hgmma % 4 == 0, hgmma
    # Warp specialization: the producer gives registers back (setmaxnreg
    # dec), the consumers take them (inc).
    assert count(code, "USETMAXREG.DEALLOC") == 1
    assert count(code, "USETMAXREG.TRY_ALLOC") == 1
    # The epilogue's f32 pairs leave as 8-byte stores from the registers.
    assert count(code, "STG.E.64") >= 32
    assert count(code, "UTMALDG.2D") >= 3          # A and B's two boxes
    assert count(code, "SYNCS.ARRIVE.TRANS64") >= 1  # expect_tx
    assert count(code, "SYNCS.PHASECHK.TRANS64.TRYWAIT") >= 1
    assert count(code, "STL") == 0 and count(code, "LDL") == 0
    # 384 threads: ptxas keeps the kernel within 168 registers (65,536 /
    # 384), which setmaxnreg then moves between the roles.
    (image,) = kernel["images"]
    assert image["registers"] <= 168
    assert image["spill_store_bytes"] == 0
    # A K-major B: one op per k16 step, each its own wgmma group (fence,
    # wgmma, commit), one [128][64] TMA box for B.
    artifact, info, *_ = compile_case("kmajor", "bf16", tmp_path)
    _, sass = sass_by_function(artifact, "sm_90a")
    (kernel,) = [k for k in info["kernels"] if k["strategy"] == "gemm-wgmma"]
    code = sass[kernel["symbol"]]
    hgmma = count(code, "HGMMA.64x128x16.F32.BF16")
    assert hgmma >= 4 and hgmma % 4 == 0, hgmma
    assert count(code, "WARPGROUP.ARRIVE") >= 4
    assert count(code, "UTMALDG.2D") >= 2          # A's box and B's
    assert count(code, "STL") == 0 and count(code, "LDL") == 0
    (image,) = kernel["images"]
    assert image["registers"] <= 168 and image["spill_store_bytes"] == 0


@needs_ptxas
def test_profile_of_gemm_wgmma(tmp_path):
    """`kiln profile`: the wgmma kernel's tensor-core work is the product's
    (2 x 64 x 128 x 16 per instruction, one instruction per 64 rows and 16
    of K per tile), its TMA loads read each operand tile once per tile in
    whole sectors, its epilogue's pair stores fill whole sectors, and no
    thread touches shared memory."""
    from test_profile import profile
    artifact, info, *_ = compile_case("aligned", "bf16", tmp_path)
    # Every block: a persistent grid's blocks take unequal shares of the
    # tiles, which a sample would scale wrongly.
    out, rows = profile(artifact, "--gpu", "h100", "--sample-blocks", "0")
    (row,) = [r for r in rows.values() if r["strategy"] == "gemm-wgmma"]
    m, k, n = SHAPES["aligned"]
    tiles = (m // 128) * (n // 128)
    assert int(row["blocks"]) == min(tiles, 132)
    assert float(row["TC inst"]) == tiles * 2 * (k // 16), out
    assert abs(float(row["TC GFLOP"]) - 2 * m * n * k / 1e9) < 0.01, out
    assert float(row["coal"]) <= 1.01, out
    # Every block reads its tiles of A and B (moved), each byte of A, B
    # and the output comes from DRAM once (unique, the TMA-read operands
    # counted by their buffers too).
    unique = (m * k + k * n) * 2 + m * n * 4
    assert float(row["unique MB"]) <= unique * 1.01 / 1e6, out
    assert float(row["moved MB"]) > 2 * float(row["unique MB"]), out
    # The epilogue leaves from the registers: no thread touches shared
    # memory (the TMA unit and wgmma do).
    assert row["smem x"] == "-", out


@needs_ptxas
@pytest.mark.parametrize("n", [264, 1101])
def test_gemm_wgmma_with_symbolic_rows(tmp_path, n):
    """A prefill's rows are known only when it runs (symbolic batch and
    sequence, as a dynamic export or a checkpoint's prefill has them): the
    grid stays the persistent one, A's tensor map takes its row count from
    the run's dims, and the tiles and the epilogue's bounds are the run's.
    Under the simulator at two shapes, with a bias and GELU fused; N = 1101
    also reads the weight K-major (stored [N, K]) and guards each element."""
    vi = helper.make_tensor_value_info
    rng = np.random.default_rng(11)
    k = 192
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["t"]),
         helper.make_node("Add", ["t", "b"], ["u"]),
         helper.make_node("Gelu", ["u"], ["y"])], "symbolic",
        [vi("x", F, ["batch", "seq", k])], [vi("y", F, ["batch", "seq", n])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    artifact, info, *_ = compile_case(
        "symbolic", "bf16", tmp_path, graph=graph,
        extra=("--dim", "batch=1..4", "--dim", "seq=1..512"))
    (kernel,) = [k_ for k_ in info["kernels"]
                 if k_["strategy"] == "gemm-wgmma"]
    assert kernel["config"]["blocks"] == 132
    from math import erf, sqrt
    for shape in [(2, 150), (3, 47)]:
        x = rng.standard_normal(shape + (k,)).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        out = tmp_path / f"out{shape[0]}"
        kiln("run", artifact, "--device", "sim", "--output-dir", str(out),
             "--input", f"x=@{tmp_path / 'x.npy'}")
        got = np.load(next(out.glob("*.npy")))
        u = narrow(x, "bf16") @ narrow(w, "bf16") + narrow(b, "bf16")
        want = 0.5 * u * (1 + np.vectorize(erf)(u / sqrt(2)))
        scale = (np.abs(narrow(x, "bf16")) @ np.abs(narrow(w, "bf16"))
                 + np.abs(b))
        assert got.shape == want.shape
        err = np.abs(got - want) / (scale + 1e-30)
        assert err.max() <= 2 * 2.0 ** -8, (shape, err.max())
