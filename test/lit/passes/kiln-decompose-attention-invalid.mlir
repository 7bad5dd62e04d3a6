// RUN: kiln-opt %s --split-input-file --kiln-decompose-attention --verify-diagnostics

// COM: The decomposition needs static shapes (kiln-lower-graph-to-linalg
// COM: reports symbolic ones first); a clear error, not a crash.
func.func @symbolic_keys(%q: tensor<1x2x3x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x8xf32>) -> tensor<1x2x3x8xf32> attributes {kiln.kernel} {
  // expected-error @+1 {{cannot decompose 'kiln.attention' with dynamic shapes yet; specialize the model's symbolic dims with --dim NAME=VALUE}}
  %o = kiln.attention %q, %k, %v {scale = 0.125 : f64} : tensor<1x2x3x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x8xf32> -> tensor<1x2x3x8xf32>
  return %o : tensor<1x2x3x8xf32>
}
