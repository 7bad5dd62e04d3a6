"""The simulator's sm_90a collectives (TMA tile loads, mbarriers with
transaction counts and phases, wgmma through shared-memory descriptors with
the 128-byte swizzle, the accumulator's registers) against NumPy on
random data, in
`kiln-opt --kiln-test-simulate=data-dir=DIR` as test_sim_tensor_core.py does
for sm_80. The kernel is the shape of the sm_90a GEMM: thread 0 loads each
K slice with TMA into a stage of a ring (A as one [128][64] box, B as two
[64][64] boxes, N-major), every thread waits on the stage's mbarrier, one
warpgroup multiplies with nvgpu.warpgroup.mma, and mma.store writes D. The
edges (A has 100 rows, B 120 columns) come from TMA's zero fill. Planted
mistakes must be caught: a descriptor with the wrong leading byte offset
gives a different product, and the synchronization errors are reported."""
import os
import subprocess

import numpy as np
import pytest

from conftest import KILN
from test_sim_tensor_core import bf16

KILN_OPT = os.path.join(os.path.dirname(KILN), "kiln-opt")

WG = "#gpu.address_space<workgroup>"
BAR = f"!nvgpu.mbarrier.group<memorySpace = {WG}, num_barriers = 2>"
MAP_A = ("!nvgpu.tensormap.descriptor<tensor = memref<128x64xbf16, 3>, "
         "swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>")
MAP_B = ("!nvgpu.tensormap.descriptor<tensor = memref<64x64xbf16, 3>, "
         "swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>")
ACC = "!nvgpu.warpgroup.accumulator<fragmented = vector<128x128xf32>>"
DESC_A = "!nvgpu.warpgroup.descriptor<tensor = memref<128x64xbf16, 3>>"
DESC_B = "!nvgpu.warpgroup.descriptor<tensor = memref<64x128xbf16, 3>>"
M, N, K = 100, 120, 128


def register_stores(wrong_half=False, tid="%tid"):
    """D written from the accumulator's registers (what flash-attention-
    wgmma reads them as): register e of thread t is row 16 (t / 32) +
    t % 32 / 4 + 8 ((e % 4) / 2) + 64 (e / 64), column 8 (e % 64 / 4) +
    2 (t % 4) + e % 2 (the PTX D fragment, one struct per 64 rows). With
    `wrong_half` the two row halves of each quad are swapped."""
    lines = [
        f"%regs:128 = builtin.unrealized_conversion_cast %acc : {ACC} to "
        + ", ".join(["f32"] * 128),
        "%c32 = arith.constant 32 : index",
        "%c4 = arith.constant 4 : index",
        "%c16 = arith.constant 16 : index",
        f"%warp = arith.divui {tid}, %c32 : index",
        f"%lane = arith.remui {tid}, %c32 : index",
        "%wrow = arith.muli %warp, %c16 : index",
        "%quad = arith.divui %lane, %c4 : index",
        "%brow = arith.addi %wrow, %quad : index",
        "%inq = arith.remui %lane, %c4 : index",
        "%bcol = arith.muli %inq, %c2 : index",
    ]
    for e in range(128):
        half = e % 4 // 2
        if wrong_half:
            half = 1 - half
        row = 8 * half + 64 * (e // 64)
        col = 8 * (e % 64 // 4) + e % 2
        lines += [f"%ro{e} = arith.constant {row} : index",
                  f"%co{e} = arith.constant {col} : index",
                  f"%r{e} = arith.addi %brow, %ro{e} : index",
                  f"%k{e} = arith.addi %bcol, %co{e} : index",
                  f"memref.store %regs#{e}, %D[%r{e}, %k{e}] : memref<128x128xf32>"]
    return "\n      ".join(lines)


def signature(name, k, threads):
    """The gpu.func line of the test kernels: A [M, k], B [k, N], D, the
    two tensor maps, the A and B rings of two stages."""
    return f"""
    gpu.func @{name}(%A: memref<{M}x{k}xbf16>, %B: memref<{k}x{N}xbf16>,
        %D: memref<128x128xf32>,
        %mA: {MAP_A} {{kiln.test_tma_source = 0 : i64}},
        %mB: {MAP_B} {{kiln.test_tma_source = 1 : i64}})
        workgroup(%sa: memref<2x128x64xbf16, {WG}>,
                  %sb: memref<2x2x64x64xbf16, {WG}>)
        kernel attributes {{kiln.test_launch = {{grid = array<i32: 1, 1, 1>,
                                                block = array<i32: {threads}, 1, 1>}}}} {{"""


def slice_loads(bars, bar_type, first="%c0", second="%c64"):
    """Slice %s (K offset %k0) into stage %s: A's [128][64] box and B's two
    [64][64] boxes at columns `first` and `second`, on mbarrier %s of
    `bars`."""
    return f"""%da = memref.subview %sa[%s, 0, 0] [1, 128, 64] [1, 1, 1]
              : memref<2x128x64xbf16, {WG}>
              to memref<128x64xbf16, strided<[64, 1], offset: ?>, {WG}>
          nvgpu.tma.async.load %mA[%k0, %c0], {bars}[%s] to %da
              : {MAP_A}, {bar_type}
              -> memref<128x64xbf16, strided<[64, 1], offset: ?>, {WG}>
          %db0 = memref.subview %sb[%s, 0, 0, 0] [1, 1, 64, 64] [1, 1, 1, 1]
              : memref<2x2x64x64xbf16, {WG}>
              to memref<64x64xbf16, strided<[64, 1], offset: ?>, {WG}>
          %db1 = memref.subview %sb[%s, 1, 0, 0] [1, 1, 64, 64] [1, 1, 1, 1]
              : memref<2x2x64x64xbf16, {WG}>
              to memref<64x64xbf16, strided<[64, 1], offset: ?>, {WG}>
          nvgpu.tma.async.load %mB[{first}, %k0], {bars}[%s] to %db0
              : {MAP_B}, {bar_type}
              -> memref<64x64xbf16, strided<[64, 1], offset: ?>, {WG}>
          nvgpu.tma.async.load %mB[{second}, %k0], {bars}[%s] to %db1
              : {MAP_B}, {bar_type}
              -> memref<64x64xbf16, strided<[64, 1], offset: ?>, {WG}>"""


def stage_views(b_map="%mB", b_map_type=MAP_B):
    """%dA and %dB: the wgmma descriptors of stage %s."""
    return f"""%va = memref.subview %sa[%s, 0, 0] [1, 128, 64] [1, 1, 1]
            : memref<2x128x64xbf16, {WG}>
            to memref<128x64xbf16, strided<[64, 1], offset: ?>, {WG}>
        %off = arith.muli %s, %c8192 : index
        %vb = memref.reinterpret_cast %sb to offset: [%off], sizes: [64, 128],
            strides: [128, 1] : memref<2x2x64x64xbf16, {WG}>
            to memref<64x128xbf16, strided<[128, 1], offset: ?>, {WG}>
        %dA = nvgpu.warpgroup.generate.descriptor %va, %mA
            : memref<128x64xbf16, strided<[64, 1], offset: ?>, {WG}>, {MAP_A}
            -> {DESC_A}
        %dB = nvgpu.warpgroup.generate.descriptor %vb, {b_map}
            : memref<64x128xbf16, strided<[128, 1], offset: ?>, {WG}>, {b_map_type}
            -> {DESC_B}"""


def kernel(name, wrong_lead=False, swap_halves=False, no_wait=False,
           tx=32768, wait_group=0, final_wait=True, overwrite=False,
           registers=False, wrong_half=False):
    """D = A @ B through TMA, mbarriers and wgmma, 2 slices of K = 64.
    Planted mistakes: `wrong_lead` builds B's descriptor from A's tensor map
    (leading byte offset 16 KiB instead of 8), `swap_halves` loads B's
    column halves into each other's place, `no_wait` skips the mbarrier
    wait, `tx` expects other than the boxes' 32 KiB, `final_wait=False`
    stores the accumulators without retiring the last wgmma group,
    `overwrite` stores into the stage a wgmma group in flight reads.
    `registers` writes D from the accumulator's registers instead of
    mma.store (`wrong_half`: with a wrong fragment mapping)."""
    b_map, b_map_type = ("%mA", MAP_A) if wrong_lead else ("%mB", MAP_B)
    first, second = ("%c64", "%c0") if swap_halves else ("%c0", "%c64")
    retire = "nvvm.wgmma.wait.group.sync.aligned 0" if final_wait else ""
    clobber = (f"""scf.if %first {{
          %z = arith.constant 0.0 : bf16
          memref.store %z, %sa[%s, %c0, %c0] : memref<2x128x64xbf16, {WG}>
        }}""" if overwrite else "")
    store = (register_stores(wrong_half) if registers else
             f"nvgpu.warpgroup.mma.store %acc, %D : {ACC} to memref<128x128xf32>")
    wait = "" if no_wait else (
        f"nvgpu.mbarrier.try_wait.parity %bar[%s], %false, %ticks : {BAR}")
    return signature(name, K, 128) + f"""
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c2 = arith.constant 2 : index
      %c64 = arith.constant 64 : index
      %c8192 = arith.constant 8192 : index
      %tx = arith.constant {tx} : index
      %ticks = arith.constant 10000000 : index
      %false = arith.constant false
      %tid = gpu.thread_id x
      %first = arith.cmpi eq, %tid, %c0 : index
      %bar = nvgpu.mbarrier.create -> {BAR}
      scf.if %first {{
        nvgpu.mbarrier.init %bar[%c0], %c1 : {BAR}
        nvgpu.mbarrier.init %bar[%c1], %c1 : {BAR}
      }}
      gpu.barrier
      scf.for %s = %c0 to %c2 step %c1 {{
        scf.if %first {{
          %k0 = arith.muli %s, %c64 : index
          nvgpu.mbarrier.arrive.expect_tx %bar[%s], %tx : {BAR}
          {slice_loads("%bar", BAR, first, second)}
        }}
      }}
      %acc0 = nvgpu.warpgroup.mma.init.accumulator -> {ACC}
      %acc = scf.for %s = %c0 to %c2 step %c1 iter_args(%acc1 = %acc0) -> ({ACC}) {{
        {wait}
        {stage_views(b_map, b_map_type)}
        %r = nvgpu.warpgroup.mma %dA, %dB, %acc1 {{transposeB, waitGroup = {wait_group} : i64}}
            : {DESC_A}, {DESC_B}, {ACC} -> {ACC}
        {clobber}
        scf.yield %r : {ACC}
      }}
      {retire}
      {store}
      gpu.return
    }}"""


def run(tmp_path, kernels, data):
    source = ("module attributes {gpu.container_module} {\n  gpu.module @m {"
              + "".join(kernels) + "\n  }\n}\n")
    (tmp_path / "k.mlir").write_text(source)
    for name, args in data.items():
        for i, a in enumerate(args):
            a.tofile(tmp_path / f"{name}.arg{i}.bin")
    return subprocess.run(
        [KILN_OPT, str(tmp_path / "k.mlir"),
         f"--kiln-test-simulate=data-dir={tmp_path}", "-o", os.devnull],
        capture_output=True, text=True)


def inputs(seed):
    rng = np.random.default_rng(seed)
    a_bits, a = bf16(rng.standard_normal((M, K)))
    b_bits, b = bf16(rng.standard_normal((K, N)))
    return a_bits, a, b_bits, b


def test_tma_mbarrier_wgmma_against_numpy(tmp_path):
    a_bits, a, b_bits, b = inputs(0)
    d = np.zeros((128, 128), np.float32)
    names = ["wg", "wg_in_flight", "wg_swapped", "wg_registers",
             "wg_wrong_half"]
    # wg_in_flight leaves each slice's wgmma group in flight over the next
    # (waitGroup 1) and retires the last before the store. wg_registers
    # stores D from the accumulator's registers, wg_wrong_half with a wrong
    # fragment mapping.
    result = run(tmp_path, [kernel("wg"), kernel("wg_in_flight", wait_group=1),
                            kernel("wg_swapped", swap_halves=True),
                            kernel("wg_registers", registers=True),
                            kernel("wg_wrong_half", registers=True,
                                   wrong_half=True)],
                 {n: [a_bits, b_bits, d] for n in names})
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr, result.stderr
    out = {n: np.fromfile(tmp_path / f"{n}.arg2.out.bin", np.float32)
           .reshape(128, 128) for n in names}
    want = np.zeros((128, 128))
    # Rows past A's 100 and columns past B's 120 were zero-filled by TMA.
    want[:M, :N] = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(out["wg"], want, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(out["wg_in_flight"], out["wg"])
    np.testing.assert_array_equal(out["wg_registers"], out["wg"])
    assert not np.allclose(out["wg_wrong_half"], want, atol=1e-2)
    # B's two 64-column boxes landed in each other's place: the descriptor
    # (leading byte offset 8 KiB) then reads the columns swapped, which the
    # comparison above would catch.
    swapped = out["wg_swapped"]
    assert not np.allclose(swapped, want, atol=1e-2)
    b_wide = np.zeros((K, 128))
    b_wide[:, :N] = b
    want_swapped = np.zeros((128, 128))
    want_swapped[:M] = a.astype(np.float64) @ np.concatenate(
        [b_wide[:, 64:], b_wide[:, :64]], axis=1)
    np.testing.assert_allclose(swapped, want_swapped, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("variant, message", [
    (dict(no_wait=True), "while an asynchronous copy into it is in flight"),
    (dict(tx=40000), "waits forever"),
    # The second half of B 16 KiB on: in the stage whose copy is in flight.
    (dict(wrong_lead=True), "while an asynchronous copy into it is in flight"),
    # Registers read before the last wgmma group retired.
    (dict(wait_group=1, final_wait=False), "while a wgmma group of warpgroup 0"),
    (dict(wait_group=1, final_wait=False, registers=True),
     "reads the accumulators while a wgmma group of warpgroup 0"),
    # A plain store into the stage the group in flight reads.
    (dict(wait_group=1, overwrite=True), "writes shared memory that a wgmma still reads"),
])
def test_synchronization_mistakes_are_reported(tmp_path, variant, message):
    a_bits, _, b_bits, _ = inputs(1)
    result = run(tmp_path, [kernel("bad", **variant)],
                 {"bad": [a_bits, b_bits, np.zeros((128, 128), np.float32)]})
    assert message in result.stderr, result.stderr


K2 = 256  # four slices through a ring of two stages: each is refilled


def specialized(name, release="after_retire", producer_waits=True,
                consumers=1):
    """The warp-specialized shape of gemm-wgmma: warpgroup 0 produces
    (thread 0 waits for a free stage on `empty`, arms `full` and issues the
    TMA loads), warpgroup 1 consumes (waits on `full`, wgmma with one group
    in flight, releases the stage of the group that retired). The roles
    wait on each other, so the simulator must run them as concurrent roles.
    Planted mistakes: `release="early"` releases the stage of the group
    still in flight, `release=None` never releases, `producer_waits=False`
    refills without waiting for a release. With `consumers=2` a second
    consumer warpgroup (256..383, in a nested branch: a third role) reads
    every stage too and releases it as well (it stores nothing)."""
    ring = f"!nvgpu.mbarrier.group<memorySpace = {WG}, num_barriers = 2>"
    if release == "after_retire":
        free = """%later = arith.cmpi ugt, %i, %c0 : index
        scf.if %later {
          scf.if %leader {
            %ps = arith.subi %i, %c1 : index
            %pst = arith.remui %ps, %c2 : index
            %tok = nvgpu.mbarrier.arrive %empty[%pst] : RING -> !nvgpu.mbarrier.token
          }
        }"""
    elif release == "early":
        free = """scf.if %leader {
          %tok = nvgpu.mbarrier.arrive %empty[%s] : RING -> !nvgpu.mbarrier.token
        }"""
    else:
        free = ""
    free = free.replace("RING", ring)
    wait_free = (f"nvgpu.mbarrier.try_wait.parity %empty[%s], %pe, %ticks : {ring}"
                 if producer_waits else "")

    def consumer(base, store):
        return f"""%ctid = arith.subi %tid, %c{base} : index
        %lanes = arith.remui %ctid, %c128 : index
        %leader = arith.cmpi eq, %lanes, %c0 : index
        %acc0 = nvgpu.warpgroup.mma.init.accumulator -> {ACC}
        %acc = scf.for %i = %c0 to %slices step %c1 iter_args(%acc1 = %acc0) -> ({ACC}) {{
          %s = arith.remui %i, %c2 : index
          %round = arith.divui %i, %c2 : index
          %pr = arith.remui %round, %c2 : index
          %pi = arith.index_cast %pr : index to i64
          %pf = arith.trunci %pi : i64 to i1
          nvgpu.mbarrier.try_wait.parity %full[%s], %pf, %ticks : {ring}
          {stage_views()}
          %r = nvgpu.warpgroup.mma %dA, %dB, %acc1 {{transposeB, waitGroup = 1 : i64}}
              : {DESC_A}, {DESC_B}, {ACC} -> {ACC}
          {free}
          scf.yield %r : {ACC}
        }}
        nvvm.wgmma.wait.group.sync.aligned 0
        {register_stores(tid="%ctid") if store else ""}"""
    consumer_roles = consumer(128, True) if consumers == 1 else f"""%second = arith.cmpi uge, %tid, %c256 : index
        scf.if %second {{
          {consumer(256, False)}
        }} else {{
          {consumer(128, True)}
        }}"""
    return signature(name, K2, 128 * (1 + consumers)) + f"""
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c2 = arith.constant 2 : index
      %c64 = arith.constant 64 : index
      %c128 = arith.constant 128 : index
      %c256 = arith.constant 256 : index
      %releases = arith.constant {consumers} : index
      %slices = arith.constant 4 : index
      %c8192 = arith.constant 8192 : index
      %tx = arith.constant 32768 : index
      %ticks = arith.constant 10000000 : index
      %tid = gpu.thread_id x
      %first = arith.cmpi eq, %tid, %c0 : index
      %full = nvgpu.mbarrier.create -> {ring}
      %empty = nvgpu.mbarrier.create -> {ring}
      scf.if %first {{
        nvgpu.mbarrier.init %full[%c0], %c1 : {ring}
        nvgpu.mbarrier.init %full[%c1], %c1 : {ring}
        nvgpu.mbarrier.init %empty[%c0], %releases : {ring}
        nvgpu.mbarrier.init %empty[%c1], %releases : {ring}
      }}
      gpu.barrier
      %producer = arith.cmpi ult, %tid, %c128 : index
      scf.if %producer {{
        nvvm.setmaxregister decrease 40
        scf.if %first {{
          scf.for %i = %c0 to %slices step %c1 {{
            %s = arith.remui %i, %c2 : index
            %round = arith.divui %i, %c2 : index
            %next = arith.addi %round, %c1 : index
            %pr = arith.remui %next, %c2 : index
            %pi = arith.index_cast %pr : index to i64
            %pe = arith.trunci %pi : i64 to i1
            {wait_free}
            %k0 = arith.muli %i, %c64 : index
            nvgpu.mbarrier.arrive.expect_tx %full[%s], %tx : {ring}
            {slice_loads("%full", ring)}
          }}
        }}
      }} else {{
        nvvm.setmaxregister increase 232
        {consumer_roles}
      }}
      gpu.return
    }}"""


@pytest.mark.parametrize("consumers", [1, 2])
def test_warp_specialized_roles_against_numpy(tmp_path, consumers):
    """With two consumers the roles nest (the second consumer starts when
    the first waits) and each stage is read by two warpgroups at different
    times before the producer refills it: ordered by both releases."""
    rng = np.random.default_rng(5)
    a_bits, a = bf16(rng.standard_normal((M, K2)))
    b_bits, b = bf16(rng.standard_normal((K2, N)))
    result = run(tmp_path, [specialized("ws", consumers=consumers)],
                 {"ws": [a_bits, b_bits, np.zeros((128, 128), np.float32)]})
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr, result.stderr
    got = np.fromfile(tmp_path / "ws.arg2.out.bin", np.float32).reshape(128, 128)
    want = np.zeros((128, 128))
    want[:M, :N] = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("variant, message", [
    # The stage released while the wgmma that reads it is in flight: the
    # producer's refill is not ordered after the read.
    (dict(release="early"), "a TMA load races with a read of shared buffer "
                            "#0 element 0 (thread (0,0,0)) by the wgmma of "
                            "warpgroup 1"),
    # Nothing releases a stage: the producer waits forever.
    (dict(release=None), "waits forever"),
    # A refill that does not wait for the release arms the stage's full
    # barrier again in the phase its first fill has not completed.
    (dict(producer_waits=False), "more arrivals on an mbarrier than its "
                                 "count (1) in one phase"),
])
def test_warp_specialization_mistakes_are_reported(tmp_path, variant, message):
    rng = np.random.default_rng(6)
    a_bits, _ = bf16(rng.standard_normal((M, K2)))
    b_bits, _ = bf16(rng.standard_normal((K2, N)))
    result = run(tmp_path, [specialized("bad", **variant)],
                 {"bad": [a_bits, b_bits, np.zeros((128, 128), np.float32)]})
    assert message in result.stderr, result.stderr
