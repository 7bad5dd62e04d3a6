// RUN: kiln-opt %s --split-input-file --verify-diagnostics

func.func @matmul_rank1(%a: tensor<4xf32>, %b: tensor<4x2xf32>) -> tensor<2xf32> {
  // expected-error @+1 {{operands must have rank >= 2 (reshape rank-1 operands first), got lhs (operand #0) 'tensor<4xf32>' and rhs (operand #1) 'tensor<4x2xf32>'}}
  %y = kiln.matmul %a, %b : tensor<4xf32>, tensor<4x2xf32> -> tensor<2xf32>
  return %y : tensor<2xf32>
}

// -----

func.func @matmul_k_mismatch(%a: tensor<3x4xf32>, %b: tensor<5x2xf32>) -> tensor<3x2xf32> {
  // expected-error @+1 {{contraction dimension mismatch: lhs (operand #0) 'tensor<3x4xf32>' has 4 columns but rhs (operand #1) 'tensor<5x2xf32>' has 5 rows}}
  %y = kiln.matmul %a, %b : tensor<3x4xf32>, tensor<5x2xf32> -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

func.func @matmul_elem_types(%a: tensor<3x4xf32>, %b: tensor<4x2xf16>) -> tensor<3x2xf32> {
  // expected-error @+1 {{element types must match: lhs (operand #0) 'tensor<3x4xf32>', rhs (operand #1) 'tensor<4x2xf16>', result 'tensor<3x2xf32>'}}
  %y = kiln.matmul %a, %b : tensor<3x4xf32>, tensor<4x2xf16> -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

func.func @matmul_acc_narrower(%a: tensor<3x4xf32>, %b: tensor<4x2xf32>) -> tensor<3x2xf32> {
  // expected-error @+1 {{acc_type 'f16' cannot hold every value of the element type 'f32' of lhs (operand #0) 'tensor<3x4xf32>' and rhs (operand #1) 'tensor<4x2xf32>'; accumulate in 'f32' or a wider float type}}
  %y = kiln.matmul %a, %b {acc_type = f16} : tensor<3x4xf32>, tensor<4x2xf32> -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// COM: bf16 is as wide as f16 but has fewer mantissa bits.
func.func @matmul_acc_bf16_for_f16(%a: tensor<3x4xf16>, %b: tensor<4x2xf16>) -> tensor<3x2xf16> {
  // expected-error @+1 {{acc_type 'bf16' cannot hold every value of the element type 'f16'}}
  %y = kiln.matmul %a, %b {acc_type = bf16} : tensor<3x4xf16>, tensor<4x2xf16> -> tensor<3x2xf16>
  return %y : tensor<3x2xf16>
}

// -----

func.func @matmul_acc_int(%a: tensor<3x4xi8>, %b: tensor<4x2xi8>) -> tensor<3x2xi8> {
  // expected-error @+1 {{acc_type 'i32' needs float operands and a float accumulator; lhs (operand #0) is 'tensor<3x4xi8>'}}
  %y = kiln.matmul %a, %b {acc_type = i32} : tensor<3x4xi8>, tensor<4x2xi8> -> tensor<3x2xi8>
  return %y : tensor<3x2xi8>
}

// -----

func.func @matmul_acc_not_a_type(%a: tensor<3x4xf16>, %b: tensor<4x2xf16>) -> tensor<3x2xf16> {
  // expected-error @+1 {{attribute 'acc_type' failed to satisfy constraint: any type attribute}}
  %y = kiln.matmul %a, %b {acc_type = 32 : i64} : tensor<3x4xf16>, tensor<4x2xf16> -> tensor<3x2xf16>
  return %y : tensor<3x2xf16>
}

// -----

func.func @matmul_batch(%a: tensor<2x3x4xf32>, %b: tensor<3x4x2xf32>) -> tensor<2x3x2xf32> {
  // expected-error @+1 {{batch dimensions of lhs (operand #0) 'tensor<2x3x4xf32>' and rhs (operand #1) 'tensor<3x4x2xf32>' do not broadcast}}
  %y = kiln.matmul %a, %b : tensor<2x3x4xf32>, tensor<3x4x2xf32> -> tensor<2x3x2xf32>
  return %y : tensor<2x3x2xf32>
}

// -----

func.func @matmul_result(%a: tensor<3x4xf32>, %b: tensor<4x2xf32>) -> tensor<3x3xf32> {
  // expected-error @+1 {{result type 'tensor<3x3xf32>' does not match the broadcast product shape of 'tensor<3x4xf32>' and 'tensor<4x2xf32>'}}
  %y = kiln.matmul %a, %b : tensor<3x4xf32>, tensor<4x2xf32> -> tensor<3x3xf32>
  return %y : tensor<3x3xf32>
}

// -----

func.func @softmax_axis(%s: tensor<4x16xf32>) -> tensor<4x16xf32> {
  // expected-error @+1 {{axis 2 is out of range for input (operand #0) of type 'tensor<4x16xf32>'; expected [-2, 1]}}
  %p = kiln.softmax %s {axis = 2 : i64} : tensor<4x16xf32>
  return %p : tensor<4x16xf32>
}

// -----

func.func @softmax_int(%s: tensor<4xi32>) -> tensor<4xi32> {
  // expected-error @+1 {{operand #0 must be ranked tensor of floating-point values}}
  %p = kiln.softmax %s {axis = 0 : i64} : tensor<4xi32>
  return %p : tensor<4xi32>
}

// -----

func.func @dispatch_arg_types(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-error @+1 {{input #0 has type 'tensor<8xf32>' but body argument #0 has type 'tensor<4xf32>'}}
  %r = kiln.dispatch(%x) : (tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<4xf32>):
    %e = tensor.empty() : tensor<8xf32>
    kiln.yield %e : tensor<8xf32>
  }
  return %r : tensor<8xf32>
}

// -----

func.func @dispatch_yield_types(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-error @+1 {{result #0 has type 'tensor<8xf32>' but kiln.yield operand #0 has type 'tensor<4xf32>'}}
  %r = kiln.dispatch(%x) : (tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>):
    %e = tensor.empty() : tensor<4xf32>
    kiln.yield %e : tensor<4xf32>
  }
  return %r : tensor<8xf32>
}

// -----

func.func @dispatch_yield_count(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-error @+1 {{kiln.yield returns 2 values but the dispatch has 1 results}}
  %r = kiln.dispatch(%x) : (tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>):
    kiln.yield %a, %a : tensor<8xf32>, tensor<8xf32>
  }
  return %r : tensor<8xf32>
}

// -----

func.func @dispatch_isolated(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-note @+1 {{required by region isolation constraints}}
  %r = kiln.dispatch() : () -> tensor<8xf32> {
    // expected-error @+1 {{using value defined outside the region}}
    kiln.yield %x : tensor<8xf32>
  }
  return %r : tensor<8xf32>
}

// -----

func.func @yield_outside(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-error @+1 {{expects parent op 'kiln.dispatch'}}
  kiln.yield %x : tensor<8xf32>
}

// -----

func.func @layer_norm_axis(%x: tensor<4x8xf32>, %s: tensor<8xf32>) -> tensor<4x8xf32> {
  // expected-error @+1 {{axis 2 is out of range for input (operand #0) of type 'tensor<4x8xf32>'; expected [-2, 1]}}
  %y = kiln.layer_norm %x, %s {axis = 2 : i64, epsilon = 1.0e-05 : f32} : tensor<4x8xf32>, tensor<8xf32>
  return %y : tensor<4x8xf32>
}

// -----

func.func @layer_norm_bias_shape(%x: tensor<4x8xf32>, %s: tensor<8xf32>, %b: tensor<4xf32>) -> tensor<4x8xf32> {
  // expected-error @+1 {{bias (operand #2) 'tensor<4xf32>' does not broadcast to the normalized dims [8] of input 'tensor<4x8xf32>'}}
  %y = kiln.layer_norm %x, %s, %b {axis = 1 : i64, epsilon = 1.0e-05 : f32} : tensor<4x8xf32>, tensor<8xf32>, tensor<4xf32>
  return %y : tensor<4x8xf32>
}

// -----

func.func @rms_norm_scale_type(%x: tensor<4x8xf32>, %s: tensor<8xf16>) -> tensor<4x8xf32> {
  // expected-error @+1 {{scale (operand #1) 'tensor<8xf16>' must have the element type of input 'tensor<4x8xf32>'}}
  %y = kiln.rms_norm %x, %s {axis = 1 : i64, epsilon = 1.0e-05 : f32} : tensor<4x8xf32>, tensor<8xf16>
  return %y : tensor<4x8xf32>
}

// -----

func.func @rotary_too_wide(%x: tensor<1x2x4x8xf32>, %c: tensor<1x4x5xf32>) -> tensor<1x2x4x8xf32> {
  // expected-error @+1 {{rotates 10 elements of heads of 8}}
  %y = kiln.rotary_embedding %x, %c, %c : tensor<1x2x4x8xf32>, tensor<1x4x5xf32>
  return %y : tensor<1x2x4x8xf32>
}

// -----

func.func @rotary_sequence(%x: tensor<1x2x4x8xf32>, %c: tensor<1x3x4xf32>) -> tensor<1x2x4x8xf32> {
  // expected-error @+1 {{cos/sin 'tensor<1x3x4xf32>' do not match the batch and sequence of input 'tensor<1x2x4x8xf32>'}}
  %y = kiln.rotary_embedding %x, %c, %c : tensor<1x2x4x8xf32>, tensor<1x3x4xf32>
  return %y : tensor<1x2x4x8xf32>
}

// -----

func.func @attention_groups(%q: tensor<1x3x4x8xf32>, %k: tensor<1x2x4x8xf32>) -> tensor<1x3x4x8xf32> {
  // expected-error @+1 {{3 query heads do not group over 2 key/value heads}}
  %o = kiln.attention %q, %k, %k {scale = 1.0 : f64} : tensor<1x3x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32> -> tensor<1x3x4x8xf32>
  return %o : tensor<1x3x4x8xf32>
}

// -----

func.func @attention_bias(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x6x8xf32>, %m: tensor<4x4xf32>) -> tensor<1x2x4x8xf32> {
  // expected-error @+1 {{bias 'tensor<4x4xf32>' does not broadcast to the scores [1, 2, 4, 6] of element type 'f32'}}
  %o = kiln.attention %q, %k, %k, %m {scale = 1.0 : f64} : tensor<1x2x4x8xf32>, tensor<1x2x6x8xf32>, tensor<1x2x6x8xf32>, tensor<4x4xf32> -> tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

func.func @attention_result(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x6x8xf32>, %v: tensor<1x2x6x5xf32>) -> tensor<1x2x4x8xf32> {
  // expected-error @+1 {{result 'tensor<1x2x4x8xf32>' must be [1, 2, 4, 5]}}
  %o = kiln.attention %q, %k, %v {scale = 1.0 : f64} : tensor<1x2x4x8xf32>, tensor<1x2x6x8xf32>, tensor<1x2x6x5xf32> -> tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

// COM: A dispatch's config must say which kernel strategy it configures.
func.func @dispatch_config_without_strategy(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-error @below {{config must name its kernel strategy as 'strategy' (a string)}}
  %r = kiln.dispatch(%x) {config = {threads = 256}} : (tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>):
    kiln.yield %a : tensor<8xf32>
  }
  return %r : tensor<8xf32>
}
