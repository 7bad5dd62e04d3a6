// RUN: kiln-opt %s --split-input-file | FileCheck %s
// RUN: kiln-opt %s --split-input-file --mlir-print-op-generic | kiln-opt --split-input-file | FileCheck %s

// CHECK-LABEL: func.func @matmul_broadcast
// CHECK: %[[R:.*]] = kiln.matmul %{{.*}}, %{{.*}} : tensor<2x16x64xf32>, tensor<64x128xf32> -> tensor<2x16x128xf32>
// CHECK: return %[[R]]
func.func @matmul_broadcast(%x: tensor<2x16x64xf32>, %w: tensor<64x128xf32>) -> tensor<2x16x128xf32> {
  %y = kiln.matmul %x, %w : tensor<2x16x64xf32>, tensor<64x128xf32> -> tensor<2x16x128xf32>
  return %y : tensor<2x16x128xf32>
}

// -----

// COM: A size-1 batch dim stretches; integer element types are allowed.
// CHECK-LABEL: func.func @matmul_int
// CHECK: kiln.matmul %{{.*}}, %{{.*}} : tensor<1x3x4xi32>, tensor<5x4x2xi32> -> tensor<5x3x2xi32>
func.func @matmul_int(%a: tensor<1x3x4xi32>, %b: tensor<5x4x2xi32>) -> tensor<5x3x2xi32> {
  %y = kiln.matmul %a, %b : tensor<1x3x4xi32>, tensor<5x4x2xi32> -> tensor<5x3x2xi32>
  return %y : tensor<5x3x2xi32>
}

// -----

// COM: f16 and bf16 operands may accumulate in f32; the attribute
// COM: round-trips, and is absent when not given (above).
// CHECK-LABEL: func.func @matmul_acc
// CHECK: kiln.matmul %{{.*}}, %{{.*}} {acc_type = f32} : tensor<16x64xf16>, tensor<64x32xf16> -> tensor<16x32xf16>
// CHECK: kiln.matmul %{{.*}}, %{{.*}} {acc_type = f32} : tensor<2x4x8xbf16>, tensor<2x8x4xbf16> -> tensor<2x4x4xbf16>
// CHECK: kiln.matmul %{{.*}}, %{{.*}} {acc_type = f32} : tensor<3x4xf32>, tensor<4x2xf32> -> tensor<3x2xf32>
func.func @matmul_acc(%a: tensor<16x64xf16>, %b: tensor<64x32xf16>, %c: tensor<2x4x8xbf16>, %d: tensor<2x8x4xbf16>, %e: tensor<3x4xf32>, %f: tensor<4x2xf32>) -> (tensor<16x32xf16>, tensor<2x4x4xbf16>, tensor<3x2xf32>) {
  %y = kiln.matmul %a, %b {acc_type = f32} : tensor<16x64xf16>, tensor<64x32xf16> -> tensor<16x32xf16>
  %z = kiln.matmul %c, %d {acc_type = f32} : tensor<2x4x8xbf16>, tensor<2x8x4xbf16> -> tensor<2x4x4xbf16>
  %w = kiln.matmul %e, %f {acc_type = f32} : tensor<3x4xf32>, tensor<4x2xf32> -> tensor<3x2xf32>
  return %y, %z, %w : tensor<16x32xf16>, tensor<2x4x4xbf16>, tensor<3x2xf32>
}

// -----

// CHECK-LABEL: func.func @softmax
// CHECK: kiln.softmax %{{.*}} {axis = -1 : i64} : tensor<4x16x16xf32>
func.func @softmax(%s: tensor<4x16x16xf32>) -> tensor<4x16x16xf32> {
  %p = kiln.softmax %s {axis = -1 : i64} : tensor<4x16x16xf32>
  return %p : tensor<4x16x16xf32>
}

// -----

// CHECK-LABEL: func.func @dispatch
// CHECK: %[[R:.*]]:2 = kiln.dispatch(%{{.*}}, %{{.*}}) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<8xf32>, tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) {
// CHECK-NEXT: ^bb0(%[[A:.*]]: tensor<8xf32>, %[[B:.*]]: tensor<8xf32>):
// CHECK: kiln.yield %[[B]], %[[A]] : tensor<8xf32>, tensor<8xf32>
func.func @dispatch(%x: tensor<8xf32>, %y: tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) {
  %r:2 = kiln.dispatch(%x, %y) {config = {strategy = "elementwise", vector_width = 4, threads = 256}} : (tensor<8xf32>, tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) {
  ^bb0(%a: tensor<8xf32>, %b: tensor<8xf32>):
    kiln.yield %b, %a : tensor<8xf32>, tensor<8xf32>
  }
  return %r#0, %r#1 : tensor<8xf32>, tensor<8xf32>
}

// -----

// COM: The transformer ops round-trip, optional operands and attributes
// COM: included.
// CHECK-LABEL: func.func @transformer_ops
// CHECK: kiln.gelu %{{.*}} {tanh_approximation} : tensor<4x8xf32>
// CHECK: kiln.layer_norm %{{.*}}, %{{.*}}, %{{.*}} {axis = -1 : i64, epsilon = 9.99999974E-6 : f32} : tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>
// CHECK: kiln.layer_norm %{{.*}}, %{{.*}} {axis = 0 : i64, epsilon = 1.000000e-03 : f32} : tensor<4x8xf32>, tensor<1x8xf32>
// CHECK: kiln.rms_norm %{{.*}}, %{{.*}} {axis = 1 : i64, epsilon = 9.99999997E-7 : f32} : tensor<4x8xf32>, tensor<8xf32>
// CHECK: kiln.rotary_embedding %{{.*}}, %{{.*}}, %{{.*}} {interleaved} : tensor<1x2x4x8xf32>, tensor<1x4x2xf32>
// CHECK: kiln.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {causal_offset = 2 : i64, scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x4x3x8xf16>, tensor<1x2x5x8xf16>, tensor<1x2x5x6xf16>, tensor<3x5xf16> -> tensor<1x4x3x6xf16>
func.func @transformer_ops(%x: tensor<4x8xf32>, %s: tensor<8xf32>, %s2: tensor<1x8xf32>,
                           %r: tensor<1x2x4x8xf32>, %c: tensor<1x4x2xf32>,
                           %q: tensor<1x4x3x8xf16>, %k: tensor<1x2x5x8xf16>,
                           %v: tensor<1x2x5x6xf16>, %m: tensor<3x5xf16>) {
  %0 = kiln.gelu %x {tanh_approximation} : tensor<4x8xf32>
  %1 = kiln.layer_norm %x, %s, %s {axis = -1 : i64, epsilon = 1.0e-05 : f32} : tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>
  %2 = kiln.layer_norm %x, %s2 {axis = 0 : i64, epsilon = 1.0e-03 : f32} : tensor<4x8xf32>, tensor<1x8xf32>
  %3 = kiln.rms_norm %x, %s {axis = 1 : i64, epsilon = 1.0e-06 : f32} : tensor<4x8xf32>, tensor<8xf32>
  %4 = kiln.rotary_embedding %r, %c, %c {interleaved} : tensor<1x2x4x8xf32>, tensor<1x4x2xf32>
  %5 = kiln.attention %q, %k, %v, %m {scale = 0.125 : f64, causal_offset = 2 : i64, softmax_type = f32}
      : tensor<1x4x3x8xf16>, tensor<1x2x5x8xf16>, tensor<1x2x5x6xf16>, tensor<3x5xf16> -> tensor<1x4x3x6xf16>
  return
}
