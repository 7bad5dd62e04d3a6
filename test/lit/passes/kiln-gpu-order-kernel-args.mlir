// RUN: kiln-opt %s --kiln-gpu-order-kernel-args | FileCheck %s

// COM: Buffers first, then sizes, in the kernel and in every launch of it;
// COM: the body still reads the same values.
// CHECK-LABEL: gpu.func @k
// CHECK-SAME: (%[[A:.*]]: memref<f32>, %[[B:.*]]: memref<4xf32>, %[[N:.*]]: index, %[[M:.*]]: index)
// CHECK: %[[V:.*]] = memref.reinterpret_cast %[[A]] to offset: [0], sizes: [%[[N]]], strides: [1]
// CHECK: memref.load %[[B]][%[[M]]]
// CHECK-LABEL: func.func @host
// CHECK: gpu.launch_func @kernels::@k {{.*}} args(%arg0 : memref<f32>, %arg2 : memref<4xf32>, %arg1 : index, %arg3 : index)
module attributes {gpu.container_module} {
  gpu.module @kernels {
    gpu.func @k(%a: memref<f32>, %n: index, %b: memref<4xf32>, %m: index) kernel {
      %view = memref.reinterpret_cast %a to offset: [0], sizes: [%n], strides: [1] : memref<f32> to memref<?xf32>
      %x = memref.load %b[%m] : memref<4xf32>
      %c0 = arith.constant 0 : index
      memref.store %x, %view[%c0] : memref<?xf32>
      gpu.return
    }
  }
  func.func @host(%a: memref<f32>, %n: index, %b: memref<4xf32>, %m: index) {
    %c1 = arith.constant 1 : index
    gpu.launch_func @kernels::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%a : memref<f32>, %n : index, %b : memref<4xf32>, %m : index)
    return
  }
}
