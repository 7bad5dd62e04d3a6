"""`kiln profile M.kiln --device sim`: the simulator's per-kernel counters
(a model, not a measurement) and the roofline bound, asserted where the
strategies promise something: the tensor-core GEMM's global accesses are
fully coalesced, its ldmatrix and cp.async cause no bank conflicts, and it
runs on the tensor cores; sampled blocks scale to the grid."""
import os

import numpy as np
import onnx
import pytest
from onnx import helper

from conftest import ROOT, kiln
from test_gemm_mma_sync import build
from test_sass import needs_ptxas

COLUMNS = ["kernel", "strategy", "runs", "blocks", "occ", "moved MB",
           "unique MB", "reuse", "coal", "smem x", "TC inst", "TC GFLOP",
           "FP GFLOP", "bound us", "limit"]


def profile(artifact, *extra):
    out = kiln("profile", artifact, "--device", "sim", *extra).stdout
    assert "a model of the work and the traffic, not a measurement" in out
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == len(COLUMNS) and parts[0] != "kernel":
            rows[parts[0]] = dict(zip(COLUMNS, parts))
    return out, rows


def gemm_artifact(tmp_path, kind, precision):
    graph, _, _ = build(kind, np.random.default_rng(0))
    path = str(tmp_path / f"{kind}.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              path)
    artifact = str(tmp_path / f"{kind}.{precision}.kiln")
    kiln("compile", path, "--target", "cuda:sm_80,sm_90a", "--precision",
         precision, "--embed-kernel-ir", "-o", artifact)
    return artifact


@needs_ptxas
def test_tensor_core_gemm_is_coalesced_conflict_free_and_on_tensor_cores(tmp_path):
    out, rows = profile(gemm_artifact(tmp_path, "aligned", "bf16"), "--gpu", "h100")
    assert "H100 SXM5" in out
    (gemm,) = [r for r in rows.values() if r["strategy"] == "gemm-mma-sync"]
    assert gemm["coal"] == "1.00", out
    assert gemm["smem x"] == "1.00", out
    # 64x96x128 on 32x32 tiles: 6 blocks x 4 warps x (1x2 tiles) x 8 k16
    # steps.
    assert float(gemm["TC inst"]) == 6 * 4 * 2 * 8, out
    assert gemm["limit"] == "tensor"
    # The f32 SIMT GEMM of the same model does no tensor-core work.
    _, simt = profile(gemm_artifact(tmp_path, "aligned", "fp32"))
    (row,) = [r for r in simt.values() if r["strategy"] == "gemm-simt"]
    assert float(row["TC inst"]) == 0 and float(row["FP GFLOP"]) > 0


@needs_ptxas
@pytest.mark.parametrize("kind", ["odd_n", "large_odd_n"])
def test_an_odd_n_gemm_stores_whole_sectors(kind, tmp_path):
    # N odd (GPT-2's vocabulary of 50257): the output rows start anywhere
    # in a sector, so fragment stores (a quad's 8 columns over 2 sectors, in
    # two instructions) would move about twice the bytes they store. The
    # epilogue stages the tile in shared memory and stores rows in windows
    # aligned to sectors: only a tile's two edge sectors per row are shared
    # with its neighbours. The strip in B's ring (odd_n) or in a buffer of
    # its own (large_odd_n), both free of bank conflicts.
    _, rows = profile(gemm_artifact(tmp_path, kind, "bf16"))
    (gemm,) = [r for r in rows.values() if r["strategy"] == "gemm-mma-sync"]
    assert gemm["smem x"] == "1.00", gemm
    # 32-column tiles (odd_n, K = 72 rows of A not sector-aligned either)
    # pay the edges most; 128-column tiles almost nothing.
    assert float(gemm["coal"]) <= {"odd_n": 1.35, "large_odd_n": 1.08}[kind], gemm


@needs_ptxas
def test_sampled_blocks_scale_to_the_grid(tmp_path):
    artifact = gemm_artifact(tmp_path, "large", "bf16")
    _, sampled = profile(artifact, "--sample-blocks", "8")
    _, full = profile(artifact, "--sample-blocks", "0")
    (name,) = [n for n, r in full.items() if r["strategy"] == "gemm-mma-sync"]
    assert full[name]["blocks"] == sampled[name]["blocks"] == "144"
    # Every tile of this GEMM does the same work: the scaled sample is exact
    # for the tensor-core work and close for the traffic.
    assert sampled[name]["TC inst"] == full[name]["TC inst"]
    moved = [float(r[name]["moved MB"]) for r in (sampled, full)]
    assert abs(moved[0] - moved[1]) <= 0.1 * moved[1], moved


@needs_ptxas
def test_a_transformer_profiles_kernel_by_kernel(tmp_path):
    path = os.path.join(ROOT, "test", "fixtures", "transformers", "gpt2", "model.onnx")
    artifact = str(tmp_path / "gpt2.kiln")
    kiln("compile", path, "--target", "cuda:sm_80,sm_90a", "--precision", "bf16",
         "--embed-kernel-ir", "-o", artifact)
    out, rows = profile(artifact)
    strategies = {r["strategy"] for r in rows.values()}
    # Every GEMM of a layer on tensor cores (the output projection too),
    # the norms row-fused, attention one flash kernel.
    assert {"gemm-small-m", "row-fused", "elementwise",
            "flash-attention-mma-sync"} <= strategies, out
    assert "gemm-simt" not in strategies, out
    assert "roofline bound" in out and "H200 SXM" in out


def test_profile_needs_the_simulator_and_a_known_gpu(tmp_path):
    path = os.path.join(ROOT, "test", "fixtures", "mlp", "model.onnx")
    artifact = str(tmp_path / "mlp.kiln")
    kiln("compile", path, "-o", artifact)
    result = kiln("profile", artifact, "--device", "cpu", check=False)
    assert result.returncode == 1
    assert "kiln profile runs on the simulator: pass --device sim" in result.stderr
    result = kiln("profile", artifact, "--device", "sim", "--gpu", "v100", check=False)
    assert result.returncode == 1
    assert "--gpu v100 is not one of h100, h200, a100" in result.stderr
    result = kiln("profile", artifact, "--device", "sim", check=False)
    assert result.returncode == 1
    assert "targets 'cpu'; the simulator runs cuda artifacts" in result.stderr
