// RUN: kiln-opt %s --split-input-file --kiln-gpu-elementwise --canonicalize --cse | FileCheck %s

// COM: Bias + ReLU on 8x128: 256 groups of 4 elements, one block of 256
// COM: threads. x and the bias (indexed by the innermost loop) are read with
// COM: one 16-byte aligned vector load each, the body is cloned 4 times, and
// COM: the result leaves in one vector store.
// CHECK-LABEL: func.func @bias_relu
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1, {{.*}}) threads({{.*}}) in (%{{.*}} = %c256,
// CHECK: scf.if
// CHECK: %[[X:.*]] = vector.load %arg0[{{.*}}] {alignment = 16 : i64} : memref<8x128xf32>, vector<4xf32>
// CHECK: %[[B:.*]] = vector.load %arg1[{{.*}}] {alignment = 16 : i64} : memref<128xf32>, vector<4xf32>
// CHECK-COUNT-4: arith.maximumf
// CHECK: %[[R:.*]] = vector.from_elements {{.*}} : vector<4xf32>
// CHECK: vector.store %[[R]], %arg2[{{.*}}] {alignment = 16 : i64} : memref<8x128xf32>, vector<4xf32>
// CHECK-NOT: linalg.generic
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d1)>
func.func @bias_relu(%x: memref<8x128xf32>, %b: memref<128xf32>, %y: memref<8x128xf32>) attributes {kiln.kernel, kiln.config = {strategy = "elementwise", vector_width = 4, threads = 256}} {
  %zero = arith.constant 0.0 : f32
  linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %b : memref<8x128xf32>, memref<128xf32>) outs(%y : memref<8x128xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %s = arith.addf %a, %c : f32
    %r = arith.maximumf %s, %zero : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// COM: An operand broadcast along the innermost loop (one value per row) is
// COM: loaded once per thread; a transposed operand is gathered element by
// COM: element. 6x4 = 6 groups: one block of 32 threads, 6 in range.
// CHECK-LABEL: func.func @splat_and_gather
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1, {{.*}}) threads({{.*}}) in (%{{.*}} = %c32,
// CHECK: arith.cmpi ult, %{{.*}}, %c6
// CHECK: memref.load %arg0[{{.*}}] : memref<6xf32>
// CHECK-COUNT-4: memref.load %arg1[{{.*}}] : memref<4x6xf32>
// CHECK-NOT: memref.load
// CHECK: vector.store
func.func @splat_and_gather(%s: memref<6xf32>, %t: memref<4x6xf32>, %y: memref<6x4xf32>) attributes {kiln.kernel, kiln.config = {strategy = "elementwise", vector_width = 4, threads = 256}} {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%s, %t : memref<6xf32>, memref<4x6xf32>) outs(%y : memref<6x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    linalg.yield %m : f32
  }
  return
}

// -----

// COM: Innermost extents that are not a multiple of 4, and boolean
// COM: operands, are left for the generic strategy.
// CHECK-LABEL: func.func @odd_extent
// CHECK: linalg.generic
// CHECK-NOT: gpu.launch
func.func @odd_extent(%x: memref<3x5xf32>, %y: memref<3x5xf32>) attributes {kiln.kernel, kiln.config = {strategy = "elementwise", vector_width = 4, threads = 256}} {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<3x5xf32>) outs(%y : memref<3x5xf32>) {
  ^bb0(%a: f32, %o: f32):
    %n = arith.negf %a : f32
    linalg.yield %n : f32
  }
  return
}

// -----

// CHECK-LABEL: func.func @bool_operand
// CHECK: linalg.generic
// CHECK-NOT: gpu.launch
func.func @bool_operand(%c: memref<8xi1>, %x: memref<8xf32>, %y: memref<8xf32>) attributes {kiln.kernel, kiln.config = {strategy = "elementwise", vector_width = 4, threads = 256}} {
  %zero = arith.constant 0.0 : f32
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%c, %x : memref<8xi1>, memref<8xf32>) outs(%y : memref<8xf32>) {
  ^bb0(%p: i1, %a: f32, %o: f32):
    %r = arith.select %p, %a, %zero : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// COM: Symbolic rows ([?, 2, 64]: a batch of sequences): the extents are the
// COM: output's sizes, read before the launch; the grid is ceil(groups /
// COM: 256) of them per run, the guard compares with the group count, and
// COM: the position is split by the extents (64 / 4 = 16 groups per row).
// CHECK-LABEL: func.func @symbolic_rows
// CHECK: %[[ROWS:.*]] = memref.dim %arg1, %c0 : memref<?x2x64xf32>
// CHECK: %[[GROUPS:.*]] = arith.muli %[[ROWS]], %c32 : index
// CHECK: %[[GRID:.*]] = arith.ceildivui %[[GROUPS]], %c256 : index
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %[[GRID]], {{.*}}) threads({{.*}}) in (%{{.*}} = %c256,
// CHECK: arith.cmpi ult, %{{.*}}, %[[GROUPS]]
// CHECK: arith.remui %{{.*}}, %c16
// CHECK: vector.load %arg0[{{.*}}] {alignment = 16 : i64} : memref<?x2x64xf32>, vector<4xf32>
// CHECK: vector.store %{{.*}}, %arg1[{{.*}}] {alignment = 16 : i64} : memref<?x2x64xf32>, vector<4xf32>
#id3 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
func.func @symbolic_rows(%x: memref<?x2x64xf32>, %y: memref<?x2x64xf32>) attributes {kiln.kernel, kiln.config = {strategy = "elementwise", vector_width = 4, threads = 256}} {
  linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%x : memref<?x2x64xf32>) outs(%y : memref<?x2x64xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = arith.negf %a : f32
    linalg.yield %r : f32
  }
  return
}
