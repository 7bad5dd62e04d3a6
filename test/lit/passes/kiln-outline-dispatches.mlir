// RUN: kiln-opt %s --split-input-file --kiln-outline-dispatches | FileCheck %s

// COM: Each dispatch becomes a kernel in `module @kernels` taking one memref
// COM: per input and per result; the dispatch records the kernel's name.
// CHECK-LABEL: func.func @main
// CHECK: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}, kernel = @kernels::@main_dispatch_0}
// CHECK: kiln.dispatch(%{{.*}}) {kernel = @kernels::@main_dispatch_1}
// CHECK-LABEL: module @kernels
// CHECK: func.func @main_dispatch_0(%[[A:.*]]: memref<8xf32>, %[[B:.*]]: memref<8xf32>, %[[OUT:.*]]: memref<8xf32>) attributes {kiln.config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}, kiln.kernel}
// CHECK-DAG: %[[TA:.*]] = bufferization.to_tensor %[[A]] restrict : memref<8xf32> to tensor<8xf32>
// CHECK-DAG: %[[TB:.*]] = bufferization.to_tensor %[[B]] restrict : memref<8xf32> to tensor<8xf32>
// CHECK: %[[G:.*]] = linalg.generic {{.*}} ins(%[[TA]], %[[TB]] : tensor<8xf32>, tensor<8xf32>)
// CHECK: bufferization.materialize_in_destination %[[G]] in restrict writable %[[OUT]] : (tensor<8xf32>, memref<8xf32>) -> ()
// CHECK-NEXT: return
// CHECK: func.func @main_dispatch_1(%{{.*}}: memref<8xf32>, %{{.*}}: memref<2x4xf32>) attributes {kiln.kernel}
#id = affine_map<(d0) -> (d0)>
func.func @main(%x: tensor<8xf32>, %y: tensor<8xf32>) -> tensor<2x4xf32> {
  %r = kiln.dispatch(%x, %y) {config = {strategy = "elementwise", vector_width = 4, threads = 256}} : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>, %b: tensor<8xf32>):
    %e = tensor.empty() : tensor<8xf32>
    %g = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel"]}
        ins(%a, %b : tensor<8xf32>, tensor<8xf32>) outs(%e : tensor<8xf32>) {
    ^bb0(%i: f32, %j: f32, %o: f32):
      %s = arith.addf %i, %j : f32
      linalg.yield %s : f32
    } -> tensor<8xf32>
    kiln.yield %g : tensor<8xf32>
  }
  %q = kiln.dispatch(%r) : (tensor<8xf32>) -> tensor<2x4xf32> {
  ^bb0(%a: tensor<8xf32>):
    %v = tensor.expand_shape %a [[0, 1]] output_shape [2, 4] : tensor<8xf32> into tensor<2x4xf32>
    kiln.yield %v : tensor<2x4xf32>
  }
  return %q : tensor<2x4xf32>
}

// -----

// COM: Two entry functions share one kernel module. Identical dispatches
// COM: (the layers of a transformer) share one kernel, across functions
// COM: too; the others get unique names.
// CHECK-LABEL: func.func @first
// CHECK: kernel = @kernels::@first_dispatch_0
// CHECK: kernel = @kernels::@first_dispatch_0
// CHECK-LABEL: func.func @second
// CHECK: kernel = @kernels::@first_dispatch_0
// CHECK: kernel = @kernels::@second_dispatch_1
// CHECK: module @kernels
// CHECK-COUNT-2: attributes {kiln.kernel}
// CHECK-NOT: attributes {kiln.kernel}
func.func @first(%x: tensor<4xf32>) -> tensor<4xf32> {
  %r = kiln.dispatch(%x) : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4xf32>):
    kiln.yield %a : tensor<4xf32>
  }
  %s = kiln.dispatch(%r) : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4xf32>):
    kiln.yield %a : tensor<4xf32>
  }
  return %s : tensor<4xf32>
}
func.func @second(%x: tensor<4xf32>, %y: tensor<8xf32>) -> (tensor<4xf32>, tensor<8xf32>) {
  %r = kiln.dispatch(%x) : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4xf32>):
    kiln.yield %a : tensor<4xf32>
  }
  %s = kiln.dispatch(%y) : (tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>):
    kiln.yield %a : tensor<8xf32>
  }
  return %r, %s : tensor<4xf32>, tensor<8xf32>
}

// -----

// COM: Symbolic dims: buffers keep their `?` dims; the index arguments
// COM: that follow the buffers carry one size per symbolic dim, in order
// COM: (input dims, then result dims).
// CHECK-LABEL: func.func @dynamic
// CHECK: kiln.dispatch(%{{.*}}, %{{.*}}) {kernel = @kernels::@dynamic_dispatch_0}
// CHECK-LABEL: module @kernels
// CHECK: func.func @dynamic_dispatch_0(%[[X:.*]]: memref<?x?x4xf32>, %[[W:.*]]: memref<4x8xf32>, %[[OUT:.*]]: memref<?x?x8xf32>, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index)
// CHECK: bufferization.to_tensor %[[X]] restrict : memref<?x?x4xf32> to tensor<?x?x4xf32>
// CHECK: bufferization.materialize_in_destination %{{.*}} in restrict writable %[[OUT]] : (tensor<?x?x8xf32>, memref<?x?x8xf32>) -> ()
func.func @dynamic(%x: tensor<?x?x4xf32>, %w: tensor<4x8xf32>) -> tensor<?x?x8xf32> {
  %r = kiln.dispatch(%x, %w) : (tensor<?x?x4xf32>, tensor<4x8xf32>) -> tensor<?x?x8xf32> {
  ^bb0(%a: tensor<?x?x4xf32>, %b: tensor<4x8xf32>):
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %d0 = tensor.dim %a, %c0 : tensor<?x?x4xf32>
    %d1 = tensor.dim %a, %c1 : tensor<?x?x4xf32>
    %e = tensor.empty(%d0, %d1) : tensor<?x?x8xf32>
    %m = kiln.matmul %a, %b : tensor<?x?x4xf32>, tensor<4x8xf32> -> tensor<?x?x8xf32>
    kiln.yield %m : tensor<?x?x8xf32>
  }
  return %r : tensor<?x?x8xf32>
}
