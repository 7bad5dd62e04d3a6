// RUN: kiln-opt %s --split-input-file --kiln-decompose-attention | FileCheck %s

// COM: Attention with grouped heads and causal masking, in a kernel: K and
// COM: V repeated to the 4 query heads (K's copy scaled by sqrt(scale) in
// COM: the same generic), q scaled, the scores contraction (K indexed
// COM: transposed), the causal bias added, the softmax's max and sum (a
// COM: fully masked row gives 0), and the contraction with V.
// CHECK-LABEL: func.func @attention
// CHECK-NOT: kiln.attention
// CHECK: arith.divui
// CHECK: tensor.extract %arg2
// CHECK: arith.divui
// CHECK: tensor.extract %arg1
// CHECK-NEXT: arith.mulf
// CHECK: %[[QS:.*]] = linalg.generic {{.*}} ins(%arg0 : tensor<1x4x3x8xf32>)
// CHECK: %[[S:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%[[QS]], %{{.*}} : tensor<1x4x3x8xf32>, tensor<1x4x3x8xf32>) outs(%{{.*}} : tensor<1x4x3x3xf32>)
// CHECK: arith.cmpi sle
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: %[[O:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%{{.*}}, %{{.*}} : tensor<1x4x3x3xf32>, tensor<1x4x3x8xf32>) outs(%{{.*}} : tensor<1x4x3x8xf32>)
// CHECK: return %[[O]] : tensor<1x4x3x8xf32>
func.func @attention(%q: tensor<1x4x3x8xf32>, %k: tensor<1x2x3x8xf32>, %v: tensor<1x2x3x8xf32>) -> tensor<1x4x3x8xf32> attributes {kiln.kernel, kiln.config = {strategy = "attention-fallback"}} {
  %o = kiln.attention %q, %k, %v {scale = 0.125 : f64, causal_offset = 0 : i64} : tensor<1x4x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32> -> tensor<1x4x3x8xf32>
  return %o : tensor<1x4x3x8xf32>
}

// -----

// COM: softmax_type f32 for f16 attention: the scores contraction sums
// COM: extended operands in f32, scaled after it, the bias is extended,
// COM: the softmax is f32, the probabilities are truncated for the second
// COM: contraction, which sums in f32 too; the result is rounded once.
// CHECK-LABEL: func.func @attention_f16_softmax_f32
// CHECK-NOT: kiln.attention
// CHECK: %[[S:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%arg0, %arg1 : tensor<1x2x4x8xf16>, tensor<1x2x6x8xf16>) outs(%{{.*}} : tensor<1x2x4x6xf32>)
// CHECK: arith.extf {{.*}} : f16 to f32
// CHECK: arith.extf {{.*}} : f16 to f32
// CHECK: %[[B:.*]] = linalg.generic {{.*}} ins(%arg3 : tensor<4x6xf16>) outs(%{{.*}} : tensor<4x6xf32>)
// CHECK: arith.extf {{.*}} : f16 to f32
// CHECK: linalg.generic {{.*}} ins(%[[S]], %[[B]] : tensor<1x2x4x6xf32>, tensor<4x6xf32>)
// CHECK: arith.mulf {{.*}} : f32
// CHECK: math.exp {{.*}} : f32
// CHECK: arith.truncf {{.*}} : f32 to f16
// CHECK: %[[O:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%{{.*}}, %arg2 : tensor<1x2x4x6xf16>, tensor<1x2x6x8xf16>) outs(%{{.*}} : tensor<1x2x4x8xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[O]] : tensor<1x2x4x8xf32>)
// CHECK: arith.truncf {{.*}} : f32 to f16
// CHECK: return %{{.*}} : tensor<1x2x4x8xf16>
func.func @attention_f16_softmax_f32(%q: tensor<1x2x4x8xf16>, %k: tensor<1x2x6x8xf16>, %v: tensor<1x2x6x8xf16>, %m: tensor<4x6xf16>) -> tensor<1x2x4x8xf16> attributes {kiln.kernel} {
  %o = kiln.attention %q, %k, %v, %m {scale = 0.5 : f64, softmax_type = f32} : tensor<1x2x4x8xf16>, tensor<1x2x6x8xf16>, tensor<1x2x6x8xf16>, tensor<4x6xf16> -> tensor<1x2x4x8xf16>
  return %o : tensor<1x2x4x8xf16>
}

// -----

// COM: Only kernels are touched: graph IR keeps attention whole.
// CHECK-LABEL: func.func @graph
// CHECK: kiln.attention
func.func @graph(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %o = kiln.attention %q, %k, %k {scale = 1.0 : f64} : tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32> -> tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}
