// RUN: kiln-opt %s --split-input-file --kiln-lower-graph-to-linalg --verify-diagnostics

// COM: Dynamic shapes are not lowered yet: a clear error, not a crash.
func.func @matmul_dynamic(%a: tensor<?x4xf32>, %b: tensor<4x2xf32>) -> tensor<?x2xf32> {
  // expected-error @+1 {{cannot lower 'kiln.matmul' with dynamic shapes yet; specialize the model's symbolic dims with --dim NAME=VALUE}}
  %y = kiln.matmul %a, %b : tensor<?x4xf32>, tensor<4x2xf32> -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
