// RUN: kiln-opt %s --split-input-file --kiln-narrow-producers | FileCheck %s

// COM: GPT-2's QKV projection under --precision bf16: the bias add's f32
// COM: result, viewed [1, 8, 192], is split by three gathers that each
// COM: round what they read. The bias add rounds instead (one truncf before
// COM: its yield), its result and the view are bf16, and the gathers only
// COM: move bf16 elements.
// CHECK-LABEL: func.func @qkv_split
// CHECK: %[[P:.*]] = linalg.generic
// CHECK: arith.addf
// CHECK-NEXT: arith.truncf %{{.*}} : f32 to bf16
// CHECK-NEXT: linalg.yield %{{.*}} : bf16
// CHECK-NEXT: } -> tensor<8x192xbf16>
// CHECK: %[[V:.*]] = tensor.expand_shape %[[P]] {{.*}} : tensor<8x192xbf16> into tensor<1x8x192xbf16>
// CHECK: linalg.generic
// CHECK: %[[E:.*]] = tensor.extract %[[V]][{{.*}}] : tensor<1x8x192xbf16>
// CHECK-NEXT: linalg.yield %[[E]] : bf16
// CHECK: linalg.generic
// CHECK: %[[E2:.*]] = tensor.extract %[[V]][{{.*}}] : tensor<1x8x192xbf16>
// CHECK-NEXT: linalg.yield %[[E2]] : bf16
// CHECK-NOT: arith.truncf
#id2 = affine_map<(d0, d1) -> (d0, d1)>
#bias = affine_map<(d0, d1) -> (d1)>
#id3 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
func.func @qkv_split(%x: tensor<8x192xf32>, %b: tensor<192xf32>) -> (tensor<1x8x64xbf16>, tensor<1x8x64xbf16>) {
  %c0 = arith.constant 0 : index
  %c64 = arith.constant 64 : index
  %e = tensor.empty() : tensor<8x192xf32>
  %p = linalg.generic {indexing_maps = [#id2, #bias, #id2], iterator_types = ["parallel", "parallel"]} ins(%x, %b : tensor<8x192xf32>, tensor<192xf32>) outs(%e : tensor<8x192xf32>) {
  ^bb0(%in: f32, %bi: f32, %out: f32):
    %s = arith.addf %in, %bi : f32
    linalg.yield %s : f32
  } -> tensor<8x192xf32>
  %v = tensor.expand_shape %p [[0, 1], [2]] output_shape [1, 8, 192] : tensor<8x192xf32> into tensor<1x8x192xf32>
  %e1 = tensor.empty() : tensor<1x8x64xbf16>
  %q = linalg.generic {indexing_maps = [#id3], iterator_types = ["parallel", "parallel", "parallel"]} outs(%e1 : tensor<1x8x64xbf16>) {
  ^bb0(%out: bf16):
    %i = linalg.index 1 : index
    %j = linalg.index 2 : index
    %r = tensor.extract %v[%c0, %i, %j] : tensor<1x8x192xf32>
    %t = arith.truncf %r : f32 to bf16
    linalg.yield %t : bf16
  } -> tensor<1x8x64xbf16>
  %k = linalg.generic {indexing_maps = [#id3], iterator_types = ["parallel", "parallel", "parallel"]} outs(%e1 : tensor<1x8x64xbf16>) {
  ^bb0(%out: bf16):
    %i = linalg.index 1 : index
    %j = linalg.index 2 : index
    %jj = arith.addi %j, %c64 : index
    %r = tensor.extract %v[%c0, %i, %jj] : tensor<1x8x192xf32>
    %t = arith.truncf %r : f32 to bf16
    linalg.yield %t : bf16
  } -> tensor<1x8x64xbf16>
  return %q, %k : tensor<1x8x64xbf16>, tensor<1x8x64xbf16>
}

// -----

// COM: A reader taking the value as an input whose element it rounds.
// CHECK-LABEL: func.func @input_reader
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<16xf16>)
// CHECK: arith.truncf %{{.*}} : f32 to f16
// CHECK: linalg.generic {{.*}} ins(%{{.*}} : tensor<16xf16>)
// CHECK-NEXT: ^bb0(%[[IN:.*]]: f16, %{{.*}}: f16):
// CHECK-NEXT: linalg.yield %[[IN]] : f16
#id = affine_map<(d0) -> (d0)>
func.func @input_reader(%x: tensor<16xf32>) -> tensor<16xf16> {
  %e = tensor.empty() : tensor<16xf32>
  %p = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.mulf %in, %in : f32
    linalg.yield %s : f32
  } -> tensor<16xf32>
  %e2 = tensor.empty() : tensor<16xf16>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%p : tensor<16xf32>) outs(%e2 : tensor<16xf16>) {
  ^bb0(%in: f32, %out: f16):
    %t = arith.truncf %in : f32 to f16
    linalg.yield %t : f16
  } -> tensor<16xf16>
  return %r : tensor<16xf16>
}

// -----

// COM: Near misses, left alone: a reader that also uses the f32 element, a
// COM: reader rounding to another type than the others, and a result the
// COM: function returns.
// CHECK-LABEL: func.func @uses_the_wide_element
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<16xf32>)
// CHECK: linalg.yield %{{.*}} : f32
#id = affine_map<(d0) -> (d0)>
func.func @uses_the_wide_element(%x: tensor<16xf32>) -> tensor<16xbf16> {
  %e = tensor.empty() : tensor<16xf32>
  %p = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.mulf %in, %in : f32
    linalg.yield %s : f32
  } -> tensor<16xf32>
  %e2 = tensor.empty() : tensor<16xbf16>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%p : tensor<16xf32>) outs(%e2 : tensor<16xbf16>) {
  ^bb0(%in: f32, %out: bf16):
    %a = arith.addf %in, %in : f32
    %t = arith.truncf %a : f32 to bf16
    linalg.yield %t : bf16
  } -> tensor<16xbf16>
  return %r : tensor<16xbf16>
}

// -----

// CHECK-LABEL: func.func @two_narrow_types
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<16xf32>)
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: arith.truncf %{{.*}} : f32 to f16
#id = affine_map<(d0) -> (d0)>
func.func @two_narrow_types(%x: tensor<16xf32>) -> (tensor<16xbf16>, tensor<16xf16>) {
  %e = tensor.empty() : tensor<16xf32>
  %p = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.mulf %in, %in : f32
    linalg.yield %s : f32
  } -> tensor<16xf32>
  %e2 = tensor.empty() : tensor<16xbf16>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%p : tensor<16xf32>) outs(%e2 : tensor<16xbf16>) {
  ^bb0(%in: f32, %out: bf16):
    %t = arith.truncf %in : f32 to bf16
    linalg.yield %t : bf16
  } -> tensor<16xbf16>
  %e3 = tensor.empty() : tensor<16xf16>
  %h = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%p : tensor<16xf32>) outs(%e3 : tensor<16xf16>) {
  ^bb0(%in: f32, %out: f16):
    %t = arith.truncf %in : f32 to f16
    linalg.yield %t : f16
  } -> tensor<16xf16>
  return %r, %h : tensor<16xbf16>, tensor<16xf16>
}

// -----

// CHECK-LABEL: func.func @returned
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<16xf32>)
// CHECK: return %{{.*}}, %{{.*}} : tensor<16xf32>, tensor<16xbf16>
#id = affine_map<(d0) -> (d0)>
func.func @returned(%x: tensor<16xf32>) -> (tensor<16xf32>, tensor<16xbf16>) {
  %e = tensor.empty() : tensor<16xf32>
  %p = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.mulf %in, %in : f32
    linalg.yield %s : f32
  } -> tensor<16xf32>
  %e2 = tensor.empty() : tensor<16xbf16>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%p : tensor<16xf32>) outs(%e2 : tensor<16xbf16>) {
  ^bb0(%in: f32, %out: bf16):
    %t = arith.truncf %in : f32 to bf16
    linalg.yield %t : bf16
  } -> tensor<16xbf16>
  return %p, %r : tensor<16xf32>, tensor<16xbf16>
}
