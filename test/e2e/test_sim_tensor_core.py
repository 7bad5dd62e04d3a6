"""The simulator's tensor-core collectives (nvgpu.ldmatrix, nvgpu.mma.sync,
cp.async with its groups) against NumPy on random data: each kernel below
runs in `kiln-opt --kiln-test-simulate=data-dir=DIR`, which reads its
arguments from DIR and writes them back. The kernels address the fragments
as the PTX ISA's "Matrix Fragments for mma.m16n8k16" text lays them out;
one plants a wrong mapping, which must not match."""
import os
import subprocess

import numpy as np
import pytest

from conftest import KILN

KILN_OPT = os.path.join(os.path.dirname(KILN), "kiln-opt")

WORKGROUP = "#gpu.address_space<workgroup>"
LAUNCH = ("kiln.test_launch = {grid = array<i32: 1, 1, 1>, "
          "block = array<i32: 32, 1, 1>}")


def accumulate(shape, a_type, b_type, row1, tf32=False):
    """The C fragment loaded, one mma.sync, and D stored: c_i at row
    groupID + 8*(i/2) (`%grp` or `row1`), column 2*threadID_in_group + i%2."""
    flag = ", tf32Enabled" if tf32 else ""
    return f"""
      %col0 = arith.muli %tig, %c2 : index
      %col1 = arith.addi %col0, %c1 : index
      %x0 = memref.load %C[%grp, %col0] : memref<16x8xf32>
      %x1 = memref.load %C[%grp, %col1] : memref<16x8xf32>
      %x2 = memref.load %C[{row1}, %col0] : memref<16x8xf32>
      %x3 = memref.load %C[{row1}, %col1] : memref<16x8xf32>
      %fc = vector.from_elements %x0, %x1, %x2, %x3 : vector<2x2xf32>
      %fd = nvgpu.mma.sync (%fa, %fb, %fc) {{mmaShape = {shape}{flag}}}
          : ({a_type}, {b_type}, vector<2x2xf32>) -> vector<2x2xf32>
      %d0 = vector.extract %fd[0, 0] : f32 from vector<2x2xf32>
      %d1 = vector.extract %fd[0, 1] : f32 from vector<2x2xf32>
      %d2 = vector.extract %fd[1, 0] : f32 from vector<2x2xf32>
      %d3 = vector.extract %fd[1, 1] : f32 from vector<2x2xf32>
      memref.store %d0, %D[%grp, %col0] : memref<16x8xf32>
      memref.store %d1, %D[%grp, %col1] : memref<16x8xf32>
      memref.store %d2, %D[{row1}, %col0] : memref<16x8xf32>
      memref.store %d3, %D[{row1}, %col1] : memref<16x8xf32>
      gpu.return
    }}"""


def mma_kernel(name, t, wrong=False):
    """D = A @ B + C for one m16n8k16 tile: A and B go global -> shared with
    cp.async, then to registers with ldmatrix (A x4; B x2 transposed), C
    and D by the fragment formulas. `wrong` gives ldmatrix the rows of A in
    the wrong order (matrices 1 and 2 swapped)."""
    row, col = ("%rw", "%c8x") if wrong else ("%ra", "%ca")
    return f"""
    gpu.func @{name}(%A: memref<16x16x{t}>, %B: memref<16x8x{t}>,
        %C: memref<16x8xf32>, %D: memref<16x8xf32>)
        workgroup(%sa: memref<16x16x{t}, {WORKGROUP}>,
                  %sb: memref<16x8x{t}, {WORKGROUP}>)
        kernel attributes {{{LAUNCH}}} {{
      %l = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c2 = arith.constant 2 : index
      %c4 = arith.constant 4 : index
      %c8 = arith.constant 8 : index
      %c16 = arith.constant 16 : index
      // A: one 16-byte copy per lane (row l/2, columns 8*(l%2)..);
      // B: one per row, by lanes 0..15.
      %ar = arith.divui %l, %c2 : index
      %am = arith.remui %l, %c2 : index
      %ac = arith.muli %am, %c8 : index
      %t0 = nvgpu.device_async_copy %A[%ar, %ac], %sa[%ar, %ac], 8
          : memref<16x16x{t}> to memref<16x16x{t}, {WORKGROUP}>
      %low = arith.cmpi ult, %l, %c16 : index
      scf.if %low {{
        %t1 = nvgpu.device_async_copy %B[%l, %c0], %sb[%l, %c0], 8
            : memref<16x8x{t}> to memref<16x8x{t}, {WORKGROUP}>
      }}
      %g = nvgpu.device_async_create_group %t0
      nvgpu.device_async_wait %g {{numGroups = 0 : i32}}
      gpu.barrier
      // ldmatrix x4 of A: lane l gives row l%8 of matrix l/8; matrices
      // are (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15).
      %lo8 = arith.remui %l, %c8 : index
      %l8 = arith.divui %l, %c8 : index
      %m2 = arith.remui %l8, %c2 : index
      %m2x8 = arith.muli %m2, %c8 : index
      %ra = arith.addi %lo8, %m2x8 : index
      %l16 = arith.divui %l, %c16 : index
      %ca = arith.muli %l16, %c8 : index
      %hi8w = arith.muli %l16, %c8 : index
      %c8x = arith.muli %m2, %c8 : index
      %rw = arith.addi %lo8, %hi8w : index
      %fa = nvgpu.ldmatrix %sa[{row}, {col}] {{numTiles = 4 : i32, transpose = false}}
          : memref<16x16x{t}, {WORKGROUP}> -> vector<4x2x{t}>
      // ldmatrix x2 transposed of B: lane l gives row l%16 (k).
      %rb = arith.remui %l, %c16 : index
      %fb = nvgpu.ldmatrix %sb[%rb, %c0] {{numTiles = 2 : i32, transpose = true}}
          : memref<16x8x{t}, {WORKGROUP}> -> vector<2x2x{t}>
      // C and D: c_i at row groupID + 8*(i/2), column 2*threadID_in_group + i%2.
      %grp = arith.divui %l, %c4 : index
      %tig = arith.remui %l, %c4 : index
      %row1 = arith.addi %grp, %c8 : index""" + accumulate(
        "[16, 8, 16]", f"vector<4x2x{t}>", f"vector<2x2x{t}>", "%row1")


TF32_KERNEL = f"""
    gpu.func @mma_tf32(%A: memref<16x8xf32>, %B: memref<8x8xf32>,
        %C: memref<16x8xf32>, %D: memref<16x8xf32>)
        kernel attributes {{{LAUNCH}}} {{
      %l = gpu.thread_id x
      %c1 = arith.constant 1 : index
      %c2 = arith.constant 2 : index
      %c4 = arith.constant 4 : index
      %c8 = arith.constant 8 : index
      %grp = arith.divui %l, %c4 : index
      %tig = arith.remui %l, %c4 : index
      %g8 = arith.addi %grp, %c8 : index
      %t4 = arith.addi %tig, %c4 : index
      // m16n8k8 tf32: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4);
      // b0 (t, g), b1 (t+4, g).
      %a0 = memref.load %A[%grp, %tig] : memref<16x8xf32>
      %a1 = memref.load %A[%g8, %tig] : memref<16x8xf32>
      %a2 = memref.load %A[%grp, %t4] : memref<16x8xf32>
      %a3 = memref.load %A[%g8, %t4] : memref<16x8xf32>
      %fa = vector.from_elements %a0, %a1, %a2, %a3 : vector<4x1xf32>
      %b0 = memref.load %B[%tig, %grp] : memref<8x8xf32>
      %b1 = memref.load %B[%t4, %grp] : memref<8x8xf32>
      %fb = vector.from_elements %b0, %b1 : vector<2x1xf32>""" + accumulate(
    "[16, 8, 8]", "vector<4x1xf32>", "vector<2x1xf32>", "%g8", tf32=True)


def ldmatrix_kernel(name, transpose, tiles):
    """Each lane's ldmatrix result written out: OUT[lane][j] = element j of
    its vector<tiles x 2 x f16>, from a 32x8 f16 matrix in shared memory
    whose row r is given by lane r."""
    n = 2 * tiles
    stores = "\n".join(
        f"""      %e{j} = vector.extract %v[{j // 2}, {j % 2}] : f16 from vector<{tiles}x2xf16>
      %j{j} = arith.constant {j} : index
      memref.store %e{j}, %OUT[%l, %j{j}] : memref<32x{n}xf16>"""
        for j in range(n))
    return f"""
    gpu.func @{name}(%M: memref<32x8xf16>, %OUT: memref<32x{n}xf16>)
        workgroup(%s: memref<32x8xf16, {WORKGROUP}>)
        kernel attributes {{{LAUNCH}}} {{
      %l = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %t = nvgpu.device_async_copy %M[%l, %c0], %s[%l, %c0], 8
          : memref<32x8xf16> to memref<32x8xf16, {WORKGROUP}>
      %g = nvgpu.device_async_create_group %t
      nvgpu.device_async_wait %g
      gpu.barrier
      %v = nvgpu.ldmatrix %s[%l, %c0] {{numTiles = {tiles} : i32, transpose = {str(transpose).lower()}}}
          : memref<32x8xf16, {WORKGROUP}> -> vector<{tiles}x2xf16>
{stores}
      gpu.return
    }}"""


def simulate(tmp_path, kernels, data):
    """Runs `kernels` (gpu.func texts) with `data[name]` (argument arrays);
    returns each kernel's arguments after the run."""
    source = ("module attributes {gpu.container_module} {\n  gpu.module @m {"
              + "".join(kernels) + "\n  }\n}\n")
    (tmp_path / "k.mlir").write_text(source)
    for name, args in data.items():
        for i, a in enumerate(args):
            a.tofile(tmp_path / f"{name}.arg{i}.bin")
    result = subprocess.run(
        [KILN_OPT, str(tmp_path / "k.mlir"),
         f"--kiln-test-simulate=data-dir={tmp_path}", "-o", os.devnull],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr, result.stderr
    return {name: [np.fromfile(tmp_path / f"{name}.arg{i}.out.bin",
                               dtype=a.dtype).reshape(a.shape)
                   for i, a in enumerate(args)]
            for name, args in data.items()}


def bf16(x):
    """float32 -> bf16 bits (round to nearest even) and back as float32."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16), (rounded << 16).astype(np.uint32).view(np.float32)


def test_mma_sync_m16n8k16_f16_and_bf16_against_numpy(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 16)).astype(np.float16)
    b = rng.standard_normal((16, 8)).astype(np.float16)
    c = rng.standard_normal((16, 8)).astype(np.float32)
    a_bits, a_bf = bf16(rng.standard_normal((16, 16)))
    b_bits, b_bf = bf16(rng.standard_normal((16, 8)))
    zeros = np.zeros((16, 8), np.float32)
    out = simulate(tmp_path,
                   [mma_kernel("mma_f16", "f16"),
                    mma_kernel("mma_bf16", "bf16"),
                    mma_kernel("mma_f16_wrong", "f16", wrong=True)],
                   {"mma_f16": [a, b, c, zeros.copy()],
                    "mma_bf16": [a_bits, b_bits, c, zeros.copy()],
                    "mma_f16_wrong": [a, b, c, zeros.copy()]})
    want = a.astype(np.float64) @ b.astype(np.float64) + c
    np.testing.assert_allclose(out["mma_f16"][3], want, rtol=1e-5, atol=1e-5)
    want_bf = a_bf.astype(np.float64) @ b_bf.astype(np.float64) + c
    np.testing.assert_allclose(out["mma_bf16"][3], want_bf, rtol=1e-5, atol=1e-5)
    # A fragment mapping that is wrong (two 8x8 matrices of A swapped)
    # gives another product: the check above would catch it.
    assert not np.allclose(out["mma_f16_wrong"][3], want, rtol=1e-2, atol=1e-2)
    swapped = a.copy()
    swapped[8:, :8], swapped[:8, 8:] = a[:8, 8:], a[8:, :8]
    np.testing.assert_allclose(out["mma_f16_wrong"][3],
                               swapped.astype(np.float64) @ b + c,
                               rtol=1e-5, atol=1e-5)


def test_mma_sync_m16n8k8_tf32_truncates_its_inputs(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal((8, 8)).astype(np.float32)
    c = rng.standard_normal((16, 8)).astype(np.float32)
    out = simulate(tmp_path, [TF32_KERNEL],
                   {"mma_tf32": [a, b, c, np.zeros((16, 8), np.float32)]})

    def tf32(x):
        return (x.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)
    want = tf32(a).astype(np.float64) @ tf32(b).astype(np.float64) + c
    np.testing.assert_allclose(out["mma_tf32"][3], want, rtol=1e-6, atol=1e-6)
    # And not the full-precision product (tf32 keeps 10 mantissa bits).
    assert np.abs(out["mma_tf32"][3] - (a.astype(np.float64) @ b + c)).max() > 1e-5


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("tiles", [1, 2, 4])
def test_ldmatrix_gives_each_lane_its_elements(tmp_path, transpose, tiles):
    """Against the PTX ISA's table: for matrix m (rows 8m..8m+7 of M), lane
    l holds row l/4, columns 2(l%4) and 2(l%4)+1; transposed, column l/4,
    rows 2(l%4) and 2(l%4)+1."""
    m = np.arange(32 * 8, dtype=np.float16).reshape(32, 8)
    name = f"ldmatrix_x{tiles}_{'t' if transpose else 'n'}"
    out = simulate(tmp_path, [ldmatrix_kernel(name, transpose, tiles)],
                   {name: [m, np.zeros((32, 2 * tiles), np.float16)]})[name][1]
    for lane in range(32):
        for tile in range(tiles):
            for c in range(2):
                if transpose:
                    want = m[8 * tile + 2 * (lane % 4) + c, lane // 4]
                else:
                    want = m[8 * tile + lane // 4, 2 * (lane % 4) + c]
                assert out[lane, 2 * tile + c] == want, (lane, tile, c)
