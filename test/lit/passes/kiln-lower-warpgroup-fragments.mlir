// RUN: kiln-opt %s --split-input-file --kiln-lower-warpgroup-fragments | FileCheck %s
// RUN: kiln-opt %s --split-input-file --kiln-lower-warpgroup-fragments --convert-nvgpu-to-nvvm --reconcile-unrealized-casts | FileCheck %s --check-prefix=NVVM

// COM: A 64 x 16 accumulator's 8 registers per thread read (the struct
// COM: convert-nvgpu-to-nvvm makes of it: one inner struct of 8 f32), one
// COM: doubled, and written back; after the conversion no cast is left.
// CHECK-LABEL: func.func @registers
// CHECK: %[[ACC:.*]] = nvgpu.warpgroup.mma.init.accumulator
// CHECK: %[[S:.*]] = builtin.unrealized_conversion_cast %[[ACC]] : !nvgpu.warpgroup.accumulator<fragmented = vector<64x16xf32>> to !llvm.struct<(struct<(f32, f32, f32, f32, f32, f32, f32, f32)>)>
// CHECK: %[[R0:.*]] = llvm.extractvalue %[[S]][0, 0]
// CHECK: llvm.extractvalue %[[S]][0, 7]
// CHECK: %[[TWICE:.*]] = arith.addf %[[R0]], %[[R0]]
// CHECK: %[[P:.*]] = llvm.mlir.poison : !llvm.struct<(struct<(f32, f32, f32, f32, f32, f32, f32, f32)>)>
// CHECK: %[[W0:.*]] = llvm.insertvalue %[[TWICE]], %[[P]][0, 0]
// CHECK: llvm.insertvalue %{{.*}}[0, 7]
// CHECK: %[[BACK:.*]] = builtin.unrealized_conversion_cast %{{.*}} : !llvm.struct<(struct<(f32, f32, f32, f32, f32, f32, f32, f32)>)> to !nvgpu.warpgroup.accumulator<fragmented = vector<64x16xf32>>
// CHECK: nvgpu.warpgroup.mma.store %[[BACK]]
// NVVM-LABEL: func.func @registers
// NVVM-NOT: unrealized_conversion_cast
// NVVM: llvm.extractvalue
// NVVM: llvm.insertvalue
// NVVM-NOT: unrealized_conversion_cast
// NVVM: return
func.func @registers(%out: memref<64x16xf32, 3>) {
  %acc = nvgpu.warpgroup.mma.init.accumulator -> <fragmented = vector<64x16xf32>>
  %r:8 = builtin.unrealized_conversion_cast %acc : !nvgpu.warpgroup.accumulator<fragmented = vector<64x16xf32>> to f32, f32, f32, f32, f32, f32, f32, f32
  %twice = arith.addf %r#0, %r#0 : f32
  %back = builtin.unrealized_conversion_cast %twice, %r#1, %r#2, %r#3, %r#4, %r#5, %r#6, %r#7 : f32, f32, f32, f32, f32, f32, f32, f32 to !nvgpu.warpgroup.accumulator<fragmented = vector<64x16xf32>>
  nvgpu.warpgroup.mma.store %back, %out : <fragmented = vector<64x16xf32>> to memref<64x16xf32, 3>
  return
}

// -----

// COM: 128 rows: two inner structs, register e at [e / 8, e % 8].
// CHECK-LABEL: func.func @two_structs
// CHECK: llvm.extractvalue %{{.*}}[1, 7] : !llvm.struct<(struct<(f32, f32, f32, f32, f32, f32, f32, f32)>, struct<(f32, f32, f32, f32, f32, f32, f32, f32)>)>
func.func @two_structs() -> f32 {
  %acc = nvgpu.warpgroup.mma.init.accumulator -> <fragmented = vector<128x16xf32>>
  %r:16 = builtin.unrealized_conversion_cast %acc : !nvgpu.warpgroup.accumulator<fragmented = vector<128x16xf32>> to f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32
  return %r#15 : f32
}

// -----

// COM: A cast that is not an accumulator's registers stays.
// CHECK-LABEL: func.func @other_casts
// CHECK: builtin.unrealized_conversion_cast %{{.*}} : i32 to f32
func.func @other_casts(%x: i32) -> f32 {
  %y = builtin.unrealized_conversion_cast %x : i32 to f32
  return %y : f32
}
