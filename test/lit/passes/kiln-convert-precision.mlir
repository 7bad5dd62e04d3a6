// RUN: kiln-opt %s --split-input-file --pass-pipeline='builtin.module(kiln-convert-precision{precision=bf16})' | FileCheck %s
// RUN: kiln-opt %s --split-input-file --pass-pipeline='builtin.module(kiln-convert-precision{precision=fp16})' | FileCheck %s --check-prefix=F16

// COM: A resource weight becomes a bf16 resource, rounded to nearest even
// COM: (1 + 2^-8 -> 1.0, 1 + 3*2^-8 -> 1 + 2^-7); the activation gets an
// COM: elementwise truncation, the product sums in f32 and is widened back.
// CHECK-LABEL: func.func @weight
// CHECK-DAG: %[[W:.*]] = arith.constant dense_resource<w.bf16> : tensor<16x1xbf16>
// CHECK-DAG: %[[X:.*]] = linalg.generic {{.*}} ins(%arg0 : tensor<4x16xf32>)
// CHECK: arith.truncf {{.*}} : f32 to bf16
// CHECK: %[[P:.*]] = kiln.matmul %[[X]], %[[W]] {acc_type = f32} : tensor<4x16xbf16>, tensor<16x1xbf16> -> tensor<4x1xbf16>
// CHECK: %[[Y:.*]] = linalg.generic {{.*}} ins(%[[P]] : tensor<4x1xbf16>)
// CHECK: arith.extf {{.*}} : bf16 to f32
// CHECK: return %[[Y]] : tensor<4x1xf32>
// CHECK: w.bf16: "0x08000000803F0040C0BF4040803F823F003F003F003F003F003F003F003F003F003F003F"
// F16-LABEL: func.func @weight
// F16: arith.constant dense_resource<w.f16> : tensor<16x1xf16>
// F16: kiln.matmul {{.*}} {acc_type = f32} : tensor<4x16xf16>, tensor<16x1xf16> -> tensor<4x1xf16>
// F16: w.f16: "0x08000000003C0040
func.func @weight(%x: tensor<4x16xf32>) -> tensor<4x1xf32> {
  %w = arith.constant dense_resource<w> : tensor<16x1xf32>
  %y = kiln.matmul %x, %w : tensor<4x16xf32>, tensor<16x1xf32> -> tensor<4x1xf32>
  return %y : tensor<4x1xf32>
}
{-#
  dialect_resources: {
    builtin: {
      w: "0x040000000000803f000000400000c0bf000040400080803f0080813f0000003f0000003f0000003f0000003f0000003f0000003f0000003f0000003f0000003f0000003f"
    }
  }
#-}

// -----

// COM: A transposed weight: the transpose moves onto the converted
// COM: constant, where kiln-fold-constant-transposes folds it. A splat
// COM: weight stays a splat. A weight used twice is converted once.
// CHECK-LABEL: func.func @transposed
// CHECK: %[[C:.*]] = arith.constant dense<1.000000e+00> : tensor<2x16xbf16>
// CHECK-NOT: arith.constant dense<1.000000e+00> : tensor<2x16xbf16>
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[C]] : tensor<2x16xbf16>)
// CHECK: kiln.matmul %{{.*}}, %[[T]] {acc_type = f32}
// CHECK: kiln.matmul %{{.*}}, %[[T]] {acc_type = f32}
func.func @transposed(%x: tensor<4x16xf32>, %z: tensor<3x16xf32>) -> (tensor<4x2xf32>, tensor<3x2xf32>) {
  %w = arith.constant dense<1.0> : tensor<2x16xf32>
  %e = tensor.empty() : tensor<16x2xf32>
  %t = linalg.transpose ins(%w : tensor<2x16xf32>) outs(%e : tensor<16x2xf32>) permutation = [1, 0]
  %y = kiln.matmul %x, %t : tensor<4x16xf32>, tensor<16x2xf32> -> tensor<4x2xf32>
  %v = kiln.matmul %z, %t : tensor<3x16xf32>, tensor<16x2xf32> -> tensor<3x2xf32>
  return %y, %v : tensor<4x2xf32>, tensor<3x2xf32>
}

// -----

// COM: A transposed activation (k^T of attention scores): k is narrowed
// COM: first and the transpose moves after its conversion, so that
// COM: kiln-fuse-elementwise can fold it into the product's reads.
// CHECK-LABEL: func.func @transposed_activation
// CHECK: %[[Q:.*]] = linalg.generic {{.*}} ins(%arg0 : tensor<8x1x64xf32>)
// CHECK: %[[K:.*]] = linalg.generic {{.*}} ins(%arg1 : tensor<8x37x64xf32>)
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[K]] : tensor<8x37x64xbf16>) outs(%{{.*}} : tensor<8x64x37xbf16>) permutation = [0, 2, 1]
// CHECK: kiln.matmul %[[Q]], %[[T]] {acc_type = f32}
func.func @transposed_activation(%q: tensor<8x1x64xf32>, %k: tensor<8x37x64xf32>) -> tensor<8x1x37xf32> {
  %e = tensor.empty() : tensor<8x64x37xf32>
  %t = linalg.transpose ins(%k : tensor<8x37x64xf32>) outs(%e : tensor<8x64x37xf32>) permutation = [0, 2, 1]
  %y = kiln.matmul %q, %t : tensor<8x1x64xf32>, tensor<8x64x37xf32> -> tensor<8x1x37xf32>
  return %y : tensor<8x1x37xf32>
}

// -----

// COM: Left alone: an outer product (K = 1: rotary angles), an f16 model's
// COM: contraction, and an f64 one.
// CHECK-LABEL: func.func @left_alone
// CHECK: kiln.matmul %arg0, %arg1 : tensor<8x1xf32>, tensor<1x4xf32> -> tensor<8x4xf32>
// CHECK: kiln.matmul %arg2, %arg3 : tensor<8x16xf16>, tensor<16x4xf16> -> tensor<8x4xf16>
// CHECK: kiln.matmul %arg4, %arg5 : tensor<8x16xf64>, tensor<16x4xf64> -> tensor<8x4xf64>
func.func @left_alone(%p: tensor<8x1xf32>, %f: tensor<1x4xf32>,
                      %a: tensor<8x16xf16>, %b: tensor<16x4xf16>,
                      %c: tensor<8x16xf64>, %d: tensor<16x4xf64>)
    -> (tensor<8x4xf32>, tensor<8x4xf16>, tensor<8x4xf64>) {
  %angles = kiln.matmul %p, %f : tensor<8x1xf32>, tensor<1x4xf32> -> tensor<8x4xf32>
  %h = kiln.matmul %a, %b : tensor<8x16xf16>, tensor<16x4xf16> -> tensor<8x4xf16>
  %g = kiln.matmul %c, %d : tensor<8x16xf64>, tensor<16x4xf64> -> tensor<8x4xf64>
  return %angles, %h, %g : tensor<8x4xf32>, tensor<8x4xf16>, tensor<8x4xf64>
}

// -----

// COM: Batched operands with symbolic dims keep their shapes.
// CHECK-LABEL: func.func @batched
// CHECK: kiln.matmul %{{.*}}, %{{.*}} {acc_type = f32} : tensor<?x8x32xbf16>, tensor<?x32x8xbf16> -> tensor<?x8x8xbf16>
// CHECK: return %{{.*}} : tensor<?x8x8xf32>
func.func @batched(%a: tensor<?x8x32xf32>, %b: tensor<?x32x8xf32>) -> tensor<?x8x8xf32> {
  %y = kiln.matmul %a, %b : tensor<?x8x32xf32>, tensor<?x32x8xf32> -> tensor<?x8x8xf32>
  return %y : tensor<?x8x8xf32>
}

// -----

// COM: Attention takes narrowed query, key, value and bias and keeps its
// COM: softmax in f32; the result is extended back for its users. A head
// COM: of fewer than 16 elements stays f32.
// CHECK-LABEL: func.func @attention
// CHECK: %[[A:.*]] = kiln.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {causal_offset = 0 : i64, scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x4x8x64xbf16>, tensor<1x2x8x64xbf16>, tensor<1x2x8x64xbf16>, tensor<1x1x8x8xbf16> -> tensor<1x4x8x64xbf16>
// CHECK: linalg.generic {{.*}} ins(%[[A]] : tensor<1x4x8x64xbf16>)
// CHECK: arith.extf
// CHECK: kiln.attention %{{.*}}, %{{.*}}, %{{.*}} {scale = 1.000000e+00 : f64} : tensor<1x1x4x8xf32>
// F16-LABEL: func.func @attention
// F16: kiln.attention {{.*}}softmax_type = f32} : tensor<1x4x8x64xf16>
func.func @attention(%q: tensor<1x4x8x64xf32>, %k: tensor<1x2x8x64xf32>,
                     %v: tensor<1x2x8x64xf32>, %bias: tensor<1x1x8x8xf32>,
                     %s: tensor<1x1x4x8xf32>)
    -> (tensor<1x4x8x64xf32>, tensor<1x1x4x8xf32>) {
  %y = kiln.attention %q, %k, %v, %bias {scale = 0.125 : f64, causal_offset = 0 : i64}
      : tensor<1x4x8x64xf32>, tensor<1x2x8x64xf32>, tensor<1x2x8x64xf32>, tensor<1x1x8x8xf32> -> tensor<1x4x8x64xf32>
  %z = kiln.attention %s, %s, %s {scale = 1.0 : f64}
      : tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32> -> tensor<1x1x4x8xf32>
  return %y, %z : tensor<1x4x8x64xf32>, tensor<1x1x4x8xf32>
}

// -----

// COM: A KV cache (a `kiln.state` argument, returned written) that each
// COM: entry point only writes and reads by attention holds bf16: the
// COM: written slice is rounded once, attention reads the prefix as it is.
// CHECK-LABEL: func.func @prefill
// CHECK-SAME: %arg1: tensor<1x2x8x16xbf16> {kiln.state = "cache"}
// CHECK-LABEL: func.func @decode
// CHECK-SAME: %arg1: tensor<1x2x8x16xbf16> {kiln.state = "cache"}
// CHECK: %[[NEW:.*]] = linalg.generic {{.*}} ins(%arg2 : tensor<1x2x1x16xf32>)
// CHECK: arith.truncf
// CHECK: %[[W:.*]] = tensor.insert_slice %[[NEW]] into %arg1[0, 0, 3, 0]
// CHECK: %[[K:.*]] = tensor.extract_slice %[[W]][0, 0, 0, 0] [1, 2, 4, 16]
// CHECK: kiln.attention %{{.*}}, %[[K]], %[[K]]
// CHECK-SAME: tensor<1x2x4x16xbf16>, tensor<1x2x4x16xbf16>
// CHECK: return %{{.*}}, %[[W]] : tensor<1x2x1x16xf32>, tensor<1x2x8x16xbf16>
func.func @prefill(%q: tensor<1x2x4x16xf32>, %cache: tensor<1x2x8x16xf32> {kiln.state = "cache"}, %new: tensor<1x2x4x16xf32>) -> (tensor<1x2x4x16xf32>, tensor<1x2x8x16xf32> {kiln.state = "cache"}) {
  %w = tensor.insert_slice %new into %cache[0, 0, 0, 0] [1, 2, 4, 16] [1, 1, 1, 1] : tensor<1x2x4x16xf32> into tensor<1x2x8x16xf32>
  %o = kiln.attention %q, %new, %new {scale = 2.500000e-01 : f64} : tensor<1x2x4x16xf32>, tensor<1x2x4x16xf32>, tensor<1x2x4x16xf32> -> tensor<1x2x4x16xf32>
  return %o, %w : tensor<1x2x4x16xf32>, tensor<1x2x8x16xf32>
}
func.func @decode(%q: tensor<1x2x1x16xf32>, %cache: tensor<1x2x8x16xf32> {kiln.state = "cache"}, %new: tensor<1x2x1x16xf32>) -> (tensor<1x2x1x16xf32>, tensor<1x2x8x16xf32> {kiln.state = "cache"}) {
  %w = tensor.insert_slice %new into %cache[0, 0, 3, 0] [1, 2, 1, 16] [1, 1, 1, 1] : tensor<1x2x1x16xf32> into tensor<1x2x8x16xf32>
  %k = tensor.extract_slice %w[0, 0, 0, 0] [1, 2, 4, 16] [1, 1, 1, 1] : tensor<1x2x8x16xf32> to tensor<1x2x4x16xf32>
  %o = kiln.attention %q, %k, %k {scale = 2.500000e-01 : f64} : tensor<1x2x1x16xf32>, tensor<1x2x4x16xf32>, tensor<1x2x4x16xf32> -> tensor<1x2x1x16xf32>
  return %o, %w : tensor<1x2x1x16xf32>, tensor<1x2x8x16xf32>
}

// -----

// COM: One buffer for every entry point: where one of them reads the cache
// COM: otherwise (an attention left unraised), it stays f32 in all.
// CHECK-LABEL: func.func @prefill
// CHECK-SAME: %arg1: tensor<1x2x8x16xf32> {kiln.state = "cache"}
// CHECK-LABEL: func.func @decode
// CHECK-SAME: %arg1: tensor<1x2x8x16xf32> {kiln.state = "cache"}
// CHECK: return %{{.*}}, %{{.*}}, %{{.*}} : tensor<1x2x1x16xf32>, tensor<1x2x4x16xf32>, tensor<1x2x8x16xf32>
func.func @prefill(%q: tensor<1x2x4x16xf32>, %cache: tensor<1x2x8x16xf32> {kiln.state = "cache"}, %new: tensor<1x2x4x16xf32>) -> (tensor<1x2x4x16xf32>, tensor<1x2x8x16xf32> {kiln.state = "cache"}) {
  %w = tensor.insert_slice %new into %cache[0, 0, 0, 0] [1, 2, 4, 16] [1, 1, 1, 1] : tensor<1x2x4x16xf32> into tensor<1x2x8x16xf32>
  %o = kiln.attention %q, %new, %new {scale = 2.500000e-01 : f64} : tensor<1x2x4x16xf32>, tensor<1x2x4x16xf32>, tensor<1x2x4x16xf32> -> tensor<1x2x4x16xf32>
  return %o, %w : tensor<1x2x4x16xf32>, tensor<1x2x8x16xf32>
}
func.func @decode(%q: tensor<1x2x1x16xf32>, %cache: tensor<1x2x8x16xf32> {kiln.state = "cache"}, %new: tensor<1x2x1x16xf32>) -> (tensor<1x2x1x16xf32>, tensor<1x2x4x16xf32>, tensor<1x2x8x16xf32> {kiln.state = "cache"}) {
  %w = tensor.insert_slice %new into %cache[0, 0, 3, 0] [1, 2, 1, 16] [1, 1, 1, 1] : tensor<1x2x1x16xf32> into tensor<1x2x8x16xf32>
  %k = tensor.extract_slice %w[0, 0, 0, 0] [1, 2, 4, 16] [1, 1, 1, 1] : tensor<1x2x8x16xf32> to tensor<1x2x4x16xf32>
  %o = kiln.attention %q, %k, %k {scale = 2.500000e-01 : f64} : tensor<1x2x1x16xf32>, tensor<1x2x4x16xf32>, tensor<1x2x4x16xf32> -> tensor<1x2x1x16xf32>
  return %o, %k, %w : tensor<1x2x1x16xf32>, tensor<1x2x4x16xf32>, tensor<1x2x8x16xf32>
}
