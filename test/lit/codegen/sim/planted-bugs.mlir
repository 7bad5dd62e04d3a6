// RUN: kiln-opt %s --split-input-file --kiln-test-simulate --verify-diagnostics

// COM: A correct kernel: 2 blocks of 32 threads double 64 elements.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-remark @+1 {{ok, checksum}}
    gpu.func @double(%a: memref<64xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 2, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %bid = gpu.block_id x
      %tid = gpu.thread_id x
      %c32 = arith.constant 32 : index
      %base = arith.muli %bid, %c32 : index
      %i = arith.addi %base, %tid : index
      %v = memref.load %a[%i] : memref<64xf32>
      %d = arith.addf %v, %v : f32
      memref.store %d, %a[%i] : memref<64xf32>
      gpu.return
    }
  }
}

// -----

// COM: Off by one: thread i writes element i + 1, so the last thread of the
// COM: last block stores past the end. The simulator names the kernel, the
// COM: block, the thread, the buffer, the index and the shape.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'off_by_one', block (1,0,0), 'memref.store': out-of-bounds store by thread (31,0,0) of argument #0 at index [64]; its shape is [64]}}
    gpu.func @off_by_one(%a: memref<64xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 2, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %bid = gpu.block_id x
      %tid = gpu.thread_id x
      %c1 = arith.constant 1 : index
      %c32 = arith.constant 32 : index
      %base = arith.muli %bid, %c32 : index
      %j = arith.addi %base, %tid : index
      %i = arith.addi %j, %c1 : index
      %zero = arith.constant 0.0 : f32
      memref.store %zero, %a[%i] : memref<64xf32>
      gpu.return
    }
  }
}

// -----

// COM: An out-of-bounds load in a reduction loop that runs one iteration
// COM: too many.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'row_sum', block (0,0,0), 'memref.load': out-of-bounds load by thread (0,0,0) of argument #0 at index [0, 8]; its shape is [4, 8]}}
    gpu.func @row_sum(%x: memref<4x8xf32>, %out: memref<4xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 4, 1, 1>}} {
      %tid = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c9 = arith.constant 9 : index
      %zero = arith.constant 0.0 : f32
      %sum = scf.for %k = %c0 to %c9 step %c1 iter_args(%acc = %zero) -> (f32) {
        %v = memref.load %x[%tid, %k] : memref<4x8xf32>
        %n = arith.addf %acc, %v : f32
        scf.yield %n : f32
      }
      memref.store %sum, %out[%tid] : memref<4xf32>
      gpu.return
    }
  }
}

// -----

// COM: A barrier that only some threads reach is undefined behaviour on the
// COM: GPU; the simulator reports it.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'divergent_barrier', block (0,0,0), 'gpu.barrier': gpu.barrier reached by only some threads of the block (barrier in divergent code)}}
    gpu.func @divergent_barrier(%a: memref<32xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c16 = arith.constant 16 : index
      %low = arith.cmpi ult, %tid, %c16 : index
      scf.if %low {
        gpu.barrier
      }
      gpu.return
    }
  }
}

// -----

// COM: A block-wide reversal through shared memory, correctly synchronized.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-remark @+1 {{ok, checksum}}
    gpu.func @reverse(%a: memref<32xf32>) workgroup(%tile: memref<32xf32, #gpu.address_space<workgroup>>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c31 = arith.constant 31 : index
      %v = memref.load %a[%tid] : memref<32xf32>
      memref.store %v, %tile[%tid] : memref<32xf32, #gpu.address_space<workgroup>>
      gpu.barrier
      %j = arith.subi %c31, %tid : index
      %w = memref.load %tile[%j] : memref<32xf32, #gpu.address_space<workgroup>>
      memref.store %w, %a[%tid] : memref<32xf32>
      gpu.return
    }
  }
}

// -----

// COM: The same kernel with the barrier missing: thread 0 reads what thread
// COM: 31 wrote in the same epoch. On hardware this may or may not work;
// COM: the simulator always reports it.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'missing_barrier', block (0,0,0), 'memref.load': read-after-write race on shared buffer #0 element 31: thread (0,0,0) and thread (31,0,0) with no gpu.barrier in between}}
    gpu.func @missing_barrier(%a: memref<32xf32>) workgroup(%tile: memref<32xf32, #gpu.address_space<workgroup>>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c31 = arith.constant 31 : index
      %v = memref.load %a[%tid] : memref<32xf32>
      memref.store %v, %tile[%tid] : memref<32xf32, #gpu.address_space<workgroup>>
      %j = arith.subi %c31, %tid : index
      %w = memref.load %tile[%j] : memref<32xf32, #gpu.address_space<workgroup>>
      memref.store %w, %a[%tid] : memref<32xf32>
      gpu.return
    }
  }
}

// -----

// COM: Reading shared memory nobody wrote.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{read of uninitialized shared buffer #0 element 1 by thread (0,0,0)}}
    gpu.func @uninitialized(%a: memref<32xf32>) workgroup(%tile: memref<64xf32, #gpu.address_space<workgroup>>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c1 = arith.constant 1 : index
      %j = arith.addi %tid, %c1 : index
      %w = memref.load %tile[%j] : memref<64xf32, #gpu.address_space<workgroup>>
      memref.store %w, %a[%tid] : memref<32xf32>
      gpu.return
    }
  }
}
