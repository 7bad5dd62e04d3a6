// RUN: kiln-opt %s -split-input-file --kiln-raise-attention | FileCheck %s

// The TorchScript exporter's SDPA: q and kT scaled by sqrt(scale) each, a
// constant causal mask added; kT is a transpose of [B, S, H, D], which
// folds into one transpose of the source to [B, H, S, D].

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> (0)>
#mask = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
// CHECK-LABEL: func.func @causal_sdpa
// CHECK-SAME: attributes {kiln.raised = {attention = 1 : i64}}
// CHECK: %[[K:.*]] = linalg.transpose ins(%arg1 : tensor<1x4x2x8xf32>) outs(%{{.*}} : tensor<1x2x4x8xf32>) permutation = [0, 2, 1, 3]
// CHECK: %[[O:.*]] = kiln.attention %arg0, %[[K]], %arg2 {causal_offset = 0 : i64, scale = 0.1249999{{[0-9]+}} : f64}
// CHECK-SAME: : tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32> -> tensor<1x2x4x8xf32>
// CHECK-NOT: kiln.softmax
// CHECK-NOT: kiln.matmul
// CHECK: return %[[O]]
func.func @causal_sdpa(%q: tensor<1x2x4x8xf32>, %kbshd: tensor<1x4x2x8xf32>, %v: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %half = arith.constant dense<0.35355339> : tensor<1xf32>
  %m = arith.constant dense<[[[[0.0, -3.4e38, -3.4e38, -3.4e38], [0.0, 0.0, -3.4e38, -3.4e38], [0.0, 0.0, 0.0, -3.4e38], [0.0, 0.0, 0.0, 0.0]]]]> : tensor<1x1x4x4xf32>
  %e0 = tensor.empty() : tensor<1x2x8x4xf32>
  %kt = linalg.transpose ins(%kbshd : tensor<1x4x2x8xf32>) outs(%e0 : tensor<1x2x8x4xf32>) permutation = [0, 2, 3, 1]
  %e1 = tensor.empty() : tensor<1x2x4x8xf32>
  %qs = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%q, %half : tensor<1x2x4x8xf32>, tensor<1xf32>) outs(%e1 : tensor<1x2x4x8xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x8xf32>
  %ks = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%kt, %half : tensor<1x2x8x4xf32>, tensor<1xf32>) outs(%e0 : tensor<1x2x8x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x2x8x4xf32>
  %s = kiln.matmul %qs, %ks : tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32> -> tensor<1x2x4x4xf32>
  %e2 = tensor.empty() : tensor<1x2x4x4xf32>
  %sm = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%s, %m : tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) outs(%e2 : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.addf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %p = kiln.softmax %sm {axis = 3 : i64} : tensor<1x2x4x4xf32>
  %o = kiln.matmul %p, %v : tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32> -> tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

// A padding mask from the inputs (BERT) stays a bias; a division by a
// constant is a scale; kT already [B, H, D, L] with no transpose to fold
// is transposed back.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> ()>
#pad = affine_map<(d0, d1, d2, d3) -> (d0, 0, 0, d3)>
// CHECK-LABEL: func.func @padding_bias
// CHECK: %[[K:.*]] = linalg.transpose ins(%arg1 : tensor<2x2x8x6xf32>) outs(%{{.*}} : tensor<2x2x6x8xf32>) permutation = [0, 1, 3, 2]
// CHECK: kiln.attention %arg0, %[[K]], %arg2, %arg3 {scale = 2.500000e-01 : f64}
// CHECK-SAME: tensor<2x1x1x6xf32> -> tensor<2x2x4x8xf32>
func.func @padding_bias(%q: tensor<2x2x4x8xf32>, %kt: tensor<2x2x8x6xf32>, %v: tensor<2x2x6x8xf32>, %pad: tensor<2x1x1x6xf32>) -> tensor<2x2x4x8xf32> {
  %four = arith.constant dense<4.0> : tensor<f32>
  %s = kiln.matmul %q, %kt : tensor<2x2x4x8xf32>, tensor<2x2x8x6xf32> -> tensor<2x2x4x6xf32>
  %e = tensor.empty() : tensor<2x2x4x6xf32>
  %d = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%s, %four : tensor<2x2x4x6xf32>, tensor<f32>) outs(%e : tensor<2x2x4x6xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.divf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<2x2x4x6xf32>
  %m = linalg.generic {indexing_maps = [#id, #pad, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%d, %pad : tensor<2x2x4x6xf32>, tensor<2x1x1x6xf32>) outs(%e : tensor<2x2x4x6xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.addf %b, %a : f32
    linalg.yield %r : f32
  } -> tensor<2x2x4x6xf32>
  %p = kiln.softmax %m {axis = -1 : i64} : tensor<2x2x4x6xf32>
  %o = kiln.matmul %p, %v : tensor<2x2x4x6xf32>, tensor<2x2x6x8xf32> -> tensor<2x2x4x8xf32>
  return %o : tensor<2x2x4x8xf32>
}

// -----

// Where(keep, scores, -inf) with a boolean mask from the inputs becomes a
// bias of 0 / -inf; K and V repeated over 2 query heads per KV head
// (LLaMA's repeat_kv) are read before the repetition.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#keep = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
#rep = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, 0, d3, d4)>
#id5 = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3, d4)>
// CHECK-LABEL: func.func @where_mask_gqa
// CHECK: %[[BIAS:.*]] = linalg.generic {{.*}} ins(%arg3 : tensor<4x4xi1>)
// CHECK: arith.select %{{.*}}, %{{.*}}, %{{.*}} : f32
// CHECK: kiln.attention %arg0, %arg1, %arg2, %[[BIAS]] {scale = 1.000000e+00 : f64}
// CHECK-SAME: tensor<1x4x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<4x4xf32> -> tensor<1x4x4x8xf32>
func.func @where_mask_gqa(%q: tensor<1x4x4x8xf32>, %k: tensor<1x2x4x8xf32>, %v: tensor<1x2x4x8xf32>, %keep: tensor<4x4xi1>) -> tensor<1x4x4x8xf32> {
  %ninf = arith.constant 0xFF800000 : f32
  %ke = tensor.expand_shape %k [[0], [1], [2, 3], [4]] output_shape [1, 2, 1, 4, 8] : tensor<1x2x4x8xf32> into tensor<1x2x1x4x8xf32>
  %e5 = tensor.empty() : tensor<1x2x2x4x8xf32>
  %kb = linalg.generic {indexing_maps = [#rep, #id5], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel"]} ins(%ke : tensor<1x2x1x4x8xf32>) outs(%e5 : tensor<1x2x2x4x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<1x2x2x4x8xf32>
  %kr = tensor.collapse_shape %kb [[0], [1, 2], [3], [4]] : tensor<1x2x2x4x8xf32> into tensor<1x4x4x8xf32>
  %ve = tensor.expand_shape %v [[0], [1], [2, 3], [4]] output_shape [1, 2, 1, 4, 8] : tensor<1x2x4x8xf32> into tensor<1x2x1x4x8xf32>
  %vb = linalg.generic {indexing_maps = [#rep, #id5], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel"]} ins(%ve : tensor<1x2x1x4x8xf32>) outs(%e5 : tensor<1x2x2x4x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<1x2x2x4x8xf32>
  %vr = tensor.collapse_shape %vb [[0], [1, 2], [3], [4]] : tensor<1x2x2x4x8xf32> into tensor<1x4x4x8xf32>
  %et = tensor.empty() : tensor<1x4x8x4xf32>
  %kt = linalg.transpose ins(%kr : tensor<1x4x4x8xf32>) outs(%et : tensor<1x4x8x4xf32>) permutation = [0, 1, 3, 2]
  %s = kiln.matmul %q, %kt : tensor<1x4x4x8xf32>, tensor<1x4x8x4xf32> -> tensor<1x4x4x4xf32>
  %e = tensor.empty() : tensor<1x4x4x4xf32>
  %m = linalg.generic {indexing_maps = [#keep, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%keep, %s : tensor<4x4xi1>, tensor<1x4x4x4xf32>) outs(%e : tensor<1x4x4x4xf32>) {
  ^bb0(%c: i1, %a: f32, %o: f32):
    %r = arith.select %c, %a, %ninf : f32
    linalg.yield %r : f32
  } -> tensor<1x4x4x4xf32>
  %p = kiln.softmax %m {axis = 3 : i64} : tensor<1x4x4x4xf32>
  %o = kiln.matmul %p, %vr : tensor<1x4x4x4xf32>, tensor<1x4x4x8xf32> -> tensor<1x4x4x8xf32>
  return %o : tensor<1x4x4x8xf32>
}

// -----

// A causal mask the graph computes from constants (Trilu-style, with
// linalg.index) and a past of 2 keys: causal_offset 2. [N, S, D] operands
// run as a batch of 1.

#id = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#m2 = affine_map<(d0, d1) -> (d0, d1)>
#mask = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-LABEL: func.func @computed_causal_rank3
// CHECK: kiln.attention %{{.*}}, %{{.*}}, %{{.*}} {causal_offset = 2 : i64, scale = 1.000000e+00 : f64}
// CHECK-SAME: tensor<1x3x4x8xf32>, tensor<1x3x6x8xf32>, tensor<1x3x6x8xf32>
// CHECK-SAME: -> tensor<1x3x4x8xf32>
// CHECK: tensor.collapse_shape
func.func @computed_causal_rank3(%q: tensor<3x4x8xf32>, %kt: tensor<3x8x6xf32>, %v: tensor<3x6x8xf32>) -> tensor<3x4x8xf32> {
  %neg = arith.constant -1.0e9 : f32
  %zero = arith.constant 0.0 : f32
  %c2 = arith.constant 2 : index
  %e = tensor.empty() : tensor<4x6xf32>
  %mask = linalg.generic {indexing_maps = [#m2], iterator_types = ["parallel", "parallel"]} outs(%e : tensor<4x6xf32>) {
  ^bb0(%o: f32):
    %i = linalg.index 0 : index
    %j = linalg.index 1 : index
    %lim = arith.addi %i, %c2 : index
    %masked = arith.cmpi sgt, %j, %lim : index
    %r = arith.select %masked, %neg, %zero : f32
    linalg.yield %r : f32
  } -> tensor<4x6xf32>
  %s = kiln.matmul %q, %kt : tensor<3x4x8xf32>, tensor<3x8x6xf32> -> tensor<3x4x6xf32>
  %e3 = tensor.empty() : tensor<3x4x6xf32>
  %m = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s, %mask : tensor<3x4x6xf32>, tensor<4x6xf32>) outs(%e3 : tensor<3x4x6xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.addf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<3x4x6xf32>
  %p = kiln.softmax %m {axis = 2 : i64} : tensor<3x4x6xf32>
  %o = kiln.matmul %p, %v : tensor<3x4x6xf32>, tensor<3x6x8xf32> -> tensor<3x4x8xf32>
  return %o : tensor<3x4x8xf32>
}

// -----

// Near misses are left alone: the scores used outside the chain, a scale
// after the mask, a Where whose fill does not mask, a softmax over another
// axis.

#id = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#scalar = affine_map<(d0, d1, d2) -> ()>
// CHECK-LABEL: func.func @scores_used_twice
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @scores_used_twice(%q: tensor<2x4x8xf32>, %kt: tensor<2x8x4xf32>, %v: tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x4xf32>) {
  %s = kiln.matmul %q, %kt : tensor<2x4x8xf32>, tensor<2x8x4xf32> -> tensor<2x4x4xf32>
  %p = kiln.softmax %s {axis = 2 : i64} : tensor<2x4x4xf32>
  %o = kiln.matmul %p, %v : tensor<2x4x4xf32>, tensor<2x4x8xf32> -> tensor<2x4x8xf32>
  return %o, %s : tensor<2x4x8xf32>, tensor<2x4x4xf32>
}

// CHECK-LABEL: func.func @scale_after_mask
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @scale_after_mask(%q: tensor<2x4x8xf32>, %kt: tensor<2x8x4xf32>, %v: tensor<2x4x8xf32>, %bias: tensor<2x4x4xf32>) -> tensor<2x4x8xf32> {
  %c = arith.constant dense<0.5> : tensor<f32>
  %s = kiln.matmul %q, %kt : tensor<2x4x8xf32>, tensor<2x8x4xf32> -> tensor<2x4x4xf32>
  %e = tensor.empty() : tensor<2x4x4xf32>
  %m = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s, %bias : tensor<2x4x4xf32>, tensor<2x4x4xf32>) outs(%e : tensor<2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.addf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<2x4x4xf32>
  %d = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%m, %c : tensor<2x4x4xf32>, tensor<f32>) outs(%e : tensor<2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<2x4x4xf32>
  %p = kiln.softmax %d {axis = 2 : i64} : tensor<2x4x4xf32>
  %o = kiln.matmul %p, %v : tensor<2x4x4xf32>, tensor<2x4x8xf32> -> tensor<2x4x8xf32>
  return %o : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @where_fill_not_masking
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @where_fill_not_masking(%q: tensor<2x4x8xf32>, %kt: tensor<2x8x4xf32>, %v: tensor<2x4x8xf32>, %keep: tensor<2x4x4xi1>) -> tensor<2x4x8xf32> {
  %fill = arith.constant -1.0 : f32
  %s = kiln.matmul %q, %kt : tensor<2x4x8xf32>, tensor<2x8x4xf32> -> tensor<2x4x4xf32>
  %e = tensor.empty() : tensor<2x4x4xf32>
  %m = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%keep, %s : tensor<2x4x4xi1>, tensor<2x4x4xf32>) outs(%e : tensor<2x4x4xf32>) {
  ^bb0(%c: i1, %a: f32, %o: f32):
    %r = arith.select %c, %a, %fill : f32
    linalg.yield %r : f32
  } -> tensor<2x4x4xf32>
  %p = kiln.softmax %m {axis = 2 : i64} : tensor<2x4x4xf32>
  %o = kiln.matmul %p, %v : tensor<2x4x4xf32>, tensor<2x4x8xf32> -> tensor<2x4x8xf32>
  return %o : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @softmax_over_queries
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @softmax_over_queries(%q: tensor<2x4x8xf32>, %kt: tensor<2x8x4xf32>, %v: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %s = kiln.matmul %q, %kt : tensor<2x4x8xf32>, tensor<2x8x4xf32> -> tensor<2x4x4xf32>
  %p = kiln.softmax %s {axis = 1 : i64} : tensor<2x4x4xf32>
  %o = kiln.matmul %p, %v : tensor<2x4x4xf32>, tensor<2x4x8xf32> -> tensor<2x4x8xf32>
  return %o : tensor<2x4x8xf32>
}

// -----

// COM: Grouped-query heads as the dynamo exporter writes them: K repeated
// COM: over the query heads and the repetition folded into the batch of a
// COM: 3-D transpose ([B, Hkv, g, L, D] -> [B*Hkv*g, L, D] -> [.., D, L] ->
// COM: [B, H, D, L]), V repeated as usual. The op reads K and V before the
// COM: repetition.
#id5 = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3, d4)>
#rep = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, 0, d3, d4)>
// CHECK-LABEL: func.func @dynamo_grouped_heads
// CHECK-SAME: attributes {kiln.raised = {attention = 1 : i64}}
// CHECK: %[[O:.*]] = kiln.attention %arg0, %arg1, %arg2 {scale = 1.000000e+00 : f64}
// CHECK-SAME: tensor<1x4x3x8xf32>, tensor<1x2x5x8xf32>, tensor<1x2x5x8xf32> -> tensor<1x4x3x8xf32>
// CHECK-NOT: linalg.transpose
// CHECK: return %[[O]]
func.func @dynamo_grouped_heads(%q: tensor<1x4x3x8xf32>, %k: tensor<1x2x5x8xf32>, %v: tensor<1x2x5x8xf32>) -> tensor<1x4x3x8xf32> {
  %ke = tensor.expand_shape %k [[0], [1], [2, 3], [4]] output_shape [1, 2, 1, 5, 8] : tensor<1x2x5x8xf32> into tensor<1x2x1x5x8xf32>
  %e0 = tensor.empty() : tensor<1x2x2x5x8xf32>
  %kr = linalg.generic {indexing_maps = [#rep, #id5], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel"]} ins(%ke : tensor<1x2x1x5x8xf32>) outs(%e0 : tensor<1x2x2x5x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<1x2x2x5x8xf32>
  %k3 = tensor.collapse_shape %kr [[0, 1, 2], [3], [4]] : tensor<1x2x2x5x8xf32> into tensor<4x5x8xf32>
  %e1 = tensor.empty() : tensor<4x8x5xf32>
  %kt3 = linalg.transpose ins(%k3 : tensor<4x5x8xf32>) outs(%e1 : tensor<4x8x5xf32>) permutation = [0, 2, 1]
  %kt = tensor.expand_shape %kt3 [[0, 1], [2], [3]] output_shape [1, 4, 8, 5] : tensor<4x8x5xf32> into tensor<1x4x8x5xf32>
  %ve = tensor.expand_shape %v [[0], [1], [2, 3], [4]] output_shape [1, 2, 1, 5, 8] : tensor<1x2x5x8xf32> into tensor<1x2x1x5x8xf32>
  %e2 = tensor.empty() : tensor<1x2x2x5x8xf32>
  %vr = linalg.generic {indexing_maps = [#rep, #id5], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel"]} ins(%ve : tensor<1x2x1x5x8xf32>) outs(%e2 : tensor<1x2x2x5x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<1x2x2x5x8xf32>
  %v4 = tensor.collapse_shape %vr [[0], [1, 2], [3], [4]] : tensor<1x2x2x5x8xf32> into tensor<1x4x5x8xf32>
  %sc = kiln.matmul %q, %kt : tensor<1x4x3x8xf32>, tensor<1x4x8x5xf32> -> tensor<1x4x3x5xf32>
  %p = kiln.softmax %sc {axis = 3 : i64} : tensor<1x4x3x5xf32>
  %o = kiln.matmul %p, %v4 : tensor<1x4x3x5xf32>, tensor<1x4x5x8xf32> -> tensor<1x4x3x8xf32>
  return %o : tensor<1x4x3x8xf32>
}
