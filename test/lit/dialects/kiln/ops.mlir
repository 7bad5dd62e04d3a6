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

// CHECK-LABEL: func.func @softmax
// CHECK: kiln.softmax %{{.*}} {axis = -1 : i64} : tensor<4x16x16xf32>
func.func @softmax(%s: tensor<4x16x16xf32>) -> tensor<4x16x16xf32> {
  %p = kiln.softmax %s {axis = -1 : i64} : tensor<4x16x16xf32>
  return %p : tensor<4x16x16xf32>
}

// -----

// CHECK-LABEL: func.func @dispatch
// CHECK: %[[R:.*]]:2 = kiln.dispatch(%{{.*}}, %{{.*}}) {strategy = "elementwise"} : (tensor<8xf32>, tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) {
// CHECK-NEXT: ^bb0(%[[A:.*]]: tensor<8xf32>, %[[B:.*]]: tensor<8xf32>):
// CHECK: kiln.yield %[[B]], %[[A]] : tensor<8xf32>, tensor<8xf32>
func.func @dispatch(%x: tensor<8xf32>, %y: tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) {
  %r:2 = kiln.dispatch(%x, %y) {strategy = "elementwise"} : (tensor<8xf32>, tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) {
  ^bb0(%a: tensor<8xf32>, %b: tensor<8xf32>):
    kiln.yield %b, %a : tensor<8xf32>, tensor<8xf32>
  }
  return %r#0, %r#1 : tensor<8xf32>, tensor<8xf32>
}
