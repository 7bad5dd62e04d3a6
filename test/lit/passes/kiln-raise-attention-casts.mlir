// RUN: kiln-opt %s -split-input-file --kiln-raise-attention | FileCheck %s
// RUN: kiln-opt %s -split-input-file --kiln-raise-attention=half-only=true | FileCheck %s --check-prefix=HALF

// COM: A half-precision model's softmax widened to f32 (HF's
// COM: softmax(dtype=torch.float32)): the scores are extended, masked in
// COM: f32, and the probabilities rounded back for P V. One kiln.attention
// COM: on f16 operands with softmax_type f32; the f32 mask term is rounded
// COM: to the scores' type as the bias. half-only raises it too.
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> (0)>
#mask = affine_map<(d0, d1, d2, d3) -> (d0, 0, 0, d3)>
// CHECK-LABEL: func.func @widened_softmax
// CHECK: %[[BIAS:.*]] = linalg.generic
// CHECK: arith.truncf %{{.*}} : f32 to f16
// CHECK: kiln.attention %arg0, %{{.*}}, %arg2, %[[BIAS]] {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x4x8xf16>, tensor<1x2x4x8xf16>, tensor<1x2x4x8xf16>, tensor<1x1x1x4xf16> -> tensor<1x2x4x8xf16>
// CHECK-NOT: kiln.softmax
// HALF-LABEL: func.func @widened_softmax
// HALF: kiln.attention
func.func @widened_softmax(%q: tensor<1x2x4x8xf16>, %kt: tensor<1x2x8x4xf16>, %v: tensor<1x2x4x8xf16>, %m: tensor<1x1x1x4xf32>) -> tensor<1x2x4x8xf16> {
  %c = arith.constant dense<0.125> : tensor<1xf16>
  %s = kiln.matmul %q, %kt : tensor<1x2x4x8xf16>, tensor<1x2x8x4xf16> -> tensor<1x2x4x4xf16>
  %e = tensor.empty() : tensor<1x2x4x4xf16>
  %ss = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%s, %c : tensor<1x2x4x4xf16>, tensor<1xf16>) outs(%e : tensor<1x2x4x4xf16>) {
  ^bb0(%a: f16, %b: f16, %o: f16):
    %r = arith.mulf %a, %b : f16
    linalg.yield %r : f16
  } -> tensor<1x2x4x4xf16>
  %e32 = tensor.empty() : tensor<1x2x4x4xf32>
  %w = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%ss : tensor<1x2x4x4xf16>) outs(%e32 : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f16, %o: f32):
    %r = arith.extf %a : f16 to f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %sm = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%w, %m : tensor<1x2x4x4xf32>, tensor<1x1x1x4xf32>) outs(%e32 : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.addf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %p = kiln.softmax %sm {axis = 3 : i64} : tensor<1x2x4x4xf32>
  %n = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%p : tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf16>) {
  ^bb0(%a: f32, %o: f16):
    %r = arith.truncf %a : f32 to f16
    linalg.yield %r : f16
  } -> tensor<1x2x4x4xf16>
  %o = kiln.matmul %n, %v : tensor<1x2x4x4xf16>, tensor<1x2x4x8xf16> -> tensor<1x2x4x8xf16>
  return %o : tensor<1x2x4x8xf16>
}

// -----

// COM: Softcapping (Gemma 2): the scores divided by the cap, tanh, times
// COM: the cap: softcap = cap, and the scale before it times the cap.
// COM: half-only leaves the f32 chain alone.
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> (0)>
// CHECK-LABEL: func.func @softcap
// CHECK: kiln.attention %arg0, %{{.*}}, %arg2 {scale = 1.250000e-01 : f64, softcap = 5.000000e+01 : f64} : tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32> -> tensor<1x2x4x8xf32>
// CHECK-NOT: math.tanh
// HALF-LABEL: func.func @softcap
// HALF-NOT: kiln.attention
// HALF: math.tanh
func.func @softcap(%q: tensor<1x2x4x8xf32>, %kt: tensor<1x2x8x4xf32>, %v: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %scale = arith.constant dense<0.125> : tensor<1xf32>
  %cap = arith.constant dense<50.0> : tensor<1xf32>
  %s = kiln.matmul %q, %kt : tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32> -> tensor<1x2x4x4xf32>
  %e = tensor.empty() : tensor<1x2x4x4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%s, %scale : tensor<1x2x4x4xf32>, tensor<1xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %d = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%ss, %cap : tensor<1x2x4x4xf32>, tensor<1xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.divf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %t = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%d : tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.tanh %a : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %u = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%t, %cap : tensor<1x2x4x4xf32>, tensor<1xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %r = arith.mulf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %p = kiln.softmax %u {axis = 3 : i64} : tensor<1x2x4x4xf32>
  %o = kiln.matmul %p, %v : tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32> -> tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

// COM: Near misses: a widened softmax whose probabilities stay f32 for P V
// COM: (no rounding back), and a second tanh.
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @widened_not_narrowed
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @widened_not_narrowed(%q: tensor<1x2x4x8xf16>, %kt: tensor<1x2x8x4xf16>, %v: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %s = kiln.matmul %q, %kt : tensor<1x2x4x8xf16>, tensor<1x2x8x4xf16> -> tensor<1x2x4x4xf16>
  %e32 = tensor.empty() : tensor<1x2x4x4xf32>
  %w = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%s : tensor<1x2x4x4xf16>) outs(%e32 : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f16, %o: f32):
    %r = arith.extf %a : f16 to f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %p = kiln.softmax %w {axis = 3 : i64} : tensor<1x2x4x4xf32>
  %o = kiln.matmul %p, %v : tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32> -> tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @two_tanh
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @two_tanh(%q: tensor<1x2x4x8xf32>, %kt: tensor<1x2x8x4xf32>, %v: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %s = kiln.matmul %q, %kt : tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32> -> tensor<1x2x4x4xf32>
  %e = tensor.empty() : tensor<1x2x4x4xf32>
  %t = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%s : tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.tanh %a : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %t2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%t : tensor<1x2x4x4xf32>) outs(%e : tensor<1x2x4x4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.tanh %a : f32
    linalg.yield %r : f32
  } -> tensor<1x2x4x4xf32>
  %p = kiln.softmax %t2 {axis = 3 : i64} : tensor<1x2x4x4xf32>
  %o = kiln.matmul %p, %v : tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32> -> tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}
