// RUN: kiln-opt %s --split-input-file --kiln-gpu-sink-views | FileCheck %s

// COM: A view with symbolic dims is rebuilt inside the launch, so the
// COM: launch captures the base pointer and the sizes, not the view.
// CHECK-LABEL: func.func @reinterpret
// CHECK-SAME: (%[[BASE:.*]]: memref<f32>, %[[N:.*]]: index)
// CHECK: gpu.launch
// CHECK-NEXT: %[[LOCAL:.*]] = memref.reinterpret_cast %[[BASE]] to offset: [0], sizes: [%[[N]], 4], strides: [4, 1] : memref<f32> to memref<?x4xf32>
// CHECK: memref.store %{{.*}}, %[[LOCAL]][%{{.*}}, %{{.*}}] : memref<?x4xf32>
func.func @reinterpret(%base: memref<f32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %view = memref.reinterpret_cast %base to offset: [0], sizes: [%n, 4], strides: [4, 1] : memref<f32> to memref<?x4xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %zero, %view[%c0, %c0] : memref<?x4xf32>
    gpu.terminator
  }
  return
}

// -----

// COM: Views of views are rebuilt in order; static views stay outside.
// CHECK-LABEL: func.func @chain
// CHECK: gpu.launch
// CHECK-NEXT: %[[V:.*]] = memref.reinterpret_cast
// CHECK-NEXT: %[[E:.*]] = memref.expand_shape %[[V]] {{\[\[}}0, 1]] output_shape [%{{.*}}, 2] : memref<?xf32> into memref<?x2xf32>
// CHECK: memref.store %{{.*}}, %[[E]]
// CHECK: memref.store %{{.*}}, %{{.*}} : memref<8xf32>
func.func @chain(%base: memref<f32>, %n: index, %half: index, %fixed: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %flat = memref.reinterpret_cast %base to offset: [0], sizes: [%n], strides: [1] : memref<f32> to memref<?xf32>
  %pairs = memref.expand_shape %flat [[0, 1]] output_shape [%half, 2] : memref<?xf32> into memref<?x2xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %zero, %pairs[%c0, %c1] : memref<?x2xf32>
    memref.store %zero, %fixed[%c0] : memref<8xf32>
    gpu.terminator
  }
  return
}

// -----

// COM: A temporary of dynamic shape allocated on the host side: the launch
// COM: gets a rank-0 view of it (its base pointer) and its sizes.
// CHECK-LABEL: func.func @alloc
// CHECK: %[[A:.*]] = memref.alloc(%{{.*}}) : memref<?x3xf32>
// CHECK: %[[P:.*]] = memref.reinterpret_cast %[[A]] to offset: [0], sizes: [], strides: [] : memref<?x3xf32> to memref<f32>
// CHECK: %[[D:.*]] = memref.dim %[[A]], %c0
// CHECK: gpu.launch
// CHECK: memref.reinterpret_cast %[[P]] to offset: [0], sizes: [%[[D]], 3], strides: [3, 1] : memref<f32> to memref<?x3xf32>
func.func @alloc(%n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %a = memref.alloc(%n) : memref<?x3xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %zero, %a[%c0, %c0] : memref<?x3xf32>
    gpu.terminator
  }
  memref.dealloc %a : memref<?x3xf32>
  return
}

// -----

// COM: A float computed on the host side from a size (a mean's element
// COM: count) is recomputed inside the launch: the kernel takes the size.
// CHECK-LABEL: func.func @scalar
// CHECK-SAME: (%[[N:.*]]: index, %[[OUT:.*]]: memref<4xf32>)
// CHECK-NOT: arith.uitofp
// CHECK: gpu.launch
// CHECK: %[[I:.*]] = arith.index_cast %[[N]] : index to i64
// CHECK: %[[F:.*]] = arith.uitofp %[[I]] : i64 to f32
// CHECK: memref.store %[[F]], %[[OUT]]
func.func @scalar(%n: index, %out: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %i = arith.index_cast %n : index to i64
  %f = arith.uitofp %i : i64 to f32
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %f, %out[%c0] : memref<4xf32>
    gpu.terminator
  }
  return
}
