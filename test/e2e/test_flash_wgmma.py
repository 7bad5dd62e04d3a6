"""flash-attention-wgmma, the sm_90a prefill attention (TMA, mbarriers,
wgmma): every configuration selection chooses for a `cuda:sm_90a` target
(one or two warpgroups of 64 query rows; heads of 64 and 128 and padded
ones; causal, masks, grouped-query heads, softcap, a past; sequence lengths
that are not multiples of the tiles), compiled with --precision and run
under the GPU-kernel simulator, with the tensor maps the runtime encodes,
against a float64 NumPy reference; the head split of a real export read in
place through the tensor maps; what stays on flash-attention-mma-sync; and
the SASS: HGMMA, UTMALDG, the mbarriers, no local memory."""
import json
import os

import numpy as np
import pytest

from conftest import (PRECISION_TOLERANCES, input_args, kiln, normwise_error,
                      run_artifact, run_reference)
from test_flash_attention import build, run
from test_transformers import FIXTURES, dynamic_inputs
from test_sass import count, needs_ptxas, sass_by_function

TARGET = "cuda:sm_90a"
STRATEGY = "flash-attention-wgmma"

# As in test_flash_attention: (batch, query heads, kv heads, queries, past,
# new keys, head), options; `tile` is what selection must choose.
CASES = {
    "d64_causal": dict(shape=(1, 2, 2, 128, 0, 128, 64), causal=True,
                       tile=[64, 64]),
    # 132 blocks of 128 rows: two warpgroups per block.
    "d64_two_warpgroups": dict(shape=(2, 66, 66, 128, 0, 70, 64),
                               tile=[128, 64]),
    "d128_gqa_edges": dict(shape=(1, 4, 2, 80, 0, 80, 128), causal=True,
                           tile=[64, 64]),
    "d80_additive_mask": dict(shape=(2, 2, 2, 70, 0, 70, 80), mask="additive",
                              tile=[64, 64]),
    "d96_bool_mask_gqa3": dict(shape=(1, 3, 1, 65, 0, 130, 96), mask="bool",
                               tile=[64, 64]),
    "softcap_past": dict(shape=(1, 2, 1, 64, 40, 64, 64), causal=True,
                         softcap=5.0, tile=[64, 64]),
}


def compile_case(name, precision, tmp_path, target=TARGET):
    path = str(tmp_path / f"{name}.onnx")
    feeds, want = build(name, path, CASES[name])
    artifact = str(tmp_path / f"{name}.{precision}.kiln")
    kiln("compile", path, "--target", target, "--precision", precision,
         "--embed-kernel-ir", "-o", artifact)
    info = json.loads(kiln("inspect", artifact, "--json").stdout)
    return artifact, info, feeds, want


@needs_ptxas
@pytest.mark.parametrize("name", sorted(CASES))
def test_flash_wgmma_under_the_simulator(name, tmp_path):
    precisions = ["bf16", "fp16"] if name == "d128_gqa_edges" else ["bf16"]
    for precision in precisions:
        artifact, info, feeds, want = compile_case(name, precision, tmp_path)
        flash = [k for k in info["kernels"] if k["strategy"] == STRATEGY]
        assert len(flash) == 1, [k["strategy"] for k in info["kernels"]]
        assert flash[0]["config"] == {"tile": CASES[name]["tile"],
                                      "stages": 2}
        launch = next(l for l in info["entry_points"][0]["launches"]
                      if l.get("tensor_maps"))
        # Q, K and V, each as [d, batch, head, row] in boxes of 64 x 64.
        maps = launch["tensor_maps"]
        assert len(maps) == 3
        assert all(m["tensor"].endswith("box [64x1x1x64] swizzle 128B")
                   for m in maps), maps
        got = run(artifact, feeds, "sim", tmp_path)
        error = normwise_error(got, want)
        assert error <= PRECISION_TOLERANCES[precision], (precision, error)


@needs_ptxas
def test_what_stays_on_mma_sync(tmp_path):
    """Decode (fewer than 64 query rows) keeps split-KV on mma.sync, and an
    artifact for both architectures shares its kernels: mma.sync."""
    CASES["decode"] = dict(shape=(1, 4, 2, 3, 97, 3, 64), causal=True)
    try:
        _, info, _, _ = compile_case("decode", "bf16", tmp_path)
    finally:
        del CASES["decode"]
    strategies = {k["strategy"] for k in info["kernels"]}
    assert "flash-attention-mma-sync" in strategies and STRATEGY not in strategies
    _, info, _, _ = compile_case("d64_causal", "bf16", tmp_path,
                                 target="cuda:sm_80,sm_90a")
    strategies = {k["strategy"] for k in info["kernels"]}
    assert "flash-attention-mma-sync" in strategies and STRATEGY not in strategies


@needs_ptxas
@pytest.mark.parametrize("name", ["d64_two_warpgroups", "d128_gqa_edges"])
def test_sass_of_flash_wgmma(name, tmp_path):
    artifact, _, _, _ = compile_case(name, "bf16", tmp_path)
    info, sass = sass_by_function(artifact, "sm_90a")
    (kernel,) = [k for k in info["kernels"] if k["strategy"] == STRATEGY]
    code = sass[kernel["symbol"]]
    d = -(-CASES[name]["shape"][6] // 64) * 64
    # Per KV tile: d/16 k16 steps of Q Kᵀ (64 x 64), 4 of P V (64 x d).
    assert count(code, "HGMMA.64x64x16.F32.BF16") >= d // 16, code
    assert count(code, f"HGMMA.64x{d}x16.F32.BF16") >= 4
    assert count(code, "UTMALDG.4D") >= 3                # Q, K and V boxes
    assert count(code, "SYNCS.ARRIVE.TRANS64") >= 1      # expect_tx
    assert count(code, "SYNCS.PHASECHK.TRANS64") >= 1    # the stage waits
    assert count(code, "FENCE.VIEW.ASYNC.S") >= 1        # P to the async proxy
    assert count(code, "SHFL.BFLY") >= 4                 # row max and sum
    assert count(code, "STL") == 0 and count(code, "LDL") == 0
    bm = kernel["config"]["tile"][0]
    tiles = 2 * (bm * d + 2 * 2 * 64 * d + bm * 64)
    assert kernel["dynamic_shared_bytes"] >= tiles, kernel


def compile_export(family, tmp_path, *dims):
    """The family's dynamic export compiled for sm_90a at bf16 with `dims`
    (NAME=VALUE or NAME=MIN..MAX): its path, the artifact, its inspection."""
    path = os.path.join(FIXTURES, family, "model_dynamic.onnx")
    artifact = tmp_path / "m.kiln"
    args = [arg for dim in dims for arg in ("--dim", dim)]
    kiln("compile", path, "-o", str(artifact), "--target", TARGET,
         "--precision", "bf16", "--embed-kernel-ir", *args)
    return path, artifact, json.loads(
        kiln("inspect", str(artifact), "--json").stdout)


@needs_ptxas
@pytest.mark.parametrize("family", ["gpt2", "bert", "llama"])
def test_transformer_exports_on_hopper(family, tmp_path):
    """The dynamic exports at a static 2 x 64 on `cuda:sm_90a` at bf16: each
    layer's attention is one flash-attention-wgmma launch whose tensor maps
    read the head split where it lies (GPT-2: Q, K and V at their offsets
    in the QKV projection's rows), under the simulator against
    onnxruntime within the bf16 tolerance. LLaMA's Q is its rotary
    embedding, which the kernel's threads evaluate into Q's tile: no tensor
    map for Q, and no launch of its own."""
    path, artifact, info = compile_export(family, tmp_path, "batch=2",
                                          "sequence=64")
    flash = [k for k in info["kernels"] if k["strategy"] == STRATEGY]
    assert len(flash) == 1, [k["strategy"] for k in info["kernels"]]
    maps = 2 if family == "llama" else 3
    symbol = flash[0]["symbol"]
    launches = [l for l in info["entry_points"][0]["launches"]
                if l["kernel"] == symbol]
    assert len(launches) == 2  # one per layer
    assert all(len(l.get("tensor_maps", [])) == maps for l in launches)
    if family == "llama":
        # The rotary embedding of K stays a kernel of its own (TMA copies
        # K); Q's is gone: one elementwise launch per layer between the
        # projections and the attention, not two.
        strategy = {k["symbol"]: k["strategy"] for k in info["kernels"]}
        order = [strategy[l["kernel"]]
                 for l in info["entry_points"][0]["launches"]]
        first = order.index(STRATEGY)
        previous = order[:first][::-1]
        assert previous[:previous.index("row-fused")].count("elementwise") == 1, order
    inputs = dynamic_inputs(path, 2, 64)
    if family == "gpt2":
        # The head split read in place: one buffer, 64 elements apart. The
        # profile counts that buffer's bytes once for the three tensor
        # maps (a model of the traffic, not a measurement): the QKV rows
        # [2 x 64, 192] and the output [2 x 64, 64], bf16.
        buffers = [m["buffer"] for m in launches[0]["tensor_maps"]]
        base = int(buffers[0].split("+")[1])
        assert buffers == [f"arena+{base + 128 * i}" for i in range(3)], buffers
        report = kiln("profile", str(artifact), "--device", "sim",
                      "--sample-blocks", "0",
                      *input_args(inputs, tmp_path)).stdout
        # Per run (a run per layer).
        unique_mb = [float(line.split()[6]) / int(line.split()[2])
                     for line in report.splitlines()
                     if len(line.split()) > 6 and line.split()[1] == STRATEGY]
        assert unique_mb and all(
            mb <= 1.01 * (2 * 64 * 256 * 2) / 1e6 for mb in unique_mb), report
    want = run_reference(path, inputs)["output"]
    got = run_artifact(artifact, inputs, tmp_path, "sim")["output"]
    error = normwise_error(got, want)
    assert error <= PRECISION_TOLERANCES["bf16"], error


@needs_ptxas
def test_profile_reads_kv_once_per_query_tile(tmp_path):
    """Without a mask, 4 query tiles of 64 rows per head: each block reads
    its Q tile and the head's K and V once through TMA, so the launch moves
    4 x (K + V) + Q + O, per the simulator's counters (a model of the
    traffic, not a measurement: no score matrix in memory, no re-reads);
    O leaves coalesced; P's and O's stores into their swizzled tiles have
    no bank conflicts; the products run on the tensor cores."""
    case = dict(shape=(1, 2, 2, 256, 0, 256, 64), tile=[64, 64])
    CASES["profile"] = case
    try:
        artifact, _, feeds, _ = compile_case("profile", "bf16", tmp_path)
    finally:
        del CASES["profile"]
    report = kiln("profile", artifact, "--device", "sim", "--sample-blocks",
                  "0", *input_args(feeds, tmp_path)).stdout
    row = next(line.split() for line in report.splitlines()
               if len(line.split()) > 5 and line.split()[1] == STRATEGY)
    moved_mb, coal = float(row[5]), float(row[8])
    smem_x, tc_inst = float(row[9]), int(row[10])
    b, hq, hkv, s, _, keys, d = case["shape"]
    kv_mb = 2 * b * hkv * keys * d * 2 / 1e6
    q_mb = out_mb = b * hq * s * d * 2 / 1e6
    want = s // 64 * kv_mb + q_mb + out_mb
    assert 0.95 * want <= moved_mb <= 1.05 * want, (moved_mb, want)
    # O leaves in 16-byte chunks of whole rows (staged in V's ring), and
    # neither P's nor O's staging has bank conflicts.
    assert coal <= 1.01, report
    assert smem_x == 1.0, report
    # Per block and KV tile: 4 k16 steps of Q Kᵀ and 4 of P V.
    assert tc_inst == 8 * 4 * (4 + 4), report


@needs_ptxas
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_symbolic_counts_on_hopper(family, tmp_path):
    """One artifact with symbolic batch and sequence on `cuda:sm_90a`: the
    attention is flash-attention-wgmma with the counts read from its size
    parameters and tensor maps the runtime encodes per run from the dims'
    expressions; under the simulator against onnxruntime at several shapes
    (a short one, a ragged one, the bound), within the bf16 tolerance."""
    path, artifact, info = compile_export(family, tmp_path, "batch=1..2",
                                          "sequence=1..64")
    assert STRATEGY in {k["strategy"] for k in info["kernels"]}
    for batch, seq in [(1, 3), (2, 37), (2, 64)]:
        inputs = dynamic_inputs(path, batch, seq)
        want = run_reference(path, inputs)["output"]
        got = run_artifact(artifact, inputs, tmp_path, "sim")["output"]
        assert got.shape == want.shape, (batch, seq)
        error = normwise_error(got, want)
        assert error <= PRECISION_TOLERANCES["bf16"], (batch, seq, error)
