// RUN: kiln-opt %s --split-input-file --kiln-lower-graph-to-linalg | FileCheck %s

// COM: [.., M, K] x [K, N]: the batch folds into M through views and one
// COM: linalg.matmul does the work.
// CHECK-LABEL: func.func @matmul_rank2_rhs
// CHECK-SAME: (%[[X:.*]]: tensor<2x8x16xf32>, %[[W:.*]]: tensor<16x4xf32>)
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[X]] {{\[\[}}0, 1], [2]] : tensor<2x8x16xf32> into tensor<16x16xf32>
// CHECK: %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<16x4xf32>)
// CHECK: %[[MM:.*]] = linalg.matmul ins(%[[FLAT]], %[[W]] : tensor<16x16xf32>, tensor<16x4xf32>) outs(%[[ZERO]] : tensor<16x4xf32>)
// CHECK: %[[Y:.*]] = tensor.expand_shape %[[MM]] {{\[\[}}0, 1], [2]] output_shape [2, 8, 4]
// CHECK: return %[[Y]]
func.func @matmul_rank2_rhs(%x: tensor<2x8x16xf32>, %w: tensor<16x4xf32>) -> tensor<2x8x4xf32> {
  %y = kiln.matmul %x, %w : tensor<2x8x16xf32>, tensor<16x4xf32> -> tensor<2x8x4xf32>
  return %y : tensor<2x8x4xf32>
}

// -----

// COM: Identical batch dims fold into one and use linalg.batch_matmul.
// CHECK-LABEL: func.func @matmul_same_batch
// CHECK: %[[A:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2], [3]] : tensor<2x3x4x5xf32> into tensor<6x4x5xf32>
// CHECK: %[[B:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2], [3]] : tensor<2x3x5x6xf32> into tensor<6x5x6xf32>
// CHECK: %[[BMM:.*]] = linalg.batch_matmul ins(%[[A]], %[[B]] : tensor<6x4x5xf32>, tensor<6x5x6xf32>)
// CHECK: tensor.expand_shape %[[BMM]] {{\[\[}}0, 1], [2], [3]] output_shape [2, 3, 4, 6]
func.func @matmul_same_batch(%a: tensor<2x3x4x5xf32>, %b: tensor<2x3x5x6xf32>) -> tensor<2x3x4x6xf32> {
  %y = kiln.matmul %a, %b : tensor<2x3x4x5xf32>, tensor<2x3x5x6xf32> -> tensor<2x3x4x6xf32>
  return %y : tensor<2x3x4x6xf32>
}

// -----

// COM: Broadcasting batch dims read the size-1 dim at index 0: nothing is
// COM: materialized.
// CHECK-DAG: #[[$LHS:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, 0, d2, d4)>
// CHECK-DAG: #[[$RHS:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d1, d4, d3)>
// CHECK-DAG: #[[$OUT:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @matmul_broadcast_batch
// CHECK: linalg.generic {indexing_maps = [#[[$LHS]], #[[$RHS]], #[[$OUT]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
// CHECK: arith.mulf
// CHECK: arith.addf
func.func @matmul_broadcast_batch(%a: tensor<2x1x4x5xf32>, %b: tensor<3x5x6xf32>) -> tensor<2x3x4x6xf32> {
  %y = kiln.matmul %a, %b : tensor<2x1x4x5xf32>, tensor<3x5x6xf32> -> tensor<2x3x4x6xf32>
  return %y : tensor<2x3x4x6xf32>
}

// -----

// COM: f16 operands with an f32 accumulator: the contraction's init is f32
// COM: (linalg.matmul extends its operands to it), and the sum is rounded
// COM: to f16 once, after.
// CHECK-LABEL: func.func @matmul_acc_f32
// CHECK: %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<16x4xf32>)
// CHECK: %[[MM:.*]] = linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<16x16xf16>, tensor<16x4xf16>) outs(%[[ZERO]] : tensor<16x4xf32>)
// CHECK: %[[T:.*]] = linalg.generic {{.*}} ins(%[[MM]] : tensor<16x4xf32>) outs(%{{.*}} : tensor<16x4xf16>)
// CHECK: arith.truncf %{{.*}} : f32 to f16
// CHECK: %[[Y:.*]] = tensor.expand_shape %[[T]] {{\[\[}}0, 1], [2]] output_shape [2, 8, 4] : tensor<16x4xf16> into tensor<2x8x4xf16>
// CHECK: return %[[Y]]
func.func @matmul_acc_f32(%x: tensor<2x8x16xf16>, %w: tensor<16x4xf16>) -> tensor<2x8x4xf16> {
  %y = kiln.matmul %x, %w {acc_type = f32} : tensor<2x8x16xf16>, tensor<16x4xf16> -> tensor<2x8x4xf16>
  return %y : tensor<2x8x4xf16>
}

// -----

// COM: The batched GEMM accumulates in f32 the same way.
// CHECK-LABEL: func.func @matmul_acc_same_batch
// CHECK: %[[BMM:.*]] = linalg.batch_matmul ins(%{{.*}}, %{{.*}} : tensor<2x4x5xbf16>, tensor<2x5x6xbf16>) outs(%{{.*}} : tensor<2x4x6xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[BMM]] : tensor<2x4x6xf32>) outs(%{{.*}} : tensor<2x4x6xbf16>)
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @matmul_acc_same_batch(%a: tensor<2x4x5xbf16>, %b: tensor<2x5x6xbf16>) -> tensor<2x4x6xbf16> {
  %y = kiln.matmul %a, %b {acc_type = f32} : tensor<2x4x5xbf16>, tensor<2x5x6xbf16> -> tensor<2x4x6xbf16>
  return %y : tensor<2x4x6xbf16>
}

// -----

// COM: The broadcasting contraction extends each operand, multiplies and
// COM: adds in f32, then rounds.
// CHECK-LABEL: func.func @matmul_acc_broadcast
// CHECK: %[[G:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<2x1x4x5xf16>, tensor<3x5x6xf16>) outs(%{{.*}} : tensor<2x3x4x6xf32>)
// CHECK: ^bb0(%[[L:.*]]: f16, %[[R:.*]]: f16, %[[ACC:.*]]: f32):
// CHECK: %[[LE:.*]] = arith.extf %[[L]] : f16 to f32
// CHECK: %[[RE:.*]] = arith.extf %[[R]] : f16 to f32
// CHECK: %[[P:.*]] = arith.mulf %[[LE]], %[[RE]] : f32
// CHECK: arith.addf %[[ACC]], %[[P]] : f32
// CHECK: linalg.generic {{.*}} ins(%[[G]] : tensor<2x3x4x6xf32>) outs(%{{.*}} : tensor<2x3x4x6xf16>)
// CHECK: arith.truncf %{{.*}} : f32 to f16
func.func @matmul_acc_broadcast(%a: tensor<2x1x4x5xf16>, %b: tensor<3x5x6xf16>) -> tensor<2x3x4x6xf16> {
  %y = kiln.matmul %a, %b {acc_type = f32} : tensor<2x1x4x5xf16>, tensor<3x5x6xf16> -> tensor<2x3x4x6xf16>
  return %y : tensor<2x3x4x6xf16>
}

// -----

// COM: An accumulator of the element type changes nothing.
// CHECK-LABEL: func.func @matmul_acc_same_type
// CHECK: %[[MM:.*]] = linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<3x4xf32>, tensor<4x2xf32>) outs(%{{.*}} : tensor<3x2xf32>)
// CHECK-NEXT: return %[[MM]]
func.func @matmul_acc_same_type(%a: tensor<3x4xf32>, %b: tensor<4x2xf32>) -> tensor<3x2xf32> {
  %y = kiln.matmul %a, %b {acc_type = f32} : tensor<3x4xf32>, tensor<4x2xf32> -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// COM: Integer contractions multiply and add with integer ops.
// CHECK-LABEL: func.func @matmul_int_broadcast
// CHECK: linalg.generic
// CHECK: arith.muli
// CHECK: arith.addi
func.func @matmul_int_broadcast(%a: tensor<3x4xi32>, %b: tensor<5x4x2xi32>) -> tensor<5x3x2xi32> {
  %y = kiln.matmul %a, %b : tensor<3x4xi32>, tensor<5x4x2xi32> -> tensor<5x3x2xi32>
  return %y : tensor<5x3x2xi32>
}

// -----

// CHECK-LABEL: func.func @softmax
// CHECK-SAME: (%[[X:.*]]: tensor<4x16xf32>)
// CHECK: %[[E:.*]] = tensor.empty() : tensor<4x16xf32>
// CHECK: %[[S:.*]] = linalg.softmax dimension(1) ins(%[[X]] : tensor<4x16xf32>) outs(%[[E]] : tensor<4x16xf32>)
// CHECK: return %[[S]]
func.func @softmax(%x: tensor<4x16xf32>) -> tensor<4x16xf32> {
  %p = kiln.softmax %x {axis = -1 : i64} : tensor<4x16xf32>
  return %p : tensor<4x16xf32>
}


// -----

// COM: The transformer ops become their decompositions. LayerNorm: two
// COM: sum reductions (mean, then centred squares), rsqrt, and one
// COM: elementwise generic that normalizes, scales and shifts.
// CHECK-LABEL: func.func @layer_norm
// CHECK-NOT: kiln.layer_norm
// CHECK: iterator_types = ["parallel", "reduction"]
// CHECK: iterator_types = ["parallel", "reduction"]
// CHECK: math.rsqrt
// CHECK: %[[Y:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<4x8xf32>, tensor<4x1xf32>, tensor<4x1xf32>, tensor<8xf32>, tensor<8xf32>)
// CHECK: arith.subf
// CHECK: arith.addf
// CHECK: return %[[Y]]
func.func @layer_norm(%x: tensor<4x8xf32>, %s: tensor<8xf32>, %b: tensor<8xf32>) -> tensor<4x8xf32> {
  %y = kiln.layer_norm %x, %s, %b {axis = 1 : i64, epsilon = 1.0e-05 : f32} : tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// COM: RMSNorm of f16 runs in f32: the input is extended, the sum of
// COM: squares reduced, and the result truncated back before the scale.
// CHECK-LABEL: func.func @rms_norm_f16
// CHECK: arith.extf {{.*}} : f16 to f32
// CHECK: iterator_types = ["parallel", "reduction"]
// CHECK: math.rsqrt {{.*}} : f32
// CHECK: arith.truncf {{.*}} : f32 to f16
// CHECK: arith.mulf {{.*}} : f16
func.func @rms_norm_f16(%x: tensor<4x8xf16>, %s: tensor<8xf16>) -> tensor<4x8xf16> {
  %y = kiln.rms_norm %x, %s {axis = -1 : i64, epsilon = 1.0e-05 : f32} : tensor<4x8xf16>, tensor<8xf16>
  return %y : tensor<4x8xf16>
}

// -----

// CHECK-LABEL: func.func @gelu
// CHECK: math.erf
// CHECK-NOT: math.tanh
// CHECK-LABEL: func.func @gelu_tanh
// CHECK: math.tanh
// CHECK-NOT: math.erf
func.func @gelu(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %y = kiln.gelu %x : tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}
func.func @gelu_tanh(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %y = kiln.gelu %x {tanh_approximation} : tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// COM: Rotary embedding: one indexed generic that reads each element, its
// COM: partner (i +- R for halves) and the angle's cos and sin.
// CHECK-LABEL: func.func @rotary
// CHECK: linalg.generic
// CHECK-COUNT-2: tensor.extract %arg0
// CHECK: tensor.extract %arg1
// CHECK: tensor.extract %arg2
// CHECK-DAG: arith.subf
// CHECK-DAG: arith.addf
func.func @rotary(%x: tensor<1x2x4x8xf32>, %c: tensor<1x4x2xf32>, %s: tensor<1x4x2xf32>) -> tensor<1x2x4x8xf32> {
  %y = kiln.rotary_embedding %x, %c, %s : tensor<1x2x4x8xf32>, tensor<1x4x2xf32>
  return %y : tensor<1x2x4x8xf32>
}

// -----

// COM: Attention stays one op: it becomes a dispatch of its own, and
// COM: kiln-decompose-attention is its fallback inside the kernel.
// CHECK-LABEL: func.func @attention
// CHECK-NEXT: %[[O:.*]] = kiln.attention %arg0, %arg1, %arg2 {causal_offset = 0 : i64, scale = 1.250000e-01 : f64}
// CHECK-NEXT: return %[[O]] : tensor<1x4x3x8xf32>
func.func @attention(%q: tensor<1x4x3x8xf32>, %k: tensor<1x2x3x8xf32>, %v: tensor<1x2x3x8xf32>) -> tensor<1x4x3x8xf32> {
  %o = kiln.attention %q, %k, %v {scale = 0.125 : f64, causal_offset = 0 : i64} : tensor<1x4x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32> -> tensor<1x4x3x8xf32>
  return %o : tensor<1x4x3x8xf32>
}

// -----

// COM: Symbolic dims: the product's empty tensor and the expanded result
// COM: take their sizes from the lhs (tensor.dim), never a static guess.
// CHECK-LABEL: func.func @matmul_symbolic
// CHECK-SAME: (%[[X:.*]]: tensor<?x?x16xf32>, %[[W:.*]]: tensor<16x4xf32>)
// CHECK-DAG: %[[B:.*]] = tensor.dim %[[X]], %c0
// CHECK-DAG: %[[S:.*]] = tensor.dim %[[X]], %c1
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[X]] {{\[\[}}0, 1], [2]] : tensor<?x?x16xf32> into tensor<?x16xf32>
// CHECK: %[[ROWS:.*]] = tensor.dim %[[FLAT]], %c0
// CHECK: %[[E:.*]] = tensor.empty(%[[ROWS]]) : tensor<?x4xf32>
// CHECK: %[[MM:.*]] = linalg.matmul ins(%[[FLAT]], %[[W]] : tensor<?x16xf32>, tensor<16x4xf32>)
// CHECK: %[[Y:.*]] = tensor.expand_shape %[[MM]] {{\[\[}}0, 1], [2]] output_shape [%[[B]], %[[S]], 4]
// CHECK: return %[[Y]]
func.func @matmul_symbolic(%x: tensor<?x?x16xf32>, %w: tensor<16x4xf32>) -> tensor<?x?x4xf32> {
  %y = kiln.matmul %x, %w : tensor<?x?x16xf32>, tensor<16x4xf32> -> tensor<?x?x4xf32>
  return %y : tensor<?x?x4xf32>
}

// -----

// COM: A layer norm whose leading dim is symbolic: the statistics are
// COM: sized from the input.
// CHECK-LABEL: func.func @layer_norm_symbolic_rows
// CHECK-NOT: kiln.layer_norm
// CHECK: %[[R:.*]] = tensor.dim %arg0, %c0 : tensor<?x8xf32>
// CHECK: tensor.empty(%[[R]]) : tensor<?xf32>
// CHECK: } -> tensor<?x8xf32>
func.func @layer_norm_symbolic_rows(%x: tensor<?x8xf32>, %s: tensor<8xf32>) -> tensor<?x8xf32> {
  %y = kiln.layer_norm %x, %s {axis = 1 : i64, epsilon = 1.0e-05 : f32} : tensor<?x8xf32>, tensor<8xf32>
  return %y : tensor<?x8xf32>
}
