// RUN: kiln-opt %s --split-input-file --pass-pipeline="builtin.module(func.func(kiln-decompose-aggregates,kiln-cpu-tile-and-vectorize))" | FileCheck %s

// COM: A 12x32x8 matmul: column panels 16 wide (n-tile 16 divides 32) are
// COM: the outer loop; each panel's rhs slice (8x16) is first copied into a
// COM: fresh tensor (a contiguous buffer after bufferization) because two
// COM: row blocks read it; then 6x16 register blocks (m-tile 6 divides 12),
// COM: the reduction tiled by 1, each tile one vector.contract that reads
// COM: the packed panel, not the rhs.
// CHECK-LABEL: func.func @matmul
// CHECK-SAME: %[[A:[a-z0-9]+]]: tensor<12x8xf32>, %[[B:[a-z0-9]+]]: tensor<8x32xf32>
// CHECK: scf.for %[[N:.*]] = %c0 to %c32 step %c16
// CHECK: %[[PANEL:.*]] = tensor.extract_slice %[[B]][0, %[[N]]] [8, 16] [1, 1]
// CHECK: %[[EMPTY:.*]] = tensor.empty() : tensor<8x16xf32>
// CHECK: %[[PACKED:.*]] = scf.for {{.*}} iter_args(%{{.*}} = %[[EMPTY]])
// CHECK: tensor.extract_slice %[[PANEL]]
// CHECK: scf.for %{{.*}} = %{{.*}} to %c12 step %c6
// CHECK: scf.for %[[K:.*]] = %{{.*}} to %c8 step %c1
// CHECK: %[[ROW:.*]] = tensor.extract_slice %[[PACKED]][%[[K]], 0] [1, 16]
// CHECK: vector.transfer_read {{.*}} : tensor<6x1xf32>, vector<6x1xf32>
// CHECK: vector.transfer_read %[[ROW]]{{.*}} : tensor<1x16xf32>, vector<1x16xf32>
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

// -----

// COM: One row block per panel: nothing to reuse, so the rhs is read in
// COM: place, not packed.
// CHECK-LABEL: func.func @matmul_one_row_block
// CHECK-NOT: tensor.empty
// CHECK: vector.contract {{.*}} : vector<4x1xf32>, vector<1x16xf32> into vector<4x16xf32>
func.func @matmul_one_row_block(%a: tensor<4x8xf32>, %b: tensor<8x32xf32>, %c: tensor<4x32xf32>) -> tensor<4x32xf32> attributes {kiln.kernel} {
  %m = linalg.matmul ins(%a, %b : tensor<4x8xf32>, tensor<8x32xf32>) outs(%c : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %m : tensor<4x32xf32>
}

// -----

// COM: N = 35 has no multiple-of-8 divisor: full 16-wide panels up to 32,
// COM: and the last three columns peeled off; their static 8x3 panel is
// COM: packed and vectorized too.
// CHECK-LABEL: func.func @matmul_peeled_panel
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c16
// CHECK: vector.contract {{.*}} : vector<6x1xf32>, vector<1x16xf32> into vector<6x16xf32>
// CHECK: tensor.extract_slice %{{.*}}[0, 32] [8, 3] [1, 1]
// CHECK: vector.contract {{.*}} : vector<6x1xf32>, vector<1x3xf32> into vector<6x3xf32>
func.func @matmul_peeled_panel(%a: tensor<12x8xf32>, %b: tensor<8x35xf32>, %c: tensor<12x35xf32>) -> tensor<12x35xf32> attributes {kiln.kernel} {
  %m = linalg.matmul ins(%a, %b : tensor<12x8xf32>, tensor<8x35xf32>) outs(%c : tensor<12x35xf32>) -> tensor<12x35xf32>
  return %m : tensor<12x35xf32>
}

// -----

// COM: Symbolic rows (tokens): column panels as usual; each panel is
// COM: versioned on the row count, its rhs packed only when more than one
// COM: row reads it. In both versions the row blocks (m-tile 6) are peeled:
// COM: full blocks are 6x16 vector.contracts, the rows left over one at a
// COM: time (1x16).
// CHECK-LABEL: func.func @matmul_symbolic_rows
// CHECK: %[[ROWS:.*]] = tensor.dim %arg0, %c0 : tensor<?x8xf32>
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c16
// CHECK: %[[MANY:.*]] = arith.cmpi ugt, %[[ROWS]], %c1 : index
// CHECK: scf.if %[[MANY]] -> (tensor<?x16xf32>)
// CHECK: tensor.empty() : tensor<8x16xf32>
// CHECK: %[[FULL:.*]] = affine.apply #{{.*}}()[%[[ROWS]]]
// CHECK: scf.for %{{.*}} = %c0 to %[[FULL]] step %c6
// CHECK: vector.contract {{.*}} : vector<6x1xf32>, vector<1x16xf32> into vector<6x16xf32>
// CHECK: scf.for %{{.*}} = %[[FULL]] to %[[ROWS]] step %c6
// CHECK: vector.contract {{.*}} : vector<1x1xf32>, vector<1x16xf32> into vector<1x16xf32>
// CHECK: } else {
// CHECK-NOT: tensor.empty() : tensor<8x16xf32>
// CHECK: vector.contract {{.*}} : vector<6x1xf32>, vector<1x16xf32> into vector<6x16xf32>
// CHECK: vector.contract {{.*}} : vector<1x1xf32>, vector<1x16xf32> into vector<1x16xf32>
// CHECK-NOT: linalg.matmul
func.func @matmul_symbolic_rows(%a: tensor<?x8xf32>, %b: tensor<8x32xf32>, %c: tensor<?x32xf32>) -> tensor<?x32xf32> attributes {kiln.kernel} {
  %m = linalg.matmul ins(%a, %b : tensor<?x8xf32>, tensor<8x32xf32>) outs(%c : tensor<?x32xf32>) -> tensor<?x32xf32>
  return %m : tensor<?x32xf32>
}

// -----

// COM: A symbolic N (attention's keys): 16-wide panels with the panel loop
// COM: peeled; the full panels vectorize, the last partial one stays a
// COM: matmul (scalar loops).
// CHECK-LABEL: func.func @matmul_symbolic_columns
// CHECK: %[[COLS:.*]] = tensor.dim %arg1, %c1 : tensor<8x?xf32>
// CHECK: %[[FULL:.*]] = affine.apply #{{.*}}()[%[[COLS]]]
// CHECK: scf.for %{{.*}} = %c0 to %[[FULL]] step %c16
// CHECK: vector.contract {{.*}} into vector<6x16xf32>
// CHECK: scf.for %{{.*}} = %[[FULL]] to %[[COLS]] step %c16
// CHECK: linalg.matmul {{.*}} -> tensor<12x?xf32>
func.func @matmul_symbolic_columns(%a: tensor<12x8xf32>, %b: tensor<8x?xf32>, %c: tensor<12x?xf32>) -> tensor<12x?xf32> attributes {kiln.kernel} {
  %m = linalg.matmul ins(%a, %b : tensor<12x8xf32>, tensor<8x?xf32>) outs(%c : tensor<12x?xf32>) -> tensor<12x?xf32>
  return %m : tensor<12x?xf32>
}

// -----

// COM: A rhs read transposed (W[n, k]: a tied embedding the lm_head reads in
// COM: place): each panel's rhs slice (16x8 of W) is packed transposed into
// COM: an 8x16 buffer, and the register blocks read the packed panel row by
// COM: row as for any other matmul.
// CHECK-LABEL: func.func @matmul_transposed_rhs
// CHECK-SAME: %[[A:[a-z0-9]+]]: tensor<12x8xf32>, %[[W:[a-z0-9]+]]: tensor<32x8xf32>
// CHECK: scf.for %[[N:.*]] = %c0 to %c32 step %c16
// CHECK: %[[PANEL:.*]] = tensor.extract_slice %[[W]][%[[N]], 0] [16, 8] [1, 1]
// CHECK: %[[EMPTY:.*]] = tensor.empty() : tensor<8x16xf32>
// CHECK: %[[PACKED:.*]] = scf.for {{.*}} iter_args(%{{.*}} = %[[EMPTY]])
// CHECK: scf.for %{{.*}} = %{{.*}} to %c12 step %c6
// CHECK: scf.for %[[K:.*]] = %{{.*}} to %c8 step %c1
// CHECK: %[[ROW:.*]] = tensor.extract_slice %[[PACKED]][%[[K]], 0] [1, 16]
// CHECK: vector.transfer_read %[[ROW]]{{.*}} : tensor<1x16xf32>, vector<6x16x1xf32>
// CHECK: arith.mulf {{.*}} : vector<6x16x1xf32>
// CHECK: vector.multi_reduction <add>, {{.*}} [2] : vector<6x16x1xf32> to vector<6x16xf32>
// CHECK-NOT: linalg.generic
func.func @matmul_transposed_rhs(%a: tensor<12x8xf32>, %w: tensor<32x8xf32>, %c: tensor<12x32xf32>) -> tensor<12x32xf32> attributes {kiln.kernel} {
  %m = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %w : tensor<12x8xf32>, tensor<32x8xf32>) outs(%c : tensor<12x32xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<12x32xf32>
  return %m : tensor<12x32xf32>
}

// -----

// COM: A GEMM whose weights are decoded in the kernel from 4-bit integers
// COM: stored in panels (kiln-fuse-weight-decode, kiln-cpu-pack-weights):
// COM: each column panel decodes its own [1, K, 16] slice, a fresh tensor
// COM: (a panel-sized buffer), one vector of 16 columns per row, with
// COM: contiguous vector reads of the integers, scales and zero points;
// COM: the register blocks read it without a copy. The whole [2, K, 16]
// COM: decoding is gone.
// CHECK-LABEL: func.func @decoded_panels
// CHECK-SAME: %[[X:[a-z0-9]+]]: tensor<12x16xf32>, %[[Q:[a-z0-9]+]]: tensor<2x8x16xi8>, %[[S:[a-z0-9]+]]: tensor<2x1x16xf32>, %[[Z:[a-z0-9]+]]: tensor<2x1x16xf32>
// CHECK-NOT: tensor.empty() : tensor<2x16x16xf32>
// COM: (After the output's fill, whose inner loop starts from its outer
// COM: loop's value, the panels' loop starts from the filled tensor.)
// CHECK: scf.for %[[J:.*]] = %c0 to %c2 step %c1 iter_args(%{{.*}} = %{{[0-9]+}})
// CHECK: %[[FRESH:.*]] = tensor.empty() : tensor<1x16x16xf32>
// CHECK: %[[DEC:.*]] = scf.for %{{.*}} = %c0 to %c16 step %c1 iter_args(%{{.*}} = %[[FRESH]])
// CHECK: vector.transfer_read %[[Q]][%[[J]], %{{.*}}, %{{.*}}]{{.*}} : tensor<2x8x16xi8>, vector<1x1x16xi8>
// CHECK: arith.shrui %{{.*}} : vector<1x1x16xi32>
// CHECK: vector.transfer_read %[[S]][%[[J]], %{{.*}}, %{{.*}}]{{.*}} : tensor<2x1x16xf32>, vector<1x1x16xf32>
// CHECK: vector.transfer_read %[[Z]][%[[J]], %{{.*}}, %{{.*}}]{{.*}} : tensor<2x1x16xf32>, vector<1x1x16xf32>
// CHECK-NOT: linalg.copy
// CHECK: tensor.extract_slice %[[DEC]][0, %{{.*}}, 0] [1, 1, 16]
// CHECK: vector.multi_reduction <add>
#w3 = affine_map<(j, k, p) -> (j, k, p)>
#xa = affine_map<(m, j, p, k) -> (m, k)>
#wa = affine_map<(m, j, p, k) -> (j, k, p)>
#oa = affine_map<(m, j, p, k) -> (m, j, p)>
func.func @decoded_panels(%x: tensor<12x16xf32>, %q: tensor<2x8x16xi8>, %s: tensor<2x1x16xf32>, %z: tensor<2x1x16xf32>) -> tensor<12x2x16xf32> attributes {kiln.kernel} {
  %e = tensor.empty() : tensor<2x16x16xf32>
  %w = linalg.generic {indexing_maps = [#w3], iterator_types = ["parallel", "parallel", "parallel"]} outs(%e : tensor<2x16x16xf32>) attrs = {kiln.block_quantized = {bits = 4 : i64, block_size = 16 : i64}} {
  ^bb0(%out: f32):
    %j = linalg.index 0 : index
    %k = linalg.index 1 : index
    %p = linalg.index 2 : index
    %c2 = arith.constant 2 : index
    %c4 = arith.constant 4 : index
    %c16 = arith.constant 16 : index
    %c15 = arith.constant 15 : i32
    %row = arith.divui %k, %c2 : index
    %odd = arith.remui %k, %c2 : index
    %bit = arith.muli %odd, %c4 : index
    %byte = tensor.extract %q[%j, %row, %p] : tensor<2x8x16xi8>
    %wide = arith.extui %byte : i8 to i32
    %sh = arith.index_cast %bit : index to i32
    %shifted = arith.shrui %wide, %sh : i32
    %v = arith.andi %shifted, %c15 : i32
    %blk = arith.divui %k, %c16 : index
    %scale = tensor.extract %s[%j, %blk, %p] : tensor<2x1x16xf32>
    %zero = tensor.extract %z[%j, %blk, %p] : tensor<2x1x16xf32>
    %f = arith.uitofp %v : i32 to f32
    %d = arith.subf %f, %zero : f32
    %r = arith.mulf %d, %scale : f32
    linalg.yield %r : f32
  } -> tensor<2x16x16xf32>
  %cst = arith.constant 0.0 : f32
  %e2 = tensor.empty() : tensor<12x2x16xf32>
  %fill = linalg.fill ins(%cst : f32) outs(%e2 : tensor<12x2x16xf32>) -> tensor<12x2x16xf32>
  %y = linalg.generic {indexing_maps = [#xa, #wa, #oa], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%x, %w : tensor<12x16xf32>, tensor<2x16x16xf32>) outs(%fill : tensor<12x2x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %sum = arith.addf %acc, %m : f32
    linalg.yield %sum : f32
  } -> tensor<12x2x16xf32>
  return %y : tensor<12x2x16xf32>
}
