// RUN: kiln-opt %s --split-input-file --pass-pipeline="builtin.module(func.func(kiln-decompose-aggregates,kiln-cpu-tile-and-vectorize))" | FileCheck %s

// COM: A 12x32x8 matmul: 6x16 register blocks (m-tile=6 divides 12, n-tile
// COM: 16 divides 32), the reduction tiled by 1, each tile one
// COM: vector.contract. Column strips are the outer loop so that one strip
// COM: of the rhs stays in cache across the row blocks.
// CHECK-LABEL: func.func @matmul
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c16
// CHECK: scf.for %{{.*}} = %{{.*}} to %c12 step %c6
// CHECK: scf.for %{{.*}} = %{{.*}} to %c8 step %c1
// CHECK: vector.transfer_read {{.*}} : tensor<6x1xf32>, vector<6x1xf32>
// CHECK: vector.transfer_read {{.*}} : tensor<1x16xf32>, vector<1x16xf32>
// CHECK: vector.transfer_read {{.*}} : tensor<6x16xf32>, vector<6x16xf32>
// CHECK: vector.contract {{.*}} : vector<6x1xf32>, vector<1x16xf32> into vector<6x16xf32>
// CHECK: vector.transfer_write {{.*}} : vector<6x16xf32>, tensor<6x16xf32>
// CHECK-NOT: linalg.matmul
func.func @matmul(%a: tensor<12x8xf32>, %b: tensor<8x32xf32>, %c: tensor<12x32xf32>) -> tensor<12x32xf32> attributes {kiln.kernel} {
  %m = linalg.matmul ins(%a, %b : tensor<12x8xf32>, tensor<8x32xf32>) outs(%c : tensor<12x32xf32>) -> tensor<12x32xf32>
  return %m : tensor<12x32xf32>
}

// -----

// COM: Elementwise: every loop but the innermost tiled to 1, the innermost
// COM: to a multiple of 8 that divides it (40 -> 8).
// CHECK-LABEL: func.func @elementwise
// CHECK: scf.for %{{.*}} = %c0 to %c4 step %c1
// CHECK: scf.for %{{.*}} = %{{.*}} to %c40 step %c8
// CHECK: vector.transfer_read {{.*}} : tensor<1x8xf32>, vector<1x8xf32>
// CHECK: math.tanh %{{.*}} : vector<1x8xf32>
// CHECK: vector.transfer_write {{.*}} : vector<1x8xf32>, tensor<1x8xf32>
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @elementwise(%x: tensor<4x40xf32>, %o: tensor<4x40xf32>) -> tensor<4x40xf32> attributes {kiln.kernel} {
  %g = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<4x40xf32>) outs(%o : tensor<4x40xf32>) {
  ^bb0(%a: f32, %b: f32):
    %t = math.tanh %a : f32
    linalg.yield %t : f32
  } -> tensor<4x40xf32>
  return %g : tensor<4x40xf32>
}

// -----

// COM: linalg.softmax is decomposed into its generics (max, exp-sum,
// COM: divide), and each is tiled and vectorized; the reductions become
// COM: vector.multi_reduction.
// CHECK-LABEL: func.func @softmax
// CHECK-NOT: linalg.softmax
// CHECK: vector.multi_reduction <maxnumf>
// CHECK: math.exp
// CHECK: vector.multi_reduction <add>
// CHECK: arith.divf {{.*}} : vector<1x16xf32>
func.func @softmax(%x: tensor<4x16xf32>, %o: tensor<4x16xf32>) -> tensor<4x16xf32> attributes {kiln.kernel} {
  %s = linalg.softmax dimension(1) ins(%x : tensor<4x16xf32>) outs(%o : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %s : tensor<4x16xf32>
}

// -----

// COM: Functions that are not kernels are left alone.
// CHECK-LABEL: func.func @not_a_kernel
// CHECK: linalg.matmul
// CHECK-NOT: vector.contract
func.func @not_a_kernel(%a: tensor<6x8xf32>, %b: tensor<8x16xf32>, %c: tensor<6x16xf32>) -> tensor<6x16xf32> {
  %m = linalg.matmul ins(%a, %b : tensor<6x8xf32>, tensor<8x16xf32>) outs(%c : tensor<6x16xf32>) -> tensor<6x16xf32>
  return %m : tensor<6x16xf32>
}
