// RUN: kiln-opt %s -split-input-file --kiln-raise-activations | FileCheck %s

// BERT's erf GELU, one generic per node, the constants rank-0 tensors or
// captured scalars: x / 1.4142135 -> erf -> + 1 -> * x -> * 0.5.

#id = affine_map<(d0, d1) -> (d0, d1)>
#s = affine_map<(d0, d1) -> ()>
// CHECK-LABEL: func.func @gelu_erf
// CHECK-SAME: attributes {kiln.raised = {gelu = 1 : i64}}
// CHECK: %[[G:.*]] = kiln.gelu %arg0 : tensor<4x8xf32>
// CHECK-NEXT: return %[[G]]
func.func @gelu_erf(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %sqrt2 = arith.constant dense<1.41421354> : tensor<f32>
  %one = arith.constant 1.0 : f32
  %half = arith.constant dense<0.5> : tensor<f32>
  %e = tensor.empty() : tensor<4x8xf32>
  %d = linalg.generic {indexing_maps = [#id, #s, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %sqrt2 : tensor<4x8xf32>, tensor<f32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.divf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %erf = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%d : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.erf %a : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%erf : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = arith.addf %a, %one : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %m = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %p : tensor<4x8xf32>, tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %y = linalg.generic {indexing_maps = [#id, #s, #id], iterator_types = ["parallel", "parallel"]} ins(%m, %half : tensor<4x8xf32>, tensor<f32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// GPT-2's tanh GELU written as one generic (as after elementwise fusion):
// the numbers say it is the tanh form, not erf's.

#id = affine_map<(d0) -> (d0)>
// CHECK-LABEL: func.func @gelu_tanh_one_body
// CHECK: %[[G:.*]] = kiln.gelu %arg0 {tanh_approximation} : tensor<16xf32>
// CHECK-NEXT: return %[[G]]
func.func @gelu_tanh_one_body(%x: tensor<16xf32>) -> tensor<16xf32> {
  %e = tensor.empty() : tensor<16xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %c3 = arith.constant 0.0447149985 : f32
    %k = arith.constant 0.797884583 : f32
    %half = arith.constant 0.5 : f32
    %one = arith.constant 1.0 : f32
    %x2 = arith.mulf %a, %a : f32
    %x3 = arith.mulf %x2, %a : f32
    %t0 = arith.mulf %x3, %c3 : f32
    %t1 = arith.addf %a, %t0 : f32
    %t2 = arith.mulf %t1, %k : f32
    %t3 = math.tanh %t2 : f32
    %t4 = arith.addf %t3, %one : f32
    %h = arith.mulf %a, %half : f32
    %r = arith.mulf %h, %t4 : f32
    linalg.yield %r : f32
  } -> tensor<16xf32>
  return %y : tensor<16xf32>
}

// -----

// LLaMA's SiLU: Sigmoid then Mul by x, in f16.

#id = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @silu
// CHECK-SAME: attributes {kiln.raised = {silu = 1 : i64}}
// CHECK: %[[S:.*]] = kiln.silu %arg0 : tensor<2x8xf16>
// CHECK-NEXT: return %[[S]]
func.func @silu(%x: tensor<2x8xf16>) -> tensor<2x8xf16> {
  %e = tensor.empty() : tensor<2x8xf16>
  %sig = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<2x8xf16>) outs(%e : tensor<2x8xf16>) {
  ^bb0(%a: f16, %o: f16):
    %one = arith.constant 1.0 : f16
    %n = arith.negf %a : f16
    %ex = math.exp %n : f16
    %d = arith.addf %one, %ex : f16
    %r = arith.divf %one, %d : f16
    linalg.yield %r : f16
  } -> tensor<2x8xf16>
  %y = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %sig : tensor<2x8xf16>, tensor<2x8xf16>) outs(%e : tensor<2x8xf16>) {
  ^bb0(%a: f16, %b: f16, %o: f16):
    %r = arith.mulf %a, %b : f16
    linalg.yield %r : f16
  } -> tensor<2x8xf16>
  return %y : tensor<2x8xf16>
}

// -----

// Almost: a GELU scaled by 1.1, a SiLU whose sigmoid is also read
// elsewhere, and the sigmoid alone (x * sigmoid(1.702 x) would be
// "quick GELU", which is neither). Nothing is raised; the inner sigmoid
// of the second function is not a SiLU either.

#id = affine_map<(d0) -> (d0)>
// CHECK-LABEL: func.func @almost
// CHECK-NOT: kiln.raised
// CHECK-NOT: kiln.gelu
// CHECK-NOT: kiln.silu
// CHECK: return
func.func @almost(%x: tensor<16xf32>) -> (tensor<16xf32>, tensor<16xf32>, tensor<16xf32>) {
  %e = tensor.empty() : tensor<16xf32>
  %g = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.constant 0.707106769 : f32
    %half = arith.constant 0.55 : f32
    %one = arith.constant 1.0 : f32
    %t = arith.mulf %a, %s : f32
    %f = math.erf %t : f32
    %p = arith.addf %f, %one : f32
    %h = arith.mulf %a, %half : f32
    %r = arith.mulf %h, %p : f32
    linalg.yield %r : f32
  } -> tensor<16xf32>
  %sig = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %one = arith.constant 1.0 : f32
    %n = arith.negf %a : f32
    %ex = math.exp %n : f32
    %d = arith.addf %one, %ex : f32
    %r = arith.divf %one, %d : f32
    linalg.yield %r : f32
  } -> tensor<16xf32>
  %y = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel"]} ins(%x, %sig : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<16xf32>
  return %g, %y, %sig : tensor<16xf32>, tensor<16xf32>, tensor<16xf32>
}
