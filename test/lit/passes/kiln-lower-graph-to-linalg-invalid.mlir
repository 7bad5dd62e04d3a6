// RUN: kiln-opt %s --split-input-file --kiln-lower-graph-to-linalg --verify-diagnostics

// COM: Norms divide by the element count of their normalized dims, which
// COM: must be static; symbolic dims before the axis are fine (see
// COM: kiln-lower-graph-to-linalg.mlir). A clear error, not a crash.
func.func @layer_norm_over_symbolic_dim(%x: tensor<2x?xf32>, %s: tensor<?xf32>) -> tensor<2x?xf32> {
  // expected-error @+1 {{cannot lower 'kiln.layer_norm' with dynamic shapes yet; specialize the model's symbolic dims with --dim NAME=VALUE}}
  %y = kiln.layer_norm %x, %s {axis = 1 : i64, epsilon = 1.0e-05 : f32} : tensor<2x?xf32>, tensor<?xf32>
  return %y : tensor<2x?xf32>
}

// -----

// COM: Attention stays whole at graph level, but its fallback (the
// COM: decomposition in the kernel) needs static shapes: the same error,
// COM: here, where the user's --dim is still in view.
func.func @attention_symbolic_keys(%q: tensor<1x2x3x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x8xf32>) -> tensor<1x2x3x8xf32> {
  // expected-error @+1 {{cannot lower 'kiln.attention' with dynamic shapes yet; specialize the model's symbolic dims with --dim NAME=VALUE}}
  %o = kiln.attention %q, %k, %v {scale = 0.125 : f64} : tensor<1x2x3x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x8xf32> -> tensor<1x2x3x8xf32>
  return %o : tensor<1x2x3x8xf32>
}
