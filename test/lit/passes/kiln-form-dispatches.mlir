// RUN: kiln-opt %s --split-input-file --kiln-form-dispatches | FileCheck %s

// COM: A GEMM root pulls its zero-fill and empty init in; the weight and
// COM: the activation become operands.
// CHECK-LABEL: func.func @gemm
// CHECK-SAME: (%[[X:.*]]: tensor<16x64xf32>)
// CHECK: %[[W:.*]] = arith.constant dense_resource<w> : tensor<64x32xf32>
// CHECK: %[[R:.*]] = kiln.dispatch(%[[X]], %[[W]]) : (tensor<16x64xf32>, tensor<64x32xf32>) -> tensor<16x32xf32> {
// CHECK-NEXT: ^bb0(%[[A:.*]]: tensor<16x64xf32>, %[[B:.*]]: tensor<64x32xf32>):
// CHECK: %[[E:.*]] = tensor.empty() : tensor<16x32xf32>
// CHECK: %[[F:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[E]] : tensor<16x32xf32>)
// CHECK: %[[M:.*]] = linalg.matmul ins(%[[A]], %[[B]] : {{.*}}) outs(%[[F]] : tensor<16x32xf32>)
// CHECK: kiln.yield %[[M]] : tensor<16x32xf32>
// CHECK: return %[[R]]
// CHECK-NOT: linalg.fill
func.func @gemm(%x: tensor<16x64xf32>) -> tensor<16x32xf32> {
  %w = arith.constant dense_resource<w> : tensor<64x32xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x32xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<16x32xf32>) -> tensor<16x32xf32>
  %m = linalg.matmul ins(%x, %w : tensor<16x64xf32>, tensor<64x32xf32>) outs(%f : tensor<16x32xf32>) -> tensor<16x32xf32>
  return %m : tensor<16x32xf32>
}
{-#
  dialect_resources: {
    builtin: {
      w: "0x04000000"
    }
  }
#-}

// -----

// COM: Small constants (here a bias of 4 elements) are cloned into the
// COM: dispatch; reshapes stay outside as views.
// CHECK-LABEL: func.func @elementwise_then_reshape
// CHECK: %[[R:.*]] = kiln.dispatch(%{{.*}}) : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK: arith.constant dense<[1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00]> : tensor<4xf32>
// CHECK: linalg.generic
// CHECK: kiln.yield
// CHECK: %[[V:.*]] = tensor.collapse_shape %[[R]]
// CHECK: return %[[V]]
#id = affine_map<(d0, d1) -> (d0, d1)>
#bcast = affine_map<(d0, d1) -> (d1)>
func.func @elementwise_then_reshape(%x: tensor<2x4xf32>) -> tensor<8xf32> {
  %b = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %e = tensor.empty() : tensor<2x4xf32>
  %g = linalg.generic {indexing_maps = [#id, #bcast, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %b : tensor<2x4xf32>, tensor<4xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %s = arith.addf %a, %c : f32
    linalg.yield %s : f32
  } -> tensor<2x4xf32>
  %v = tensor.collapse_shape %g [[0, 1]] : tensor<2x4xf32> into tensor<8xf32>
  return %v : tensor<8xf32>
}

// -----

// COM: kiln.attention is the root of a dispatch of its own (selection
// COM: later gives it the fallback strategy); the elementwise producer
// COM: of its query stays a dispatch apart (neither cloned in nor fused).
// CHECK-LABEL: func.func @attention
// CHECK-SAME: (%[[Q:.*]]: tensor<1x4x3x8xf32>, %[[K:.*]]: tensor<1x2x3x8xf32>, %[[V:.*]]: tensor<1x2x3x8xf32>)
// CHECK: %[[QS:.*]] = kiln.dispatch(%[[Q]])
// CHECK: %[[O:.*]] = kiln.dispatch(%[[QS]], %[[K]], %[[V]]) : (tensor<1x4x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>) -> tensor<1x4x3x8xf32> {
// CHECK-NEXT: ^bb0(%[[A:.*]]: tensor<1x4x3x8xf32>, %[[B:.*]]: tensor<1x2x3x8xf32>, %[[C:.*]]: tensor<1x2x3x8xf32>):
// CHECK-NEXT: %[[R:.*]] = kiln.attention %[[A]], %[[B]], %[[C]] {causal_offset = 0 : i64, scale = 1.250000e-01 : f64}
// CHECK-NEXT: kiln.yield %[[R]] : tensor<1x4x3x8xf32>
// CHECK: return %[[O]]
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @attention(%q: tensor<1x4x3x8xf32>, %k: tensor<1x2x3x8xf32>, %v: tensor<1x2x3x8xf32>) -> tensor<1x4x3x8xf32> {
  %e = tensor.empty() : tensor<1x4x3x8xf32>
  %qs = linalg.generic {indexing_maps = [#id4, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%q : tensor<1x4x3x8xf32>) outs(%e : tensor<1x4x3x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %t = arith.addf %a, %a : f32
    linalg.yield %t : f32
  } -> tensor<1x4x3x8xf32>
  %o = kiln.attention %qs, %k, %v {scale = 0.125 : f64, causal_offset = 0 : i64} : tensor<1x4x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32> -> tensor<1x4x3x8xf32>
  return %o : tensor<1x4x3x8xf32>
}

// -----

// COM: A reduction root and a linalg.softmax root, each a dispatch of its
// COM: own; no strategy is chosen yet (kiln-select-strategies does that).
// CHECK-LABEL: func.func @reductions
// CHECK: kiln.dispatch(%{{.*}}) : (tensor<4x8xf32>) -> tensor<4xf32>
// CHECK: linalg.generic
// CHECK: kiln.dispatch(%{{.*}}) : (tensor<4x8xf32>) -> tensor<4x8xf32>
// CHECK: linalg.softmax
#in = affine_map<(d0, d1) -> (d0, d1)>
#out = affine_map<(d0, d1) -> (d0)>
func.func @reductions(%x: tensor<4x8xf32>) -> (tensor<4xf32>, tensor<4x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  %s = linalg.generic {indexing_maps = [#in, #out], iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<4x8xf32>) outs(%f : tensor<4xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %t = arith.addf %acc, %a : f32
    linalg.yield %t : f32
  } -> tensor<4xf32>
  %e2 = tensor.empty() : tensor<4x8xf32>
  %p = linalg.softmax dimension(1) ins(%x : tensor<4x8xf32>) outs(%e2 : tensor<4x8xf32>) -> tensor<4x8xf32>
  return %s, %p : tensor<4xf32>, tensor<4x8xf32>
}

