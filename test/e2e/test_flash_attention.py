"""flash-attention-mma-sync: every configuration GPU selection chooses for
`kiln.attention` (head sizes 32 to 128, padded ones among them; 1 to 4
warps of query rows; key tiles of 64 and 32; causal with and without a
past, additive and boolean masks, grouped-query heads, softcap, sequence
lengths that are not multiples of the tiles, a few query rows against a
long KV cache, split-KV decode with its combine launch, a split left
without key tiles among them), compiled with --precision for cuda:sm_80,sm_90a and run
under the GPU-kernel simulator against a float64 NumPy reference, and for
the CPU (the same op as cpu-flash-attention's loop nest, in f32) against
the same reference, at fp32 and bf16; and its SASS on both
architectures."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import (F32_NORMWISE_TOLERANCE, PRECISION_TOLERANCES,
                      input_args, kiln, normwise_error)
from test_sass import count, needs_ptxas, sass_by_function

TARGET = "cuda:sm_80,sm_90a"
STRATEGY = "flash-attention-mma-sync"

# name: (batch, query heads, kv heads, queries, past, new keys, head, options)
# `past` keys come in as past_key / past_value (a KV cache): the causal mask
# is then offset by the past length. `tile` is what selection must choose.
CASES = {
    "d64_causal": dict(shape=(1, 2, 2, 128, 0, 128, 64), causal=True,
                       tile=[64, 64]),
    # No mask, 4 query tiles per head: 8 blocks, so the 4 key tiles are
    # split 2 ways as well.
    "d64_full_4tiles": dict(shape=(1, 2, 2, 256, 0, 256, 64), tile=[64, 64],
                            splits=2),
    "d128_gqa_edges": dict(shape=(1, 4, 2, 80, 0, 80, 128), causal=True,
                           tile=[64, 64]),
    "d80_additive_mask": dict(shape=(2, 2, 2, 40, 0, 40, 80), mask="additive",
                              tile=[48, 64]),
    "d96_bool_mask_gqa3": dict(shape=(1, 3, 1, 33, 0, 50, 96), mask="bool",
                               tile=[48, 64]),
    "d32_short": dict(shape=(2, 2, 2, 16, 0, 16, 32), causal=True,
                      tile=[16, 64]),
    # Decode rows with grouped-query heads: the group's 2 query heads are
    # packed into the rows of one tile (pack_heads), K/V loaded once.
    "decode_past": dict(shape=(1, 4, 2, 3, 97, 3, 64), causal=True,
                        tile=[16, 64], pack=True),
    "decode_pack_mask": dict(shape=(2, 6, 2, 4, 60, 4, 64), causal=True,
                             mask="additive", tile=[16, 64], pack=True),
    "softcap": dict(shape=(1, 2, 2, 24, 0, 24, 64), causal=True, softcap=5.0,
                    tile=[32, 64]),
    # Decode against a long cache: 2 blocks (heads packed) would leave the
    # SMs idle, so the 16 key tiles are split 8 ways (2 each) and combined.
    "decode_split": dict(shape=(1, 4, 2, 2, 1000, 2, 64), causal=True,
                         tile=[16, 64], splits=8, pack=True),
    # 4 blocks, 13 key tiles of 64 split 6 ways (3 each): the last split
    # has no tile and must not disturb the combine.
    "decode_split_empty_gqa4": dict(shape=(2, 8, 2, 1, 799, 1, 128),
                                    causal=True, tile=[16, 64], splits=6,
                                    pack=True),
}


def build(name, path, case=None):
    """An opset-23 Attention node for the case (`CASES[name]` unless given);
    returns its inputs and a float64 NumPy reference of its output."""
    case = case or CASES[name]
    b, hq, hkv, s, past, new, d = case["shape"]
    rng = np.random.default_rng(sum(map(ord, name)))
    f = TensorProto.FLOAT
    vi = helper.make_tensor_value_info
    arrays = {"q": rng.standard_normal((b, hq, s, d), dtype=np.float32),
              "k": rng.standard_normal((b, hkv, new, d), dtype=np.float32),
              "v": rng.standard_normal((b, hkv, new, d), dtype=np.float32)}
    names = ["q", "k", "v"]
    keys = past + new
    mask = None
    if case.get("mask") == "additive":
        # A padding mask per batch row (the last keys of batch 1 masked)
        # plus a small bias everywhere.
        mask = 0.25 * rng.standard_normal((b, 1, 1, keys)).astype(np.float32)
        mask[1, ..., keys - 7:] = -np.inf
        arrays["mask"] = mask
    elif case.get("mask") == "bool":
        mask = rng.random((s, keys)) < 0.7
        mask[:, 0] = True  # no row without a key
        arrays["mask"] = mask
    names.append("mask" if mask is not None else "")
    if past:
        arrays["past_k"] = rng.standard_normal((b, hkv, past, d), dtype=np.float32)
        arrays["past_v"] = rng.standard_normal((b, hkv, past, d), dtype=np.float32)
        names += ["past_k", "past_v"]
    while names and not names[-1]:
        names.pop()
    attrs = {}
    if case.get("causal"):
        attrs["is_causal"] = 1
    if case.get("softcap"):
        attrs["softcap"] = case["softcap"]
    outputs = [vi("y", f, [b, hq, s, d])]
    output_names = ["y"]
    if past:
        outputs += [vi("present_k", f, [b, hkv, keys, d]),
                    vi("present_v", f, [b, hkv, keys, d])]
        output_names += ["present_k", "present_v"]
    inputs = [vi(n, TensorProto.BOOL if n == "mask" and mask.dtype == bool else f,
                 list(arrays[n].shape)) for n in names if n]
    graph = helper.make_graph(
        [helper.make_node("Attention", names, output_names, **attrs)], name,
        inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    onnx.save(model, path)

    # The reference, in float64.
    k = arrays["k"].astype(np.float64)
    v = arrays["v"].astype(np.float64)
    if past:
        k = np.concatenate([arrays["past_k"], arrays["k"]], axis=2).astype(np.float64)
        v = np.concatenate([arrays["past_v"], arrays["v"]], axis=2).astype(np.float64)
    k = np.repeat(k, hq // hkv, axis=1)
    v = np.repeat(v, hq // hkv, axis=1)
    scores = arrays["q"].astype(np.float64) @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    if case.get("softcap"):
        scores = case["softcap"] * np.tanh(scores / case["softcap"])
    if case.get("mask") == "additive":
        scores = scores + mask
    elif case.get("mask") == "bool":
        scores = np.where(mask, scores, -np.inf)
    if case.get("causal"):
        allowed = np.arange(keys)[None, :] <= np.arange(s)[:, None] + past
        scores = np.where(allowed, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    want = (p / p.sum(axis=-1, keepdims=True)) @ v
    feeds = {n: arrays[n] for n in names if n}
    return feeds, want


def run(artifact, feeds, device, tmp_path):
    out = tmp_path / f"out_{device}"
    args = ["run", artifact, "--device", device, "--output-dir", str(out)]
    for name, value in feeds.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}=@{tmp_path / (name + '.npy')}"]
    kiln(*args)
    return np.load(out / "y.npy")


@needs_ptxas
@pytest.mark.parametrize("name", sorted(CASES))
def test_flash_attention_under_the_simulator(name, tmp_path):
    path = str(tmp_path / f"{name}.onnx")
    feeds, want = build(name, path)
    precisions = ["bf16", "fp16"] if name == "d64_causal" else ["bf16"]
    for precision in precisions:
        artifact = str(tmp_path / f"{name}.{precision}.kiln")
        kiln("compile", path, "--target", TARGET, "--precision", precision,
             "--embed-kernel-ir", "-o", artifact)
        info = json.loads(kiln("inspect", artifact, "--json").stdout)
        flash = [k for k in info["kernels"] if k["strategy"] == STRATEGY]
        # Split-KV is two launches: the splits, then their combine.
        split = "splits" in CASES[name]
        assert len(flash) == 1 + split, [k["strategy"] for k in info["kernels"]]
        expected = {"tile": CASES[name]["tile"], "stages": 2}
        if split:
            expected["splits"] = CASES[name]["splits"]
        if CASES[name].get("pack"):
            expected["pack_heads"] = 1
        assert all(k["config"] == expected for k in flash), flash
        got = run(artifact, feeds, "sim", tmp_path)
        error = normwise_error(got, want)
        assert error <= PRECISION_TOLERANCES[precision], (precision, error)
    # The CPU runs the same op as one loop nest with an online softmax:
    # f32 to f32's tolerance, bf16 to the bf16 one.
    for precision in ["fp32", "bf16"]:
        artifact = str(tmp_path / f"{name}.cpu.{precision}.kiln")
        kiln("compile", path, "--precision", precision, "-o", artifact)
        info = json.loads(kiln("inspect", artifact, "--json").stdout)
        assert "cpu-flash-attention" in [k["strategy"] for k in info["kernels"]]
        error = normwise_error(run(artifact, feeds, "cpu", tmp_path), want)
        tolerance = PRECISION_TOLERANCES.get(precision, F32_NORMWISE_TOLERANCE)
        assert error <= tolerance, ("cpu", precision, error)


@needs_ptxas
def test_f32_attention_stays_on_the_fallback(tmp_path):
    """Without --precision there is no f32 tensor-core product: the op runs
    as attention-fallback, and a head under 16 elements stays f32 under
    --precision too."""
    path = str(tmp_path / "d32_short.onnx")
    build("d32_short", path)
    artifact = str(tmp_path / "f32.kiln")
    kiln("compile", path, "--target", TARGET, "-o", artifact)
    info = json.loads(kiln("inspect", artifact, "--json").stdout)
    assert STRATEGY not in {k["strategy"] for k in info["kernels"]}


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("name", ["d64_causal", "d128_gqa_edges"])
def test_sass_of_flash_attention(name, arch, tmp_path):
    path = str(tmp_path / f"{name}.onnx")
    build(name, path)
    artifact = str(tmp_path / f"{name}.kiln")
    kiln("compile", path, "--target", TARGET, "--precision", "bf16", "-o", artifact)
    info, sass = sass_by_function(artifact, arch)
    (kernel,) = [k for k in info["kernels"] if k["strategy"] == STRATEGY]
    code = sass[kernel["symbol"]]
    d = CASES[name]["shape"][6]
    bm, bn = kernel["config"]["tile"]
    # Per KV tile and warp: (d/16) x (bn/8) HMMAs for Q Kᵀ and (bn/16) x
    # (d/8) for P V.
    per_tile = (d // 16) * (bn // 8) + (bn // 16) * (d // 8)
    hmma = count(code, "HMMA.16816.F32.BF16")
    assert hmma >= per_tile, hmma
    assert count(code, "LDSM.16.M88.4") >= d // 16   # Q fragments, once
    assert count(code, "LDSM.16.M88.2") >= 1         # K: Kᵀ n-major
    assert count(code, "LDSM.16.MT88.2") >= 1        # V: transposed
    assert count(code, "LDGSTS.E.BYPASS.128") >= 2   # cp.async of 16 bytes
    assert count(code, "SHFL.BFLY") >= 4             # row max and sum
    assert count(code, "STL") == 0 and count(code, "LDL") == 0
    # Past 48 KiB the tiles are dynamic shared memory, 1 KiB aligned.
    image = next(i for i in kernel["images"] if i["arch"] == arch)
    tiles = 2 * (bm * d + 2 * bn * 2 * d)
    if tiles <= 48 * 1024:
        assert image["shared_bytes"] == tiles
    else:
        assert kernel["dynamic_shared_bytes"] == tiles + 1024, kernel


def flash_moved_mb(name, tmp_path, column=5):
    """The MB the case's flash launch moves between L2 and the SMs, per
    `kiln profile` over every block (the split launch where there is a
    combine after it); another of its columns with `column`."""
    path = str(tmp_path / f"{name}.onnx")
    feeds, _ = build(name, path)
    artifact = str(tmp_path / f"{name}.kiln")
    kiln("compile", path, "--target", TARGET, "--precision", "bf16",
         "--embed-kernel-ir", "-o", artifact)
    report = kiln("profile", artifact, "--device", "sim", "--sample-blocks",
                  "0", *input_args(feeds, tmp_path)).stdout
    row = next(line.split() for line in report.splitlines()
               if len(line.split()) > 5 and line.split()[1] == STRATEGY)
    return float(row[column])


@needs_ptxas
def test_decode_reads_the_cache_once(tmp_path):
    """Split-KV decode with 4 query heads per KV head, packed into the rows
    of one tile: the simulator's counters (a model of the traffic, not a
    measurement) show the flash launch moving each byte of the cache about
    once, where a block per query head would move it 4 times."""
    name = "decode_split_empty_gqa4"
    moved_mb = flash_moved_mb(name, tmp_path)
    b, _, hkv, _, past, new, d = CASES[name]["shape"]
    cache_mb = 2 * b * hkv * (past + new) * d * 2 / 1e6  # K and V, bf16
    assert cache_mb <= moved_mb <= 1.15 * cache_mb, (moved_mb, cache_mb)


@needs_ptxas
def test_prefill_reads_kv_once_per_query_tile(tmp_path):
    """Prefill without a mask, 4 query tiles of 64 rows per head, the key
    tiles split 2 ways: each block streams its half of the head's K and V
    once, so the flash launch moves 4 x (K + V), Q once per split, and
    each split's f32 part of O with its rows' max and sum, per the
    simulator's counters (a model of the traffic, not a measurement): no
    re-reads of K/V within a block, no score matrix in memory."""
    name = "d64_full_4tiles"
    moved_mb = flash_moved_mb(name, tmp_path)
    b, hq, hkv, s, _, keys, d = CASES[name]["shape"]
    q_tiles, splits = s // CASES[name]["tile"][0], CASES[name]["splits"]
    kv_mb = 2 * b * hkv * keys * d * 2 / 1e6
    q_mb = b * hq * s * d * 2 / 1e6
    parts_mb = splits * b * hq * s * (d + 2) * 4 / 1e6
    want = q_tiles * kv_mb + splits * q_mb + parts_mb
    assert 0.95 * want <= moved_mb <= 1.1 * want, (moved_mb, want)


@needs_ptxas
@pytest.mark.parametrize("name", ["d64_full_4tiles", "d128_gqa_edges"])
def test_output_leaves_in_whole_sectors(name, tmp_path):
    """O goes through shared memory and out in 16-byte chunks of whole rows
    (a quad's bf16 pairs would fill half a sector): the kernel's traffic
    is coalesced (`coal`, the profile's moved bytes over the bytes asked
    for; edges of 80 rows included)."""
    assert flash_moved_mb(name, tmp_path, column=8) <= 1.01
