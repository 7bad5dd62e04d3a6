// RUN: kiln-opt %s --split-input-file --pass-pipeline="builtin.module(func.func(kiln-kernel-bare-abi))" | FileCheck %s

// COM: A buffer with symbolic dims becomes its base pointer (rank-0 memref)
// COM: viewed at its row-major shape from the sizes that follow the
// COM: buffers; static buffers stay as they are.
// CHECK-LABEL: func.func @kernel
// CHECK-SAME: (%[[X:.*]]: memref<f32>, %[[W:.*]]: memref<4x8xf32>, %[[OUT:.*]]: memref<f32>, %[[R:.*]]: index, %[[S:.*]]: index, %[[ROUT:.*]]: index, %[[SOUT:.*]]: index)
// CHECK: %[[XS:.*]] = arith.muli %c4, %[[S]] : index
// CHECK: %[[XV:.*]] = memref.reinterpret_cast %[[X]] to offset: [0], sizes: [%[[R]], %[[S]], 4], strides: [%[[XS]], 4, 1] : memref<f32> to memref<?x?x4xf32>
// CHECK: %[[OV:.*]] = memref.reinterpret_cast %[[OUT]] to offset: [0], sizes: [%[[ROUT]], %[[SOUT]], 8], strides: [%{{.*}}, 8, 1] : memref<f32> to memref<?x?x8xf32>
// CHECK: memref.load %[[XV]]
// CHECK: memref.load %[[W]]
// CHECK: memref.store %{{.*}}, %[[OV]]
func.func @kernel(%x: memref<?x?x4xf32>, %w: memref<4x8xf32>, %out: memref<?x?x8xf32>, %r: index, %s: index, %ro: index, %so: index) attributes {kiln.kernel} {
  %c0 = arith.constant 0 : index
  %a = memref.load %x[%c0, %c0, %c0] : memref<?x?x4xf32>
  %b = memref.load %w[%c0, %c0] : memref<4x8xf32>
  %c = arith.addf %a, %b : f32
  memref.store %c, %out[%c0, %c0, %c0] : memref<?x?x8xf32>
  return
}

// -----

// COM: Functions that are not kernels are left alone.
// CHECK-LABEL: func.func @host
// CHECK-SAME: (%{{.*}}: memref<?xf32>)
func.func @host(%x: memref<?xf32>) {
  return
}
