// RUN: kiln-opt %s --split-input-file --pass-pipeline="builtin.module(func.func(kiln-cpu-lower-vectors))" | FileCheck %s

// COM: The accumulator's read/write pair leaves the reduction loop (the
// COM: block lives in registers as an iter_arg) and the contraction becomes
// COM: one FMA per row of the register block.
// CHECK-LABEL: func.func @register_block
// CHECK: scf.for %{{.*}} = %c0 to %c12 step %c6
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c16
// CHECK-COUNT-6: vector.load %{{.*}} : memref<12x32xf32>, vector<16xf32>
// CHECK: %[[ACC:.*]] = vector.insert %{{.*}} [5] : vector<16xf32> into vector<6x16xf32>
// CHECK: %[[SUM:.*]] = scf.for %{{.*}} = %c0 to %c64 step %c1 iter_args(%[[A:.*]] = %[[ACC]]) -> (vector<6x16xf32>)
// CHECK-NOT: vector.contract
// CHECK-COUNT-6: vector.fma {{.*}} : vector<16xf32>
// CHECK: scf.yield
// CHECK: vector.store {{.*}} : memref<12x32xf32>, vector<16xf32>
func.func @register_block(%a: memref<12x64xf32>, %b: memref<64x32xf32>, %c: memref<12x32xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c6 = arith.constant 6 : index
  %c12 = arith.constant 12 : index
  %c16 = arith.constant 16 : index
  %c32 = arith.constant 32 : index
  %c64 = arith.constant 64 : index
  %pad = arith.constant 0.0 : f32
  scf.for %i = %c0 to %c12 step %c6 {
    scf.for %j = %c0 to %c32 step %c16 {
      scf.for %k = %c0 to %c64 step %c1 {
        %sa = memref.subview %a[%i, %k] [6, 1] [1, 1] : memref<12x64xf32> to memref<6x1xf32, strided<[64, 1], offset: ?>>
        %sb = memref.subview %b[%k, %j] [1, 16] [1, 1] : memref<64x32xf32> to memref<1x16xf32, strided<[32, 1], offset: ?>>
        %sc = memref.subview %c[%i, %j] [6, 16] [1, 1] : memref<12x32xf32> to memref<6x16xf32, strided<[32, 1], offset: ?>>
        %va = vector.transfer_read %sa[%c0, %c0], %pad {in_bounds = [true, true]} : memref<6x1xf32, strided<[64, 1], offset: ?>>, vector<6x1xf32>
        %vb = vector.transfer_read %sb[%c0, %c0], %pad {in_bounds = [true, true]} : memref<1x16xf32, strided<[32, 1], offset: ?>>, vector<1x16xf32>
        %vc = vector.transfer_read %sc[%c0, %c0], %pad {in_bounds = [true, true]} : memref<6x16xf32, strided<[32, 1], offset: ?>>, vector<6x16xf32>
        %r = vector.contract {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vb, %vc : vector<6x1xf32>, vector<1x16xf32> into vector<6x16xf32>
        vector.transfer_write %r, %sc[%c0, %c0] {in_bounds = [true, true]} : vector<6x16xf32>, memref<6x16xf32, strided<[32, 1], offset: ?>>
      }
    }
  }
  return
}

// -----

// COM: A row reduction becomes one in-register reduction per row.
// CHECK-LABEL: func.func @row_reduce_exp
// CHECK-NOT: vector.multi_reduction
// CHECK: vector.reduction <add>, %{{.*}} : vector<16xf32> into f32
func.func @row_reduce_exp(%x: memref<4x16xf32>, %out: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %pad = arith.constant 0.0 : f32
  scf.for %i = %c0 to %c4 step %c1 {
    %v = vector.transfer_read %x[%i, %c0], %pad {in_bounds = [true, true]} : memref<4x16xf32>, vector<1x16xf32>
    %e = math.exp %v : vector<1x16xf32>
    %acc = vector.transfer_read %out[%i], %pad {in_bounds = [true]} : memref<4xf32>, vector<1xf32>
    %s = vector.multi_reduction <add>, %e, %acc [1] : vector<1x16xf32> to vector<1xf32>
    vector.transfer_write %s, %out[%i] {in_bounds = [true]} : vector<1xf32>, memref<4xf32>
  }
  return
}

// -----

// COM: A packed weight panel W'[panel, k, 32] read a row per reduction
// COM: step: each step also prefetches the row 16 ahead (clamped to the
// COM: last), one prefetch per 64-byte line of the 128-byte row.
// CHECK-LABEL: func.func @panel_prefetch
// CHECK: scf.for %[[K:.*]] = %c0 to %c64 step %c1
// CHECK: %[[AHEAD:.*]] = arith.addi %[[K]], %c16
// CHECK: %[[ROW:.*]] = arith.minui %[[AHEAD]], %c63
// CHECK: memref.prefetch %arg1[%arg3, %[[ROW]], %c0{{.*}}], read, locality<3>, data
// CHECK: memref.prefetch %arg1[%arg3, %[[ROW]], %c16{{.*}}], read, locality<3>, data
// CHECK: vector.load %arg1[%arg3, %[[K]], %c0] : memref<2x64x32xf32>, vector<32xf32>
func.func @panel_prefetch(%a: memref<64xf32>, %w: memref<2x64x32xf32>, %out: memref<32xf32>, %p: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %zero = arith.constant dense<0.0> : vector<32xf32>
  %sum = scf.for %k = %c0 to %c64 step %c1 iter_args(%acc = %zero) -> (vector<32xf32>) {
    %row = vector.load %w[%p, %k, %c0] : memref<2x64x32xf32>, vector<32xf32>
    %x = memref.load %a[%k] : memref<64xf32>
    %xs = vector.broadcast %x : f32 to vector<32xf32>
    %next = vector.fma %xs, %row, %acc : vector<32xf32>
    scf.yield %next : vector<32xf32>
  }
  vector.store %sum, %out[%c0] : memref<32xf32>, vector<32xf32>
  return
}
