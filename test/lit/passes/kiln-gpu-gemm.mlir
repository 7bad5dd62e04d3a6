// RUN: kiln-opt %s --split-input-file --kiln-gpu-gemm --canonicalize --cse | FileCheck %s

// COM: 70x45 @ 45x130: a 3x2 grid of 64x64 tiles, 256 threads, both K
// COM: slices staged in shared memory, K walked in steps of 16 with a
// COM: barrier after staging and after computing; the fill by zero becomes
// COM: the 16 accumulators' initial value; stores guarded at the edges.
// CHECK-LABEL: func.func @matmul_fill
// CHECK-NOT: linalg.fill
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c3, %{{.*}} = %c2, %{{.*}} = %c1) threads({{.*}}) in (%{{.*}} = %c256, %{{.*}} = %c1, %{{.*}} = %c1) workgroup(%[[TA:.*]] : memref<16x64xf32, #gpu.address_space<workgroup>>, %[[TB:.*]] : memref<16x64xf32, #gpu.address_space<workgroup>>)
// CHECK: scf.for %{{.*}} = %c0 to %c45 step %c16 iter_args(%{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst, %{{.*}} = %cst) -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK-COUNT-4: memref.store %{{.*}}, %[[TA]]
// CHECK-COUNT-4: memref.store %{{.*}}, %[[TB]]
// CHECK: gpu.barrier
// CHECK: scf.for %{{.*}} = %c0 to %c16 step %c1
// CHECK-COUNT-4: memref.load %[[TA]]
// CHECK-COUNT-4: memref.load %[[TB]]
// CHECK-COUNT-16: arith.addf
// CHECK: scf.yield
// CHECK: gpu.barrier
// CHECK-COUNT-16: memref.store %{{.*}}, %arg2
// CHECK-NOT: linalg.matmul
func.func @matmul_fill(%a: memref<70x45xf32>, %b: memref<45x130xf32>, %c: memref<70x130xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>, register_block = array<i64: 4, 4>}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<70x130xf32>)
  linalg.matmul ins(%a, %b : memref<70x45xf32>, memref<45x130xf32>) outs(%c : memref<70x130xf32>)
  return
}

// -----

// COM: Without a fill the accumulators start from the output's contents;
// COM: the batch is the grid's z dimension.
// CHECK-LABEL: func.func @batch_matmul_accumulate
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1, %{{.*}} = %c1, %{{.*}} = %c6)
// CHECK-COUNT-16: memref.load %arg2
// CHECK: scf.for
func.func @batch_matmul_accumulate(%a: memref<6x8x16xf32>, %b: memref<6x16x12xf32>, %c: memref<6x8x12xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>, register_block = array<i64: 4, 4>}} {
  linalg.batch_matmul ins(%a, %b : memref<6x8x16xf32>, memref<6x16x12xf32>) outs(%c : memref<6x8x12xf32>)
  return
}

// -----

// COM: The importer's broadcasting MatMul, [2,16,32] x [32,24]: the two M
// COM: loops (d0, d1) are linearized into one M of 32; B (K innermost
// COM: transposed here) is staged with consecutive threads along K.
// CHECK-LABEL: func.func @broadcast_generic
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1, %{{.*}} = %c1, %{{.*}} = %c1)
// CHECK: memref.load %arg0[%{{.*}}, %{{.*}}, %{{.*}}] : memref<2x16x32xf32>
// CHECK: memref.load %arg1[%{{.*}}, %{{.*}}] : memref<24x32xf32>
#a = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
#b = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
#c = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
func.func @broadcast_generic(%a: memref<2x16x32xf32>, %b: memref<24x32xf32>, %c: memref<2x16x24xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>, register_block = array<i64: 4, 4>}} {
  linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%a, %b : memref<2x16x32xf32>, memref<24x32xf32>) outs(%c : memref<2x16x24xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// COM: Not a contraction (an elementwise product): left alone.
// CHECK-LABEL: func.func @not_a_contraction
// CHECK: linalg.generic
// CHECK-NOT: gpu.launch
func.func @not_a_contraction(%a: memref<4x4xf32>, %b: memref<4x4xf32>, %c: memref<4x4xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>, register_block = array<i64: 4, 4>}} {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%a, %b : memref<4x4xf32>, memref<4x4xf32>) outs(%c : memref<4x4xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %p = arith.mulf %x, %y : f32
    linalg.yield %p : f32
  }
  return
}

// -----

// COM: The strategy builds what the configuration says, not what it would
// COM: choose: a hand-written 32x32x8 tile of 8x8 threads with 4x4 register
// COM: blocks gives 64-thread blocks, 8x32 shared tiles and a 3x5 grid for
// COM: 70x130; the launch carries the configuration it applied.
// CHECK-LABEL: func.func @configured_tile
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c5, %{{.*}} = %c3, %{{.*}} = %c1) threads({{.*}}) in (%{{.*}} = %c64, %{{.*}} = %c1, %{{.*}} = %c1) workgroup(%{{.*}} : memref<8x32xf32, #gpu.address_space<workgroup>>, %{{.*}} : memref<8x32xf32, #gpu.address_space<workgroup>>)
// CHECK: scf.for %{{.*}} = %c0 to %c45 step %c8
// CHECK: } {kiln.config = {register_block = array<i64: 4, 4>, strategy = "gemm-simt", threads = array<i64: 8, 8>, tile = array<i64: 32, 32, 8>}}
func.func @configured_tile(%a: memref<70x45xf32>, %b: memref<45x130xf32>, %c: memref<70x130xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 32, 32, 8>, threads = array<i64: 8, 8>, register_block = array<i64: 4, 4>}} {
  linalg.matmul ins(%a, %b : memref<70x45xf32>, memref<45x130xf32>) outs(%c : memref<70x130xf32>)
  return
}

// -----

// COM: A kernel whose configuration selects another strategy (or none) is
// COM: not this strategy's to build.
// CHECK-LABEL: func.func @other_strategy
// CHECK: linalg.matmul
// CHECK-NOT: gpu.launch
func.func @other_strategy(%a: memref<70x45xf32>, %b: memref<45x130xf32>, %c: memref<70x130xf32>) attributes {kiln.kernel, kiln.config = {strategy = "generic", threads = 256}} {
  linalg.matmul ins(%a, %b : memref<70x45xf32>, memref<45x130xf32>) outs(%c : memref<70x130xf32>)
  return
}

// -----

// COM: A composite strategy names gemm-simt as a part: its contractions
// COM: take the part's configuration.
// CHECK-LABEL: func.func @as_a_part
// CHECK: gpu.launch {{.*}} threads({{.*}}) in (%{{.*}} = %c256,
func.func @as_a_part(%a: memref<70x45xf32>, %b: memref<45x130xf32>, %c: memref<70x130xf32>) attributes {kiln.kernel, kiln.config = {strategy = "attention-fallback", "gemm-simt" = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>, register_block = array<i64: 4, 4>}}} {
  linalg.matmul ins(%a, %b : memref<70x45xf32>, memref<45x130xf32>) outs(%c : memref<70x130xf32>)
  return
}

// -----

// COM: A batch over 65,535 (grid z's limit) shares grid x with the N tiles:
// COM: 70000 batches x 3 N tiles, the batch and N tile read back from
// COM: block x.
// CHECK-LABEL: func.func @batch_over_grid_z
// CHECK: gpu.launch blocks(%[[BX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %c210000, %{{.*}} = %c1, %{{.*}} = %c1)
// CHECK-DAG: arith.divui %[[BX]], %c3
// CHECK-DAG: arith.remui %[[BX]], %c3
func.func @batch_over_grid_z(%a: memref<70000x8x16xf32>, %b: memref<70000x16x130xf32>, %c: memref<70000x8x130xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>, register_block = array<i64: 4, 4>}} {
  linalg.batch_matmul ins(%a, %b : memref<70000x8x16xf32>, memref<70000x16x130xf32>) outs(%c : memref<70000x8x130xf32>)
  return
}
