// RUN: kiln-opt %s -split-input-file --kiln-raise-norms | FileCheck %s

// LLaMA's RMSNorm as the importer writes it: Pow(x, 2) as x * x, the
// ReduceMean as a sum and a division by D, Add eps, Sqrt, Div(1, .),
// Mul x, Mul w. Epsilon comes from the per-row chain's value at zero.

#id = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#row = affine_map<(d0, d1, d2) -> (d0, d1)>
#row1 = affine_map<(d0, d1, d2) -> (d0, d1, 0)>
#s = affine_map<(d0, d1, d2) -> ()>
#col = affine_map<(d0, d1, d2) -> (d2)>
#id2 = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @llama_rms_norm
// CHECK-SAME: attributes {kiln.raised = {rms_norm = 1 : i64}}
// CHECK: %[[N:.*]] = kiln.rms_norm %arg0, %arg1 {axis = -1 : i64, epsilon = 9.99999997E-7 : f32} : tensor<1x8x64xf32>, tensor<64xf32>
// CHECK-NOT: linalg.generic
// CHECK: return %[[N]]
func.func @llama_rms_norm(%x: tensor<1x8x64xf32>, %w: tensor<64xf32>) -> tensor<1x8x64xf32> {
  %d = arith.constant 64.0 : f32
  %zero = arith.constant 0.0 : f32
  %eps = arith.constant dense<1.0e-6> : tensor<f32>
  %one = arith.constant dense<1.0> : tensor<f32>
  %e = tensor.empty() : tensor<1x8x64xf32>
  %sq = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%x : tensor<1x8x64xf32>) outs(%e : tensor<1x8x64xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = arith.mulf %a, %a : f32
    linalg.yield %r : f32
  } -> tensor<1x8x64xf32>
  %er = tensor.empty() : tensor<1x8xf32>
  %z = linalg.fill ins(%zero : f32) outs(%er : tensor<1x8xf32>) -> tensor<1x8xf32>
  %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "parallel", "reduction"]} ins(%sq : tensor<1x8x64xf32>) outs(%z : tensor<1x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = arith.addf %o, %a : f32
    linalg.yield %r : f32
  } -> tensor<1x8xf32>
  %mean = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%sum : tensor<1x8xf32>) outs(%er : tensor<1x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = arith.divf %a, %d : f32
    linalg.yield %r : f32
  } -> tensor<1x8xf32>
  %m1 = tensor.expand_shape %mean [[0], [1, 2]] output_shape [1, 8, 1] : tensor<1x8xf32> into tensor<1x8x1xf32>
  %e1 = tensor.empty() : tensor<1x8x1xf32>
  %me = linalg.generic {indexing_maps = [#id, #s, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%m1, %eps : tensor<1x8x1xf32>, tensor<f32>) outs(%e1 : tensor<1x8x1xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.addf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x8x1xf32>
  %rms = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%me : tensor<1x8x1xf32>) outs(%e1 : tensor<1x8x1xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.sqrt %a : f32
    linalg.yield %r : f32
  } -> tensor<1x8x1xf32>
  %inv = linalg.generic {indexing_maps = [#s, #id, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%one, %rms : tensor<f32>, tensor<1x8x1xf32>) outs(%e1 : tensor<1x8x1xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.divf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x8x1xf32>
  %xn = linalg.generic {indexing_maps = [#id, #row1, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%x, %inv : tensor<1x8x64xf32>, tensor<1x8x1xf32>) outs(%e : tensor<1x8x64xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x8x64xf32>
  %y = linalg.generic {indexing_maps = [#col, #id, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%w, %xn : tensor<64xf32>, tensor<1x8x64xf32>) outs(%e : tensor<1x8x64xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x8x64xf32>
  return %y : tensor<1x8x64xf32>
}

// -----

// A decomposed LayerNorm with symbolic rows: ReduceMean, Sub, Pow, ReduceMean,
// Add eps, Sqrt, Div by the root, Mul w, Add b; the squares summed in the
// reduction's body. The row sums' tensor.dim readers move to x.

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
#s = affine_map<(d0, d1) -> ()>
#col = affine_map<(d0, d1) -> (d1)>
#id1 = affine_map<(d0) -> (d0)>
// CHECK-LABEL: func.func @layer_norm
// CHECK-SAME: attributes {kiln.raised = {layer_norm = 1 : i64}}
// CHECK: %[[D:dim_[0-9]+]] = tensor.dim %arg0, %c0
// CHECK: %[[N:.*]] = kiln.layer_norm %arg0, %arg1, %arg2 {axis = -1 : i64, epsilon = 9.99999974E-6 : f32} : tensor<?x32xf32>, tensor<32xf32>, tensor<32xf32>
// CHECK-NOT: linalg.generic
// CHECK: return %[[N]], %[[D]]
func.func @layer_norm(%x: tensor<?x32xf32>, %w: tensor<32xf32>, %b: tensor<32xf32>) -> (tensor<?x32xf32>, index) {
  %c0 = arith.constant 0 : index
  %n = arith.constant 32.0 : f32
  %zero = arith.constant 0.0 : f32
  %eps = arith.constant 1.0e-5 : f32
  %rows = tensor.dim %x, %c0 : tensor<?x32xf32>
  %e = tensor.empty(%rows) : tensor<?x32xf32>
  %er = tensor.empty(%rows) : tensor<?xf32>
  %z = linalg.fill ins(%zero : f32) outs(%er : tensor<?xf32>) -> tensor<?xf32>
  %s0 = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<?x32xf32>) outs(%z : tensor<?xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = arith.addf %a, %o : f32
    linalg.yield %r : f32
  } -> tensor<?xf32>
  %mean = linalg.generic {indexing_maps = [#id1, #id1], iterator_types = ["parallel"]} ins(%s0 : tensor<?xf32>) outs(%er : tensor<?xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = arith.divf %a, %n : f32
    linalg.yield %r : f32
  } -> tensor<?xf32>
  %dx = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %mean : tensor<?x32xf32>, tensor<?xf32>) outs(%e : tensor<?x32xf32>) {
  ^bb0(%a: f32, %m: f32, %o: f32):
    %r = arith.subf %a, %m : f32
    linalg.yield %r : f32
  } -> tensor<?x32xf32>
  %s1 = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%dx : tensor<?x32xf32>) outs(%z : tensor<?xf32>) {
  ^bb0(%a: f32, %o: f32):
    %sq = arith.mulf %a, %a : f32
    %r = arith.addf %o, %sq : f32
    linalg.yield %r : f32
  } -> tensor<?xf32>
  %rows1 = tensor.dim %s1, %c0 : tensor<?xf32>
  %std = linalg.generic {indexing_maps = [#id1, #id1], iterator_types = ["parallel"]} ins(%s1 : tensor<?xf32>) outs(%er : tensor<?xf32>) {
  ^bb0(%a: f32, %o: f32):
    %v = arith.divf %a, %n : f32
    %ve = arith.addf %v, %eps : f32
    %r = math.sqrt %ve : f32
    linalg.yield %r : f32
  } -> tensor<?xf32>
  %xn = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%dx, %std : tensor<?x32xf32>, tensor<?xf32>) outs(%e : tensor<?x32xf32>) {
  ^bb0(%a: f32, %s: f32, %o: f32):
    %r = arith.divf %a, %s : f32
    linalg.yield %r : f32
  } -> tensor<?x32xf32>
  %xw = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%xn, %w : tensor<?x32xf32>, tensor<32xf32>) outs(%e : tensor<?x32xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %r = arith.mulf %a, %c : f32
    linalg.yield %r : f32
  } -> tensor<?x32xf32>
  %y = linalg.generic {indexing_maps = [#col, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%b, %xw : tensor<32xf32>, tensor<?x32xf32>) outs(%e : tensor<?x32xf32>) {
  ^bb0(%c: f32, %a: f32, %o: f32):
    %r = arith.addf %c, %a : f32
    linalg.yield %r : f32
  } -> tensor<?x32xf32>
  return %y, %rows1 : tensor<?x32xf32>, index
}

// -----

// Gemma: x * rsqrt(mean(x^2) + eps) * (1 + w), in f32 between Casts of an
// f16 model; (1 + w) is a per-column scale like any other, and the norm
// takes the f16 input.

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>
#id1 = affine_map<(d0) -> (d0)>
// CHECK-LABEL: func.func @gemma_rms_norm
// CHECK: %[[W1:.*]] = linalg.generic {{.*}} ins(%arg1 : tensor<16xf16>)
// CHECK: %[[N:.*]] = kiln.rms_norm %arg0, %[[W1]] {axis = -1 : i64, epsilon = 9.99999997E-7 : f32} : tensor<4x16xf16>, tensor<16xf16>
// CHECK-NEXT: return %[[N]]
func.func @gemma_rms_norm(%x16: tensor<4x16xf16>, %w: tensor<16xf16>) -> tensor<4x16xf16> {
  %zero = arith.constant 0.0 : f32
  %e16 = tensor.empty() : tensor<16xf16>
  %w1 = linalg.generic {indexing_maps = [#id1, #id1], iterator_types = ["parallel"]} ins(%w : tensor<16xf16>) outs(%e16 : tensor<16xf16>) {
  ^bb0(%a: f16, %o: f16):
    %one = arith.constant 1.0 : f16
    %r = arith.addf %a, %one : f16
    linalg.yield %r : f16
  } -> tensor<16xf16>
  %e = tensor.empty() : tensor<4x16xf32>
  %x = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x16 : tensor<4x16xf16>) outs(%e : tensor<4x16xf32>) {
  ^bb0(%a: f16, %o: f32):
    %r = arith.extf %a : f16 to f32
    linalg.yield %r : f32
  } -> tensor<4x16xf32>
  %er = tensor.empty() : tensor<4xf32>
  %z = linalg.fill ins(%zero : f32) outs(%er : tensor<4xf32>) -> tensor<4xf32>
  %s = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x16xf32>) outs(%z : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %sq = arith.mulf %a, %a : f32
    %r = arith.addf %sq, %o : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  %inv = linalg.generic {indexing_maps = [#id1, #id1], iterator_types = ["parallel"]} ins(%s : tensor<4xf32>) outs(%er : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %n = arith.constant 0.0625 : f32
    %eps = arith.constant 1.0e-6 : f32
    %m = arith.mulf %a, %n : f32
    %me = arith.addf %m, %eps : f32
    %r = math.rsqrt %me : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  %xn = linalg.generic {indexing_maps = [#row, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%inv, %x : tensor<4xf32>, tensor<4x16xf32>) outs(%e : tensor<4x16xf32>) {
  ^bb0(%r0: f32, %a: f32, %o: f32):
    %r = arith.mulf %r0, %a : f32
    linalg.yield %r : f32
  } -> tensor<4x16xf32>
  %e2 = tensor.empty() : tensor<4x16xf16>
  %xh = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%xn : tensor<4x16xf32>) outs(%e2 : tensor<4x16xf16>) {
  ^bb0(%a: f32, %o: f16):
    %r = arith.truncf %a : f32 to f16
    linalg.yield %r : f16
  } -> tensor<4x16xf16>
  %y = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%xh, %w1 : tensor<4x16xf16>, tensor<16xf16>) outs(%e2 : tensor<4x16xf16>) {
  ^bb0(%a: f16, %c: f16, %o: f16):
    %r = arith.mulf %a, %c : f16
    linalg.yield %r : f16
  } -> tensor<4x16xf16>
  return %y : tensor<4x16xf16>
}

// -----

// Almost: the mean of squares divided by D + 1 (not a mean), and an RMS
// chain whose per-row factor is also read elsewhere. Neither is raised.

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
#id1 = affine_map<(d0) -> (d0)>
// CHECK-LABEL: func.func @almost
// CHECK-NOT: kiln.raised
// CHECK-NOT: kiln.rms_norm
// CHECK: return
func.func @almost(%x: tensor<4x16xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %er = tensor.empty() : tensor<4xf32>
  %z = linalg.fill ins(%zero : f32) outs(%er : tensor<4xf32>) -> tensor<4xf32>
  %s = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x16xf32>) outs(%z : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %sq = arith.mulf %a, %a : f32
    %r = arith.addf %sq, %o : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  %inv = linalg.generic {indexing_maps = [#id1, #id1], iterator_types = ["parallel"]} ins(%s : tensor<4xf32>) outs(%er : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %n = arith.constant 17.0 : f32
    %eps = arith.constant 1.0e-6 : f32
    %m = arith.divf %a, %n : f32
    %me = arith.addf %m, %eps : f32
    %r = math.rsqrt %me : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  %xn = linalg.generic {indexing_maps = [#row, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%inv, %x : tensor<4xf32>, tensor<4x16xf32>) outs(%e : tensor<4x16xf32>) {
  ^bb0(%r0: f32, %a: f32, %o: f32):
    %r = arith.mulf %r0, %a : f32
    linalg.yield %r : f32
  } -> tensor<4x16xf32>
  %s2 = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x16xf32>) outs(%z : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %sq = arith.mulf %a, %a : f32
    %r = arith.addf %sq, %o : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  %inv2 = linalg.generic {indexing_maps = [#id1, #id1], iterator_types = ["parallel"]} ins(%s2 : tensor<4xf32>) outs(%er : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %n = arith.constant 0.0625 : f32
    %eps = arith.constant 1.0e-6 : f32
    %m = arith.mulf %a, %n : f32
    %me = arith.addf %m, %eps : f32
    %r = math.rsqrt %me : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  %xn2 = linalg.generic {indexing_maps = [#row, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%inv2, %x : tensor<4xf32>, tensor<4x16xf32>) outs(%e : tensor<4x16xf32>) {
  ^bb0(%r0: f32, %a: f32, %o: f32):
    %r = arith.mulf %r0, %a : f32
    linalg.yield %r : f32
  } -> tensor<4x16xf32>
  return %xn, %xn2, %inv2 : tensor<4x16xf32>, tensor<4x16xf32>, tensor<4xf32>
}

// -----

// ReduceL2 with keepdims: a sum of squares whose per-row chain ends at the
// function's return (no row reads it back). Not a norm; nothing to raise.

#id = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#row = affine_map<(d0, d1, d2) -> (d0, d1)>
#id2 = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @reduce_l2
// CHECK-NOT: kiln.raised
// CHECK: math.sqrt
// CHECK: return
func.func @reduce_l2(%x: tensor<3x2x2xf32>) -> tensor<3x2x1xf32> {
  %zero = arith.constant 0.0 : f32
  %er = tensor.empty() : tensor<3x2xf32>
  %z = linalg.fill ins(%zero : f32) outs(%er : tensor<3x2xf32>) -> tensor<3x2xf32>
  %s = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x : tensor<3x2x2xf32>) outs(%z : tensor<3x2xf32>) {
  ^bb0(%a: f32, %o: f32):
    %sq = arith.mulf %a, %a : f32
    %r = arith.addf %o, %sq : f32
    linalg.yield %r : f32
  } -> tensor<3x2xf32>
  %l2 = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%s : tensor<3x2xf32>) outs(%er : tensor<3x2xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.sqrt %a : f32
    linalg.yield %r : f32
  } -> tensor<3x2xf32>
  %k = tensor.expand_shape %l2 [[0], [1, 2]] output_shape [3, 2, 1] : tensor<3x2xf32> into tensor<3x2x1xf32>
  return %k : tensor<3x2x1xf32>
}
