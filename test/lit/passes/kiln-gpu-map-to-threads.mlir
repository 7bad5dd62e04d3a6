// RUN: kiln-opt %s --split-input-file --kiln-gpu-map-to-threads | FileCheck %s

// COM: A 2x1000 nest: 2000 iterations, 256 threads per block, 8 blocks; the
// COM: global id is delinearized back into the two induction variables.
// CHECK-LABEL: func.func @nest
// CHECK-DAG: %[[C8:.*]] = arith.constant 8 : index
// CHECK-DAG: %[[C256:.*]] = arith.constant 256 : index
// CHECK: gpu.launch blocks(%[[BX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[C8]], %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) threads(%[[TX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[C256]],
// CHECK: %[[M:.*]] = arith.muli %[[BX]], %{{.*}} : index
// CHECK: %[[ID:.*]] = arith.addi %[[M]], %[[TX]]
// CHECK: %[[IN:.*]] = arith.cmpi ult, %[[ID]], %{{.*}}
// CHECK: scf.if %[[IN]]
// CHECK: arith.divui %[[ID]]
// CHECK: arith.remui
// CHECK: memref.store
// CHECK: gpu.terminator
// CHECK-NOT: scf.parallel
func.func @nest(%out: memref<2x1000xf32>) attributes {kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c1000 = arith.constant 1000 : index
  %zero = arith.constant 0.0 : f32
  scf.parallel (%i, %j) = (%c0, %c0) to (%c2, %c1000) step (%c1, %c1) {
    memref.store %zero, %out[%i, %j] : memref<2x1000xf32>
    scf.reduce
  }
  return
}

// -----

// COM: Small spaces get one warp; a copy becomes a loop nest first; work
// COM: outside loops (a rank-0 store) runs in a single-thread launch.
// CHECK-LABEL: func.func @small_and_scalar
// CHECK: gpu.launch {{.*}} in (%{{.*}} = %c1{{(_[0-9]+)?}}, {{.*}} threads({{.*}}) in (%{{.*}} = %c32,
// CHECK: memref.load
// CHECK: memref.store
// CHECK: gpu.launch {{.*}} in (%{{.*}} = %c1{{(_[0-9]+)?}}, {{.*}} threads({{.*}}) in (%{{.*}} = %c1{{(_[0-9]+)?}},
// CHECK: memref.store %{{.*}}, %{{.*}}[] : memref<f32>
// CHECK-NOT: memref.copy
func.func @small_and_scalar(%a: memref<4xf32>, %b: memref<4xf32>, %s: memref<f32>) attributes {kiln.kernel} {
  memref.copy %a, %b : memref<4xf32> to memref<4xf32>
  %one = arith.constant 1.0 : f32
  memref.store %one, %s[] : memref<f32>
  return
}

// -----

// COM: Functions that are not kernels are left alone.
// CHECK-LABEL: func.func @not_a_kernel
// CHECK: scf.parallel
func.func @not_a_kernel(%out: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %zero = arith.constant 0.0 : f32
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    memref.store %zero, %out[%i] : memref<4xf32>
    scf.reduce
  }
  return
}

// -----

// COM: Symbolic bounds: the trip count and the grid are computed on the
// COM: host side (the grid is at least one block), the block size is fixed,
// COM: and each thread delinearizes its id over the runtime extents.
// CHECK-LABEL: func.func @symbolic
// CHECK-SAME: (%[[BASE:.*]]: memref<f32>, %[[R:.*]]: index, %[[C:.*]]: index)
// CHECK: %[[VIEW:.*]] = memref.reinterpret_cast %[[BASE]]
// CHECK: %[[COUNT:.*]] = arith.muli %{{.*}}, %[[C]] : index
// CHECK: %[[CEIL:.*]] = arith.ceildivui %[[COUNT]], %{{.*}} : index
// CHECK: %[[BLOCKS:.*]] = arith.maxui %[[CEIL]], %{{.*}} : index
// CHECK: gpu.launch blocks(%[[BX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[BLOCKS]],
// CHECK: %[[IN:.*]] = arith.cmpi ult, %{{.*}}, %[[COUNT]] : index
// CHECK: scf.if %[[IN]]
// CHECK: %[[J:.*]] = arith.remui %{{.*}}, %[[C]] : index
// CHECK: %[[I:.*]] = arith.divui %{{.*}}, %[[C]] : index
// CHECK: memref.store %{{.*}}, %[[VIEW]][%{{.*}}, %{{.*}}] : memref<?x?xf32>
func.func @symbolic(%base: memref<f32>, %rows: index, %cols: index) attributes {kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %view = memref.reinterpret_cast %base to offset: [0], sizes: [%rows, %cols], strides: [%cols, 1] : memref<f32> to memref<?x?xf32>
  scf.parallel (%i, %j) = (%c0, %c0) to (%rows, %cols) step (%c1, %c1) {
    memref.store %zero, %view[%i, %j] : memref<?x?xf32>
    scf.reduce
  }
  return
}
