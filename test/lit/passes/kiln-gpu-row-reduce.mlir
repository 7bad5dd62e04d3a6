// RUN: kiln-opt %s --split-input-file --kiln-gpu-row-reduce | FileCheck %s

// COM: A row sum of exp(x) over 100 columns, 6 rows: one warp per row,
// COM: 8 rows per 256-thread block (1 block), each lane folds every 32nd
// COM: element with the prologue fused, then a 5-step xor butterfly, then
// COM: lane 0 adds the initial value and stores.
// CHECK-LABEL: func.func @row_sum_exp
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1{{.*}}) threads({{.*}}) in (%{{.*}} = %c256
// CHECK: scf.if
// CHECK: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[PART:.*]] = scf.for %{{.*}} = %{{.*}} to %c100 step %c32{{.*}} iter_args(%[[ACC:.*]] = %[[ZERO]]) -> (f32)
// CHECK: memref.load
// CHECK: math.exp
// CHECK: arith.addf %[[ACC]]
// CHECK-COUNT-5: gpu.shuffle  xor
// CHECK: arith.cmpi eq
// CHECK: scf.if
// CHECK: memref.load
// CHECK: arith.addf
// CHECK: memref.store
// CHECK-NOT: linalg.generic
#in = affine_map<(d0, d1) -> (d0, d1)>
#out = affine_map<(d0, d1) -> (d0)>
func.func @row_sum_exp(%x: memref<6x100xf32>, %s: memref<6xf32>) attributes {kiln.kernel, kiln.config = {strategy = "row-reduce", warp = 32, rows_per_block = 8}} {
  linalg.generic {indexing_maps = [#in, #out], iterator_types = ["parallel", "reduction"]}
      ins(%x : memref<6x100xf32>) outs(%s : memref<6xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %e = math.exp %a : f32
    %t = arith.addf %acc, %e : f32
    linalg.yield %t : f32
  }
  return
}

// -----

// COM: Max reductions start from -inf.
// CHECK-LABEL: func.func @row_max
// CHECK: arith.constant 0xFF800000 : f32
// CHECK: arith.maxnumf
// CHECK-COUNT-5: gpu.shuffle  xor
func.func @row_max(%x: memref<4x64xf32>, %m: memref<4xf32>) attributes {kiln.kernel, kiln.config = {strategy = "row-reduce", warp = 32, rows_per_block = 8}} {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]}
      ins(%x : memref<4x64xf32>) outs(%m : memref<4xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %t = arith.maxnumf %acc, %a : f32
    linalg.yield %t : f32
  }
  return
}

// -----

// COM: A reduction over a middle dim does not match (the output is not the
// COM: leading loops in order); it is left for the generic strategy.
// CHECK-LABEL: func.func @middle_dim
// CHECK: linalg.generic
// CHECK-NOT: gpu.launch
func.func @middle_dim(%x: memref<2x3x4xf32>, %o: memref<2x4xf32>) attributes {kiln.kernel, kiln.config = {strategy = "row-reduce", warp = 32, rows_per_block = 8}} {
  linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d2)>], iterator_types = ["parallel", "reduction", "parallel"]}
      ins(%x : memref<2x3x4xf32>) outs(%o : memref<2x4xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %t = arith.addf %acc, %a : f32
    linalg.yield %t : f32
  }
  return
}
