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
