// RUN: kiln-opt %s -split-input-file --kiln-gpu-collapse-contraction-loops | FileCheck %s

// GPT-2's output projection after elementwise fusion pushed the head merge
// into it: the sum runs over (head, head dim), both operands read them as
// one contiguous run. One K loop of 64, the operands viewed as [1, 8, 64]
// and the weights folded to their [64, 64] constant.

#a = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d3, d4)>
#b = affine_map<(d0, d1, d2, d3, d4) -> (d3, d4, d2)>
#c = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @out_projection
// CHECK: %[[A:.*]] = tensor.collapse_shape %arg0 {{\[\[}}0], [1], [2, 3]] : tensor<1x8x4x16xbf16> into tensor<1x8x64xbf16>
// CHECK: linalg.generic
// CHECK-SAME: iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK-SAME: ins(%[[A]], %arg1 : tensor<1x8x64xbf16>, tensor<64x64xbf16>)
// CHECK-NOT: tensor.expand_shape %arg1
func.func @out_projection(%x: tensor<1x8x4x16xbf16>, %w: tensor<64x64xbf16>) -> tensor<1x8x64xf32> {
  %zero = arith.constant 0.0 : f32
  %w3 = tensor.expand_shape %w [[0, 1], [2]] output_shape [4, 16, 64] : tensor<64x64xbf16> into tensor<4x16x64xbf16>
  %e = tensor.empty() : tensor<1x8x64xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x64xf32>) -> tensor<1x8x64xf32>
  %y = linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "parallel", "reduction", "reduction"]} ins(%x, %w3 : tensor<1x8x4x16xbf16>, tensor<4x16x64xbf16>) outs(%f : tensor<1x8x64xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pf = arith.extf %p : bf16 to f32
    %qf = arith.extf %q : bf16 to f32
    %m = arith.mulf %pf, %qf : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x8x64xf32>
  return %y : tensor<1x8x64xf32>
}

// -----

// The heads read in [B, H, S, D] order (a transpose folded into the
// contraction): (head, head dim) are not one run of x's dims. Left alone.

#a = affine_map<(d0, d1, d2, d3, d4) -> (d0, d3, d1, d4)>
#b = affine_map<(d0, d1, d2, d3, d4) -> (d3, d4, d2)>
#c = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @heads_apart
// CHECK-NOT: tensor.collapse_shape
// CHECK: iterator_types = ["parallel", "parallel", "parallel", "reduction", "reduction"]
func.func @heads_apart(%x: tensor<1x4x8x16xf32>, %w: tensor<4x16x64xf32>) -> tensor<1x8x64xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x8x64xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x64xf32>) -> tensor<1x8x64xf32>
  %y = linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "parallel", "reduction", "reduction"]} ins(%x, %w : tensor<1x4x8x16xf32>, tensor<4x16x64xf32>) outs(%f : tensor<1x8x64xf32>) {
  ^bb0(%p: f32, %q: f32, %acc: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x8x64xf32>
  return %y : tensor<1x8x64xf32>
}

// -----

// LLaMA's q projection with the head split folded into the weight
// ([K, heads, head_dim]): the result's (head, head dim) loops are one run
// of the weight's and the result's dims and the activations do not read
// them. One N loop of 64: a plain [8, 64] x [64, 64] product, the weight
// folded to its constant, the result expanded back to the heads.

#a = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d4)>
#b = affine_map<(d0, d1, d2, d3, d4) -> (d4, d2, d3)>
#c = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @split_projection
// CHECK: %[[Y:.*]] = linalg.generic
// CHECK-SAME: iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK-SAME: ins(%arg0, %arg1 : tensor<1x8x64xbf16>, tensor<64x64xbf16>)
// CHECK-SAME: outs(%{{.*}} : tensor<1x8x64xf32>)
// CHECK: tensor.expand_shape %[[Y]] {{\[\[}}0], [1], [2, 3]] output_shape [1, 8, 4, 16] : tensor<1x8x64xf32> into tensor<1x8x4x16xf32>
func.func @split_projection(%x: tensor<1x8x64xbf16>, %w: tensor<64x64xbf16>) -> tensor<1x8x4x16xf32> {
  %zero = arith.constant 0.0 : f32
  %w3 = tensor.expand_shape %w [[0], [1, 2]] output_shape [64, 4, 16] : tensor<64x64xbf16> into tensor<64x4x16xbf16>
  %e = tensor.empty() : tensor<1x8x4x16xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x4x16xf32>) -> tensor<1x8x4x16xf32>
  %y = linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%x, %w3 : tensor<1x8x64xbf16>, tensor<64x4x16xbf16>) outs(%f : tensor<1x8x4x16xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pf = arith.extf %p : bf16 to f32
    %qf = arith.extf %q : bf16 to f32
    %m = arith.mulf %pf, %qf : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x8x4x16xf32>
  return %y : tensor<1x8x4x16xf32>
}

// -----

// The result transposed into [B, H, S, D] inside the contraction: (head,
// head dim) are not one run of its dims. Left alone; so are the batched
// products whose operands both read the leading loops.

#a = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d4)>
#b = affine_map<(d0, d1, d2, d3, d4) -> (d4, d2, d3)>
#c = affine_map<(d0, d1, d2, d3, d4) -> (d0, d2, d1, d3)>
// CHECK-LABEL: func.func @split_projection_transposed
// CHECK-NOT: tensor.expand_shape
// CHECK: iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]
func.func @split_projection_transposed(%x: tensor<1x8x64xf32>, %w: tensor<64x4x16xf32>) -> tensor<1x4x8x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x4x8x16xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<1x4x8x16xf32>) -> tensor<1x4x8x16xf32>
  %y = linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%x, %w : tensor<1x8x64xf32>, tensor<64x4x16xf32>) outs(%f : tensor<1x4x8x16xf32>) {
  ^bb0(%p: f32, %q: f32, %acc: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x4x8x16xf32>
  return %y : tensor<1x4x8x16xf32>
}
