// RUN: kiln-opt %s --split-input-file --kiln-transpose-unaligned-weights | FileCheck %s

// COM: A bf16 weight [72, 100]: rows of 100 elements cannot be copied in
// COM: 16-byte chunks, its transpose's rows of 72 can; the contraction reads
// COM: the transpose with the swapped map (kiln-fold-constant-transposes
// COM: then stores it).
// CHECK: #map = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-NEXT: #map1 = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-NEXT: #map2 = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @unaligned
// CHECK: %[[T:.*]] = linalg.transpose ins(%{{.*}} : tensor<72x100xbf16>) outs(%{{.*}} : tensor<100x72xbf16>) permutation = [1, 0]
// CHECK: linalg.generic {indexing_maps = [#map, #map1, #map2], iterator_types = ["parallel", "parallel", "reduction"]} ins(%arg0, %[[T]] : tensor<48x72xbf16>, tensor<100x72xbf16>)
// CHECK: arith.extf
// CHECK-NOT: linalg.matmul
func.func @unaligned(%x: tensor<48x72xbf16>) -> tensor<48x100xf32> {
  %w = arith.constant dense<1.0> : tensor<72x100xbf16>
  %e = tensor.empty() : tensor<48x100xf32>
  %z = arith.constant 0.0 : f32
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<48x100xf32>) -> tensor<48x100xf32>
  %y = linalg.matmul ins(%x, %w : tensor<48x72xbf16>, tensor<72x100xbf16>) outs(%f : tensor<48x100xf32>) -> tensor<48x100xf32>
  return %y : tensor<48x100xf32>
}

// -----

// COM: Left alone: aligned rows (N = 96), f32 weights, and a weight whose K
// COM: (36) would not give aligned rows either.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: linalg.transpose
// CHECK-COUNT-3: linalg.matmul
func.func @left_alone(%x: tensor<48x72xbf16>, %y: tensor<48x72xf32>, %z: tensor<48x36xbf16>) -> (tensor<48x96xf32>, tensor<48x100xf32>, tensor<48x100xf32>) {
  %w1 = arith.constant dense<1.0> : tensor<72x96xbf16>
  %w2 = arith.constant dense<1.0> : tensor<72x100xf32>
  %w3 = arith.constant dense<1.0> : tensor<36x100xbf16>
  %e1 = tensor.empty() : tensor<48x96xf32>
  %e2 = tensor.empty() : tensor<48x100xf32>
  %a = linalg.matmul ins(%x, %w1 : tensor<48x72xbf16>, tensor<72x96xbf16>) outs(%e1 : tensor<48x96xf32>) -> tensor<48x96xf32>
  %b = linalg.matmul ins(%y, %w2 : tensor<48x72xf32>, tensor<72x100xf32>) outs(%e2 : tensor<48x100xf32>) -> tensor<48x100xf32>
  %c = linalg.matmul ins(%z, %w3 : tensor<48x36xbf16>, tensor<36x100xbf16>) outs(%e2 : tensor<48x100xf32>) -> tensor<48x100xf32>
  return %a, %b, %c : tensor<48x96xf32>, tensor<48x100xf32>, tensor<48x100xf32>
}

// -----

// COM: Small-M products (at most 16 rows besides the weight's: decoding)
// COM: read their weight K-innermost whatever its alignment, for
// COM: gemm-small-m's 16-byte chunks along K: an f32 weight [64, 96] under
// COM: 4 rows, and a bf16 one [64, 96] under 2 x 8 = 16 rows. Left alone:
// COM: 17 rows, and K = 30, which is not whole 16-byte chunks of f32.
// CHECK-LABEL: func.func @small_m
// CHECK: linalg.transpose ins(%{{.*}} : tensor<64x96xf32>) outs(%{{.*}} : tensor<96x64xf32>) permutation = [1, 0]
// CHECK: linalg.generic {{.*}} ins(%arg0, %{{.*}} : tensor<4x64xf32>, tensor<96x64xf32>)
// CHECK: linalg.transpose ins(%{{.*}} : tensor<64x96xbf16>) outs(%{{.*}} : tensor<96x64xbf16>) permutation = [1, 0]
// CHECK: linalg.generic {{.*}} ins(%arg1, %{{.*}} : tensor<2x8x64xbf16>, tensor<96x64xbf16>)
// CHECK-NOT: linalg.transpose
// CHECK: linalg.matmul ins(%arg2, %{{.*}} : tensor<17x64xf32>, tensor<64x96xf32>)
// CHECK: linalg.matmul ins(%arg3, %{{.*}} : tensor<4x30xf32>, tensor<30x96xf32>)
#x3 = affine_map<(b, m, n, k) -> (b, m, k)>
#w3 = affine_map<(b, m, n, k) -> (k, n)>
#y3 = affine_map<(b, m, n, k) -> (b, m, n)>
func.func @small_m(%x: tensor<4x64xf32>, %z: tensor<2x8x64xbf16>, %u: tensor<17x64xf32>, %v: tensor<4x30xf32>) -> (tensor<4x96xf32>, tensor<2x8x96xf32>, tensor<17x96xf32>, tensor<4x96xf32>) {
  %w1 = arith.constant dense<1.0> : tensor<64x96xf32>
  %w2 = arith.constant dense<2.0> : tensor<64x96xbf16>
  %w3 = arith.constant dense<3.0> : tensor<64x96xf32>
  %w4 = arith.constant dense<4.0> : tensor<30x96xf32>
  %e1 = tensor.empty() : tensor<4x96xf32>
  %e2 = tensor.empty() : tensor<2x8x96xf32>
  %e3 = tensor.empty() : tensor<17x96xf32>
  %a = linalg.matmul ins(%x, %w1 : tensor<4x64xf32>, tensor<64x96xf32>) outs(%e1 : tensor<4x96xf32>) -> tensor<4x96xf32>
  %b = linalg.generic {indexing_maps = [#x3, #w3, #y3], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%z, %w2 : tensor<2x8x64xbf16>, tensor<64x96xbf16>) outs(%e2 : tensor<2x8x96xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pe = arith.extf %p : bf16 to f32
    %qe = arith.extf %q : bf16 to f32
    %m = arith.mulf %pe, %qe : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<2x8x96xf32>
  %c = linalg.matmul ins(%u, %w3 : tensor<17x64xf32>, tensor<64x96xf32>) outs(%e3 : tensor<17x96xf32>) -> tensor<17x96xf32>
  %d = linalg.matmul ins(%v, %w4 : tensor<4x30xf32>, tensor<30x96xf32>) outs(%e1 : tensor<4x96xf32>) -> tensor<4x96xf32>
  return %a, %b, %c, %d : tensor<4x96xf32>, tensor<2x8x96xf32>, tensor<17x96xf32>, tensor<4x96xf32>
}

// -----

// COM: A weight computed from its indices alone (MatMulNBits' decoding of
// COM: 4-bit integers stored [N, K / 2]) is computed [N, K], whatever M:
// COM: the same body with its two indices swapped, so that a GEMM's chunk
// COM: along K reads contiguous packed bytes; the contraction reads it
// COM: (n, k).
// CHECK-LABEL: func.func @decoded
// CHECK: %[[W:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<48x64xbf16>)
// CHECK-NEXT: ^bb0
// CHECK-NEXT: %[[K:.*]] = linalg.index 1 : index
// CHECK-NEXT: %[[N:.*]] = linalg.index 0 : index
// CHECK: tensor.extract %{{.*}}[%[[N]], %{{.*}}] : tensor<48x32xi8>
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[W]] : tensor<40x64xbf16>, tensor<48x64xbf16>)
// CHECK-NOT: tensor<64x48xbf16>
#kn = affine_map<(k, n) -> (k, n)>
func.func @decoded(%x: tensor<40x64xbf16>) -> tensor<40x48xf32> {
  %packed = arith.constant dense<17> : tensor<48x32xi8>
  %e = tensor.empty() : tensor<64x48xbf16>
  %w = linalg.generic {indexing_maps = [#kn], iterator_types = ["parallel", "parallel"]} outs(%e : tensor<64x48xbf16>) {
  ^bb0(%out: bf16):
    %k = linalg.index 0 : index
    %n = linalg.index 1 : index
    %c2 = arith.constant 2 : index
    %at = arith.divui %k, %c2 : index
    %byte = tensor.extract %packed[%n, %at] : tensor<48x32xi8>
    %f = arith.uitofp %byte : i8 to f32
    %h = arith.truncf %f : f32 to bf16
    linalg.yield %h : bf16
  } -> tensor<64x48xbf16>
  %zero = arith.constant 0.0 : f32
  %e2 = tensor.empty() : tensor<40x48xf32>
  %fill = linalg.fill ins(%zero : f32) outs(%e2 : tensor<40x48xf32>) -> tensor<40x48xf32>
  %y = linalg.matmul ins(%x, %w : tensor<40x64xbf16>, tensor<64x48xbf16>) outs(%fill : tensor<40x48xf32>) -> tensor<40x48xf32>
  return %y : tensor<40x48xf32>
}
