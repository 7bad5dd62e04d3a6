// RUN: kiln-opt %s --split-input-file --kiln-test-simulate --verify-diagnostics

// COM: What the hardware punishes in the sm_80 collectives, planted one
// COM: bug a kernel (their numerics: test/e2e/test_sim_tensor_core.py).
// COM: A read of a cp.async destination before the wait that retires its
// COM: group: the bytes may not have landed.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'no_wait', block (0,0,0), 'memref.load': read of shared buffer #0 element 0 by thread (0,0,0) while a cp.async into it is in flight (no nvgpu.device_async_wait has retired its group)}}
    gpu.func @no_wait(%a: memref<128xf32>) workgroup(%s: memref<128xf32, #gpu.address_space<workgroup>>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c4 = arith.constant 4 : index
      %i = arith.muli %tid, %c4 : index
      %t = nvgpu.device_async_copy %a[%i], %s[%i], 4 : memref<128xf32> to memref<128xf32, #gpu.address_space<workgroup>>
      %g = nvgpu.device_async_create_group %t
      %v = memref.load %s[%i] : memref<128xf32, #gpu.address_space<workgroup>>
      nvgpu.device_async_wait %g
      gpu.return
    }
  }
}

// -----

// COM: A pipeline that waits for all but the newest group (numGroups = 1)
// COM: and reads the newest: still in flight.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'wait_too_little', block (0,0,0), 'memref.load': read of shared buffer #0 element 64 by thread (0,0,0) while a cp.async into it is in flight}}
    gpu.func @wait_too_little(%a: memref<128xf32>) workgroup(%s: memref<128xf32, #gpu.address_space<workgroup>>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 16, 1, 1>}} {
      %tid = gpu.thread_id x
      %c4 = arith.constant 4 : index
      %c64 = arith.constant 64 : index
      %i = arith.muli %tid, %c4 : index
      %j = arith.addi %i, %c64 : index
      %t0 = nvgpu.device_async_copy %a[%i], %s[%i], 4 : memref<128xf32> to memref<128xf32, #gpu.address_space<workgroup>>
      %g0 = nvgpu.device_async_create_group %t0
      %t1 = nvgpu.device_async_copy %a[%j], %s[%j], 4 : memref<128xf32> to memref<128xf32, #gpu.address_space<workgroup>>
      %g1 = nvgpu.device_async_create_group %t1
      nvgpu.device_async_wait %g1 {numGroups = 1 : i32}
      %first = memref.load %s[%i] : memref<128xf32, #gpu.address_space<workgroup>>
      %second = memref.load %s[%j] : memref<128xf32, #gpu.address_space<workgroup>>
      gpu.return
    }
  }
}

// -----

// COM: The wait makes a thread's own copies visible to it; another thread
// COM: needs a barrier first.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'no_barrier', block (0,0,0), 'memref.load': read-after-write race on shared buffer #0 element 4: thread (0,0,0) and thread (1,0,0) with no gpu.barrier in between}}
    gpu.func @no_barrier(%a: memref<128xf32>) workgroup(%s: memref<128xf32, #gpu.address_space<workgroup>>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c1 = arith.constant 1 : index
      %c4 = arith.constant 4 : index
      %c32 = arith.constant 32 : index
      %i = arith.muli %tid, %c4 : index
      %t = nvgpu.device_async_copy %a[%i], %s[%i], 4 : memref<128xf32> to memref<128xf32, #gpu.address_space<workgroup>>
      %g = nvgpu.device_async_create_group %t
      nvgpu.device_async_wait %g
      %n = arith.addi %tid, %c1 : index
      %next = arith.remui %n, %c32 : index
      %k = arith.muli %next, %c4 : index
      %v = memref.load %s[%k] : memref<128xf32, #gpu.address_space<workgroup>>
      gpu.return
    }
  }
}

// -----

// COM: mma.sync is .sync.aligned: all 32 lanes of the warp execute it.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'divergent_mma', block (0,0,0), 'nvgpu.mma.sync': needs all 32 lanes of warp 0; 16 execute it (divergent, or a block that does not fill the warp)}}
    gpu.func @divergent_mma(%a: memref<16xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c16 = arith.constant 16 : index
      %low = arith.cmpi ult, %tid, %c16 : index
      %fa = arith.constant dense<1.0> : vector<4x2xf16>
      %fb = arith.constant dense<1.0> : vector<2x2xf16>
      %fc = arith.constant dense<0.0> : vector<2x2xf32>
      scf.if %low {
        %fd = nvgpu.mma.sync (%fa, %fb, %fc) {mmaShape = [16, 8, 16]} : (vector<4x2xf16>, vector<2x2xf16>, vector<2x2xf32>) -> vector<2x2xf32>
      }
      gpu.return
    }
  }
}

// -----

// COM: ldmatrix row addresses are 16-byte aligned.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'misaligned_ldmatrix', block (0,0,0), 'nvgpu.ldmatrix': misaligned ldmatrix row address by thread (0,0,0) of shared buffer #0: byte offset 2 is not a multiple of 16}}
    gpu.func @misaligned_ldmatrix(%a: memref<32x16xf16>) workgroup(%s: memref<32x16xf16, #gpu.address_space<workgroup>>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c8 = arith.constant 8 : index
      %t0 = nvgpu.device_async_copy %a[%tid, %c0], %s[%tid, %c0], 8 : memref<32x16xf16> to memref<32x16xf16, #gpu.address_space<workgroup>>
      %t1 = nvgpu.device_async_copy %a[%tid, %c8], %s[%tid, %c8], 8 : memref<32x16xf16> to memref<32x16xf16, #gpu.address_space<workgroup>>
      %g = nvgpu.device_async_create_group %t0, %t1
      nvgpu.device_async_wait %g
      gpu.barrier
      %v = nvgpu.ldmatrix %s[%tid, %c1] {numTiles = 4 : i32, transpose = false} : memref<32x16xf16, #gpu.address_space<workgroup>> -> vector<4x2xf16>
      gpu.return
    }
  }
}
