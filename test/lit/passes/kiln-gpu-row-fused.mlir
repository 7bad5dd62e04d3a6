// RUN: kiln-opt %s --split-input-file --kiln-gpu-row-fused --canonicalize --cse --verify-diagnostics | FileCheck %s

// COM: An RMS norm over rows of 64 (f32), 8 rows: one launch of one
// COM: 256-thread block (a warp per row); each thread holds 2 elements
// COM: (j = t and t + 32) of x, loaded once; the sum of squares folds them,
// COM: a butterfly of 5 xor shuffles gives every lane the row's sum, which
// COM: stays in a register (the temporary is gone); y is stored twice per
// COM: thread.
// CHECK-LABEL: func.func @rms_norm
// CHECK-NOT: memref.alloc
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1, %{{.*}} = %c1, %{{.*}} = %c1) threads({{.*}}) in (%{{.*}} = %c256, %{{.*}} = %c1, %{{.*}} = %c1)
// CHECK-COUNT-2: memref.load %arg0
// CHECK-NOT: memref.load %arg0
// CHECK-COUNT-5: gpu.shuffle  xor
// CHECK-NOT: gpu.barrier
// CHECK: math.rsqrt
// CHECK: memref.store %{{.*}}, %arg2
// CHECK: memref.store %{{.*}}, %arg2
// CHECK-NOT: memref.store
// CHECK-NOT: linalg.generic
#full = affine_map<(r, d) -> (r, d)>
#row = affine_map<(r, d) -> (r, 0)>
#col = affine_map<(r, d) -> (d)>
func.func @rms_norm(%x: memref<8x64xf32>, %w: memref<64xf32>, %y: memref<8x64xf32>) attributes {kiln.kernel, kiln.config = {strategy = "row-fused", warps_per_row = 1 : i64, rows_per_block = 8 : i64}} {
  %zero = arith.constant 0.0 : f32
  %sum = memref.alloc() : memref<8x1xf32>
  linalg.fill ins(%zero : f32) outs(%sum : memref<8x1xf32>)
  linalg.generic {indexing_maps = [#full, #row], iterator_types = ["parallel", "reduction"]} ins(%x : memref<8x64xf32>) outs(%sum : memref<8x1xf32>) {
  ^bb0(%v: f32, %acc: f32):
    %sq = arith.mulf %v, %v : f32
    %s = arith.addf %acc, %sq : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#full, #row, #col, #full], iterator_types = ["parallel", "parallel"]} ins(%x, %sum, %w : memref<8x64xf32>, memref<8x1xf32>, memref<64xf32>) outs(%y : memref<8x64xf32>) {
  ^bb0(%v: f32, %s: f32, %g: f32, %o: f32):
    %n = arith.constant 64.0 : f32
    %eps = arith.constant 1.0e-6 : f32
    %ms = arith.divf %s, %n : f32
    %e = arith.addf %ms, %eps : f32
    %inv = math.rsqrt %e : f32
    %t = arith.mulf %v, %inv : f32
    %r = arith.mulf %t, %g : f32
    linalg.yield %r : f32
  }
  memref.dealloc %sum : memref<8x1xf32>
  return
}

// -----

// COM: Rows of 100 over 2 warps (64 threads per row, 4 rows per block: 3
// COM: rows, so 1 block and the 4th row's threads only help the barrier):
// COM: slot 1 (j = t + 64) exists for t < 36 only, so its contribution is
// COM: selected against the identity and its store guarded; the warps'
// COM: partials meet in shared memory after a barrier. A per-row step
// COM: (the mean) runs once per row and its result, a kernel output, is
// COM: stored by the row's first thread.
// CHECK-LABEL: func.func @two_warps
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1, {{.*}} threads({{.*}}) in (%{{.*}} = %c256, {{.*}} workgroup(%[[S:.*]] : memref<4x2xf32, #gpu.address_space<workgroup>>)
// CHECK: arith.select
// CHECK-COUNT-5: gpu.shuffle  xor
// CHECK: memref.store %{{.*}}, %[[S]]
// CHECK: gpu.barrier
// CHECK: memref.load %[[S]]
// CHECK: memref.load %[[S]]
// CHECK: arith.divf
// CHECK: scf.if
// CHECK: memref.store %{{.*}}, %arg1
#full = affine_map<(r, d) -> (r, d)>
#red = affine_map<(r, d) -> (r)>
#one = affine_map<(r) -> (r)>
func.func @two_warps(%x: memref<3x100xf32>, %mean: memref<3xf32>) attributes {kiln.kernel, kiln.config = {strategy = "row-fused", warps_per_row = 2 : i64, rows_per_block = 4 : i64}} {
  %zero = arith.constant 0.0 : f32
  %sum = memref.alloc() : memref<3xf32>
  linalg.fill ins(%zero : f32) outs(%sum : memref<3xf32>)
  linalg.generic {indexing_maps = [#full, #red], iterator_types = ["parallel", "reduction"]} ins(%x : memref<3x100xf32>) outs(%sum : memref<3xf32>) {
  ^bb0(%v: f32, %acc: f32):
    %s = arith.addf %acc, %v : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#one, #one], iterator_types = ["parallel"]} ins(%sum : memref<3xf32>) outs(%mean : memref<3xf32>) {
  ^bb0(%s: f32, %o: f32):
    %n = arith.constant 100.0 : f32
    %m = arith.divf %s, %n : f32
    linalg.yield %m : f32
  }
  memref.dealloc %sum : memref<3xf32>
  return
}

// -----

// COM: Not row-wise: a contraction is left alone (no launch).
// CHECK-LABEL: func.func @contraction
// CHECK-NOT: gpu.launch
// CHECK: linalg.matmul
func.func @contraction(%a: memref<4x8xf32>, %b: memref<8x4xf32>, %c: memref<4x4xf32>) attributes {kiln.kernel, kiln.config = {strategy = "row-fused", warps_per_row = 1 : i64, rows_per_block = 8 : i64}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<4x4xf32>)
  linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x4xf32>) outs(%c : memref<4x4xf32>)
  return
}

// -----

// expected-error @+1 {{kernel strategy 'row-fused': 'warps_per_row' must be a power of 2 up to 32 and a block at most 1024 threads}}
func.func @bad_config(%x: memref<8x64xf32>, %s: memref<8xf32>) attributes {kiln.kernel, kiln.config = {strategy = "row-fused", warps_per_row = 3 : i64, rows_per_block = 8 : i64}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%s : memref<8xf32>)
  linalg.generic {indexing_maps = [affine_map<(r, d) -> (r, d)>, affine_map<(r, d) -> (r)>], iterator_types = ["parallel", "reduction"]} ins(%x : memref<8x64xf32>) outs(%s : memref<8xf32>) {
  ^bb0(%v: f32, %acc: f32):
    %r = arith.addf %acc, %v : f32
    linalg.yield %r : f32
  }
  return
}
