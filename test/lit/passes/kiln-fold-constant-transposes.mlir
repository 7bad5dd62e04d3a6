// RUN: kiln-opt %s --split-input-file --kiln-fold-constant-transposes | FileCheck %s

// COM: A transposed dense weight is folded; the values land permuted.
// CHECK-LABEL: func.func @dense
// CHECK: %[[T:.*]] = arith.constant dense<{{\[\[}}1, 4], [2, 5], [3, 6]]> : tensor<3x2xi32>
// CHECK-NOT: linalg.transpose
// CHECK: return %[[T]]
func.func @dense() -> tensor<3x2xi32> {
  %w = arith.constant dense<[[1, 2, 3], [4, 5, 6]]> : tensor<2x3xi32>
  %e = tensor.empty() : tensor<3x2xi32>
  %t = linalg.transpose ins(%w : tensor<2x3xi32>) outs(%e : tensor<3x2xi32>) permutation = [1, 0]
  return %t : tensor<3x2xi32>
}

// -----

// COM: A rank-3 permutation of a resource weight gets a new `.T` resource
// COM: whose bytes are permuted (2x1x2 f16 -> 2x2x1 with perm [2, 0, 1]).
// CHECK-LABEL: func.func @resource
// CHECK: %[[T:.*]] = arith.constant dense_resource<w.T> : tensor<2x2x1xf16>
// CHECK: return %[[T]]
// CHECK: w.T: "0x080000000000020001000300"
func.func @resource() -> tensor<2x2x1xf16> {
  %w = arith.constant dense_resource<w> : tensor<2x1x2xf16>
  %e = tensor.empty() : tensor<2x2x1xf16>
  %t = linalg.transpose ins(%w : tensor<2x1x2xf16>) outs(%e : tensor<2x2x1xf16>) permutation = [2, 0, 1]
  return %t : tensor<2x2x1xf16>
}
{-#
  dialect_resources: {
    builtin: {
      w: "0x040000000000010002000300"
    }
  }
#-}

// -----

// COM: Transposes of values that are not constants stay.
// CHECK-LABEL: func.func @not_constant
// CHECK: linalg.transpose
func.func @not_constant(%x: tensor<2x3xf32>) -> tensor<3x2xf32> {
  %e = tensor.empty() : tensor<3x2xf32>
  %t = linalg.transpose ins(%x : tensor<2x3xf32>) outs(%e : tensor<3x2xf32>) permutation = [1, 0]
  return %t : tensor<3x2xf32>
}

// -----

// COM: A tied embedding: the exporter stores the lm_head weight as a second
// COM: initializer holding the transpose of the token embedding. It becomes
// COM: a transpose of the embedding, which the matmul reads in place: the
// COM: bytes are stored once and nothing is transposed at run time.
// CHECK-DAG: #[[$A:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[$B:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG: #[[$C:.*]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @tied
// CHECK-SAME: (%[[X:.*]]: tensor<4x2xf32>
// CHECK: %[[W:.*]] = arith.constant dense_resource<wte> : tensor<3x2xf32>
// CHECK-NOT: dense_resource<wte_t>
// CHECK-NOT: linalg.transpose
// CHECK: %[[Y:.*]] = linalg.generic {indexing_maps = [#[[$A]], #[[$B]], #[[$C]]], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[X]], %[[W]] : tensor<4x2xf32>, tensor<3x2xf32>)
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: return %[[W]], %[[Y]]
// CHECK-NOT: wte_t:
func.func @tied(%x: tensor<4x2xf32>) -> (tensor<3x2xf32>, tensor<4x3xf32>) {
  %wte = arith.constant dense_resource<wte> : tensor<3x2xf32>
  %wte_t = arith.constant dense_resource<wte_t> : tensor<2x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x3xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<4x3xf32>) -> tensor<4x3xf32>
  %y = linalg.matmul ins(%x, %wte_t : tensor<4x2xf32>, tensor<2x3xf32>) outs(%init : tensor<4x3xf32>) -> tensor<4x3xf32>
  return %wte, %y : tensor<3x2xf32>, tensor<4x3xf32>
}
{-#
  dialect_resources: {
    builtin: {
      wte: "0x040000000000803F0000004000004040000080400000A0400000C040",
      wte_t: "0x040000000000803F000040400000A04000000040000080400000C040"
    }
  }
#-}

// -----

// COM: A weight that only looks like a transpose (same shape, other bytes)
// COM: keeps its own bytes.
// CHECK-LABEL: func.func @not_tied
// CHECK-DAG: dense_resource<a>
// CHECK-DAG: dense_resource<b>
// CHECK-NOT: linalg.transpose
// CHECK: linalg.matmul
func.func @not_tied(%x: tensor<4x2xf32>) -> (tensor<3x2xf32>, tensor<4x3xf32>) {
  %a = arith.constant dense_resource<a> : tensor<3x2xf32>
  %b = arith.constant dense_resource<b> : tensor<2x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x3xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<4x3xf32>) -> tensor<4x3xf32>
  %y = linalg.matmul ins(%x, %b : tensor<4x2xf32>, tensor<2x3xf32>) outs(%init : tensor<4x3xf32>) -> tensor<4x3xf32>
  return %a, %y : tensor<3x2xf32>, tensor<4x3xf32>
}
{-#
  dialect_resources: {
    builtin: {
      a: "0x040000000000803F0000004000004040000080400000A0400000C040",
      b: "0x040000000000803F000040400000A04000000040000080400000E040"
    }
  }
#-}

// -----

// COM: Static slices of a resource weight read only by slices (a recurrent
// COM: layer's per-direction weights) become resources of their own, with a
// COM: stride and a dropped unit dim; a reshape of a resource read once
// COM: keeps its bytes. Then the transpose folds too.
// CHECK-LABEL: func.func @slices
// CHECK: %[[A:.*]] = arith.constant dense_resource<w.slice_1.T> : tensor<2x2xi16>
// CHECK: %[[B:.*]] = arith.constant dense_resource<w.slice> : tensor<3xi16>
// CHECK-NOT: tensor.extract_slice
// CHECK-NOT: linalg.transpose
// CHECK: return %[[A]], %[[B]]
// CHECK: w.slice_1.T: "0x080000000100040002000500",
// CHECK: w.slice: "0x08000000100011001200"
func.func @slices() -> (tensor<2x2xi16>, tensor<3xi16>) {
  %w = arith.constant dense_resource<w> : tensor<2x2x3xi16>
  %a = tensor.extract_slice %w[0, 0, 0] [1, 2, 2] [1, 1, 1] : tensor<2x2x3xi16> to tensor<2x2xi16>
  %e = tensor.empty() : tensor<2x2xi16>
  %t = linalg.transpose ins(%a : tensor<2x2xi16>) outs(%e : tensor<2x2xi16>) permutation = [1, 0]
  %b = tensor.extract_slice %w[1, 1, 0] [1, 1, 3] [1, 1, 1] : tensor<2x2x3xi16> to tensor<1x1x3xi16>
  %c = tensor.collapse_shape %b [[0, 1, 2]] : tensor<1x1x3xi16> into tensor<3xi16>
  return %t, %c : tensor<2x2xi16>, tensor<3xi16>
}
{-#
  dialect_resources: {
    builtin: {
      w: "0x02000000010002000300040005000600070008000900100011001200"
    }
  }
#-}

// -----

// COM: A small slice of a dense constant folds whatever else reads it; a
// COM: large slice of a weight also read whole stays (no duplicated bytes).
// CHECK-LABEL: func.func @dense_slice
// CHECK: arith.constant dense<[5, 6]> : tensor<2xi32>
// CHECK-LABEL: func.func @shared_weight
// CHECK: tensor.extract_slice
func.func @dense_slice() -> tensor<2xi32> {
  %w = arith.constant dense<[[1, 2, 3], [4, 5, 6]]> : tensor<2x3xi32>
  %s = tensor.extract_slice %w[1, 1] [1, 2] [1, 1] : tensor<2x3xi32> to tensor<2xi32>
  return %s : tensor<2xi32>
}
func.func @shared_weight(%x: tensor<300x300xf32>) -> (tensor<300x300xf32>, tensor<150x300xf32>) {
  %w = arith.constant dense_resource<big> : tensor<300x300xf32>
  %s = tensor.extract_slice %w[0, 0] [150, 300] [1, 1] : tensor<300x300xf32> to tensor<150x300xf32>
  %e = tensor.empty() : tensor<300x300xf32>
  %t = linalg.transpose ins(%w : tensor<300x300xf32>) outs(%e : tensor<300x300xf32>) permutation = [1, 0]
  return %t, %s : tensor<300x300xf32>, tensor<150x300xf32>
}
