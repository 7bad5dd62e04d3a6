// RUN: kiln-opt %s --split-input-file --kiln-lower-graph-to-linalg --verify-diagnostics

// COM: Norms divide by the element count of their normalized dims, which
// COM: must be static; symbolic dims before the axis are fine (see
// COM: kiln-lower-graph-to-linalg.mlir). A clear error, not a crash.
func.func @layer_norm_over_symbolic_dim(%x: tensor<2x?xf32>, %s: tensor<?xf32>) -> tensor<2x?xf32> {
  // expected-error @+1 {{cannot lower 'kiln.layer_norm' with dynamic shapes yet; specialize the model's symbolic dims with --dim NAME=VALUE}}
  %y = kiln.layer_norm %x, %s {axis = 1 : i64, epsilon = 1.0e-05 : f32} : tensor<2x?xf32>, tensor<?xf32>
  return %y : tensor<2x?xf32>
}
