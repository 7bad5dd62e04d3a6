// RUN: kiln-opt %s --split-input-file --kiln-cpu-flash-attention --verify-diagnostics

// COM: A key block that is not a small positive count is a clear error.
// expected-error @+1 {{kiln.config: key_block must be an integer from 1 to 64 (keys per block of the online softmax)}}
func.func @bad_key_block(%q: tensor<1x2x3x8xf32>, %k: tensor<1x2x3x8xf32>, %v: tensor<1x2x3x8xf32>) -> tensor<1x2x3x8xf32> attributes {kiln.kernel, kiln.config = {strategy = "cpu-flash-attention", key_block = 0 : i64}} {
  %o = kiln.attention %q, %k, %v {scale = 0.125 : f64} : tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32> -> tensor<1x2x3x8xf32>
  return %o : tensor<1x2x3x8xf32>
}

// -----

// COM: Symbolic head sizes are the vectors' widths: not taken.
func.func @symbolic_head(%q: tensor<1x2x3x?xf32>, %k: tensor<1x2x3x?xf32>, %v: tensor<1x2x3x8xf32>) -> tensor<1x2x3x8xf32> attributes {kiln.kernel, kiln.config = {strategy = "cpu-flash-attention"}} {
  // expected-error @+1 {{cpu-flash-attention needs [B, H, S, D] operands of at most 32 bits with static head counts and head sizes}}
  %o = kiln.attention %q, %k, %v {scale = 0.125 : f64} : tensor<1x2x3x?xf32>, tensor<1x2x3x?xf32>, tensor<1x2x3x8xf32> -> tensor<1x2x3x8xf32>
  return %o : tensor<1x2x3x8xf32>
}
