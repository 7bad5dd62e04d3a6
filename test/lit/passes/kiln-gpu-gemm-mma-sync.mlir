// RUN: kiln-opt %s --split-input-file --kiln-gpu-gemm-mma-sync --canonicalize --cse | FileCheck %s

// COM: 96x40 (bf16) @ 40x80 (bf16) summed in f32, 64x64x32 tiles over 2x2
// COM: warps: a 2x2 grid of 128-thread blocks; a 3-stage ring per operand
// COM: in shared memory ([stage][m][k] for A, [stage][k][n] for B); the
// COM: prologue loads slices 0 and 1 (one commit group each); each of the
// COM: 2 K slices waits for all but the newest group, synchronizes, loads
// COM: slice k+2 (zero-filled past K), and runs 2 k16 steps of 2 A
// COM: fragments (ldmatrix x4) and 4 B fragments (transposed ldmatrix x2)
// COM: into 2x4 m16n8k16 tiles with f32 accumulators in registers; the
// COM: zero fill becomes the accumulators' start; the epilogue stores each
// COM: lane's adjacent column pairs as 16 guarded 8-byte vector stores.
// CHECK-LABEL: func.func @matmul
// CHECK-NOT: linalg.fill
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c2, %{{.*}} = %c2, %{{.*}} = %c1) threads({{.*}}) in (%{{.*}} = %c128, %{{.*}} = %c1, %{{.*}} = %c1) workgroup(%[[A:.*]] : memref<3x64x32xbf16, #gpu.address_space<workgroup>>, %[[B:.*]] : memref<3x32x64xbf16, #gpu.address_space<workgroup>>)
// CHECK-COUNT-2: nvgpu.device_async_copy %arg0{{.*}}, %[[A]]{{.*}}, 8, %{{.*}} {bypassL1}
// CHECK-COUNT-2: nvgpu.device_async_copy %arg1{{.*}}, %[[B]]{{.*}}, 8, %{{.*}} {bypassL1}
// CHECK: nvgpu.device_async_create_group
// CHECK: nvgpu.device_async_create_group
// CHECK: scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args({{.*}}) -> (vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, !nvgpu.device.async.token)
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 1 : i32}
// CHECK-NEXT: gpu.barrier
// CHECK-COUNT-4: nvgpu.device_async_copy
// CHECK: nvgpu.device_async_create_group
// CHECK-COUNT-2: nvgpu.ldmatrix %[[A]]{{.*}} {numTiles = 4 : i32, transpose = false} : memref<3x64x32xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
// CHECK-COUNT-4: nvgpu.ldmatrix %[[B]]{{.*}} {numTiles = 2 : i32, transpose = true} : memref<3x32x64xbf16, #gpu.address_space<workgroup>> -> vector<2x2xbf16>
// CHECK-COUNT-8: nvgpu.mma.sync
// CHECK-COUNT-2: nvgpu.ldmatrix %[[A]]
// CHECK-COUNT-4: nvgpu.ldmatrix %[[B]]
// CHECK-COUNT-8: nvgpu.mma.sync({{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xbf16>, vector<2x2xbf16>, vector<2x2xf32>) -> vector<2x2xf32>
// CHECK: scf.yield
// CHECK-COUNT-16: vector.store %{{.*}}, %arg2{{.*}} : memref<96x80xf32>, vector<2xf32>
// CHECK-NOT: linalg.matmul
func.func @matmul(%a: memref<96x40xbf16>, %b: memref<40x80xbf16>, %c: memref<96x80xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<96x80xf32>)
  linalg.matmul ins(%a, %b : memref<96x40xbf16>, memref<40x80xbf16>) outs(%c : memref<96x80xf32>)
  return
}

// -----

// COM: B read with K innermost (x @ y^T): stored [stage][n][k] and read
// COM: with non-transposed ldmatrix; A with M innermost (x^T): stored
// COM: [stage][k][m], transposed ldmatrix x4. The batch is grid z. One K
// COM: slice: a ring of 2 stages does what 3 would.
// CHECK-LABEL: func.func @transposed_operands
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1, %{{.*}} = %c1, %{{.*}} = %c4) {{.*}} workgroup(%[[A:.*]] : memref<2x32x64xf16, #gpu.address_space<workgroup>>, %[[B:.*]] : memref<2x64x32xf16, #gpu.address_space<workgroup>>)
// CHECK: nvgpu.ldmatrix %[[A]]{{.*}} {numTiles = 4 : i32, transpose = true}
// CHECK: nvgpu.ldmatrix %[[B]]{{.*}} {numTiles = 2 : i32, transpose = false}
// CHECK: nvgpu.mma.sync({{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xf16>, vector<2x2xf16>, vector<2x2xf32>) -> vector<2x2xf32>
#ta = affine_map<(b, m, n, k) -> (b, k, m)>
#tb = affine_map<(b, m, n, k) -> (b, n, k)>
#tc = affine_map<(b, m, n, k) -> (b, m, n)>
func.func @transposed_operands(%x: memref<4x32x48xf16>, %y: memref<4x40x32xf16>, %c: memref<4x48x40xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  linalg.generic {indexing_maps = [#ta, #tb, #tc], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%x, %y : memref<4x32x48xf16>, memref<4x40x32xf16>) outs(%c : memref<4x48x40xf32>) {
  ^bb0(%p: f16, %q: f16, %acc: f32):
    %pe = arith.extf %p : f16 to f32
    %qe = arith.extf %q : f16 to f32
    %m = arith.mulf %pe, %qe : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// COM: Left for other strategies: f32 operands, and an f16 contraction whose
// COM: row stride (36 elements) does not allow 16-byte chunks.
// CHECK-LABEL: func.func @not_taken
// CHECK-NOT: gpu.launch
// CHECK: linalg.matmul
// CHECK: linalg.matmul
func.func @not_taken(%a: memref<32x32xf32>, %b: memref<32x32xf32>, %c: memref<32x32xf32>, %d: memref<32x36xf16>, %e: memref<36x16xf16>, %f: memref<32x16xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  linalg.matmul ins(%a, %b : memref<32x32xf32>, memref<32x32xf32>) outs(%c : memref<32x32xf32>)
  linalg.matmul ins(%d, %e : memref<32x36xf16>, memref<36x16xf16>) outs(%f : memref<32x16xf32>)
  return
}
