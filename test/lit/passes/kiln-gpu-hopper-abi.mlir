// RUN: kiln-opt %s --split-input-file --kiln-gpu-hopper-abi | FileCheck %s

// COM: 32 + 64 KiB of workgroup buffers: more than the 48 KiB of static
// COM: shared memory. They become views of dynamic shared memory at 1 KiB
// COM: aligned offsets from a base rounded up to 1 KiB at run time, and the
// COM: launch asks for their bytes plus the 1 KiB of slack. The TMA
// COM: descriptor argument becomes a pointer cast back to the descriptor;
// COM: the host passes the descriptor through the inverse cast.
!map = !nvgpu.tensormap.descriptor<tensor = memref<128x64xbf16, 3>, swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>
// CHECK-LABEL: func.func @host
// CHECK: %[[BYTES:.*]] = arith.constant 99328 : i32
// CHECK: %[[PTR:.*]] = builtin.unrealized_conversion_cast %{{.*}} : !nvgpu.tensormap.descriptor<{{.*}}> to !llvm.ptr
// CHECK: gpu.launch_func @k::@k blocks in ({{.*}}) threads in ({{.*}}) dynamic_shared_memory_size %[[BYTES]] args(%{{.*}} : memref<16xf32>, %[[PTR]] : !llvm.ptr)
// CHECK-LABEL: gpu.func @k
// CHECK-SAME: (%[[A:.*]]: memref<16xf32>, %[[P:.*]]: !llvm.ptr) kernel
// CHECK-NOT: workgroup(
// CHECK: builtin.unrealized_conversion_cast %[[P]] : !llvm.ptr to !nvgpu.tensormap.descriptor
// CHECK: %[[DYN:.*]] = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
// CHECK: %[[ADDR:.*]] = memref.extract_aligned_pointer_as_index %[[DYN]]
// CHECK: %[[MOD:.*]] = arith.remui %[[ADDR]], %c1024{{.*}}
// CHECK: %[[UP:.*]] = arith.subi %c1024{{.*}}, %[[MOD]]
// CHECK: %[[SHIFT:.*]] = arith.remui %[[UP]], %c1024{{.*}}
// CHECK: %[[AT0:.*]] = arith.addi %[[SHIFT]], %c0
// CHECK: memref.view %[[DYN]][%[[AT0]]][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<128x128xbf16, #gpu.address_space<workgroup>>
// CHECK: %[[AT1:.*]] = arith.addi %[[SHIFT]], %c32768
// CHECK: %[[TILE:.*]] = memref.view %[[DYN]][%[[AT1]]][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<128x128xf32, #gpu.address_space<workgroup>>
// CHECK: memref.store %{{.*}}, %[[TILE]]
module attributes {gpu.container_module} {
  func.func @host(%a: memref<16xf32>, %u: memref<*xbf16>) {
    %c1 = arith.constant 1 : index
    %c64 = arith.constant 64 : index
    %c128 = arith.constant 128 : index
    %m = nvgpu.tma.create.descriptor %u box[%c128, %c64] : memref<*xbf16> -> !map
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c128, %c1, %c1) args(%a : memref<16xf32>, %m : !map)
    return
  }
  gpu.module @k {
    gpu.func @k(%a: memref<16xf32>, %m: !map) workgroup(%s : memref<128x128xbf16, #gpu.address_space<workgroup>>, %t : memref<128x128xf32, #gpu.address_space<workgroup>>) kernel {
      %c0 = arith.constant 0 : index
      %v = memref.load %a[%c0] : memref<16xf32>
      nvgpu.tma.prefetch.descriptor %m : !map
      memref.store %v, %t[%c0, %c0] : memref<128x128xf32, #gpu.address_space<workgroup>>
      gpu.return
    }
  }
}

// -----

// COM: 16 KiB of workgroup buffers fit static shared memory: unchanged.
// CHECK-LABEL: gpu.func @small
// CHECK-SAME: workgroup(
// CHECK-NOT: gpu.dynamic_shared_memory
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @small(%a: memref<16xf32>) workgroup(%s : memref<64x64xf32, #gpu.address_space<workgroup>>) kernel {
      gpu.return
    }
  }
}
