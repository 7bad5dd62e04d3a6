// RUN: kiln-opt %s --split-input-file --kiln-test-simulate --verify-diagnostics

// COM: 128-bit accesses: 4 threads each load 4 consecutive elements, reverse
// COM: them, and store them back. Element i ends up holding i ^ 3, so the
// COM: checksum is sum((i ^ 3) * (i % 7 + 1)) over 16 elements = 473.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-remark @+1 {{ok, checksum 473.000000}}
    gpu.func @reverse4(%a: memref<4x4xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 4, 1, 1>}} {
      %tid = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %v = vector.load %a[%tid, %c0] {alignment = 16 : i64} : memref<4x4xf32>, vector<4xf32>
      %e0 = vector.extract %v[0] : f32 from vector<4xf32>
      %e1 = vector.extract %v[1] : f32 from vector<4xf32>
      %e2 = vector.extract %v[2] : f32 from vector<4xf32>
      %e3 = vector.extract %v[3] : f32 from vector<4xf32>
      %r = vector.from_elements %e3, %e2, %e1, %e0 : vector<4xf32>
      vector.store %r, %a[%tid, %c0] {alignment = 16 : i64} : memref<4x4xf32>, vector<4xf32>
      gpu.return
    }
  }
}

// -----

// COM: A vector load that starts one element off: 16-byte alignment is
// COM: violated (the GPU raises a misaligned address fault).
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'misaligned', block (0,0,0), 'vector.load': misaligned vector load by thread (0,0,0) of argument #0: byte offset 4 is not a multiple of its alignment 16}}
    gpu.func @misaligned(%a: memref<4x8xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 4, 1, 1>}} {
      %tid = gpu.thread_id x
      %c1 = arith.constant 1 : index
      %v = vector.load %a[%tid, %c1] {alignment = 16 : i64} : memref<4x8xf32>, vector<4xf32>
      vector.store %v, %a[%tid, %c1] : memref<4x8xf32>, vector<4xf32>
      gpu.return
    }
  }
}

// -----

// COM: A vector store that runs past the end of its row.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{'vector.store': out-of-bounds vector store by thread (0,0,0) of argument #0 at index [0, 6] (4 elements along the last dimension); its shape is [2, 8]}}
    gpu.func @row_overrun(%a: memref<2x8xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 2, 1, 1>}} {
      %tid = gpu.thread_id x
      %c6 = arith.constant 6 : index
      %z = arith.constant 0.0 : f32
      %v = vector.broadcast %z : f32 to vector<4xf32>
      vector.store %v, %a[%tid, %c6] : memref<2x8xf32>, vector<4xf32>
      gpu.return
    }
  }
}

// -----

// COM: Atomics: 64 threads in 2 blocks each add their global id to element
// COM: 0, which ends at 0 + sum(0..63) = 2016 whatever the order; elements
// COM: 1..64 keep i. Checksum: 2016 + sum(i * (i % 7 + 1), 1 <= i < 65) = 10271.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-remark @+1 {{ok, checksum 10271.000000}}
    gpu.func @atomic_sum(%a: memref<65xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 2, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %bid = gpu.block_id x
      %tid = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %c32 = arith.constant 32 : index
      %base = arith.muli %bid, %c32 : index
      %id = arith.addi %base, %tid : index
      %i = arith.index_cast %id : index to i32
      %f = arith.sitofp %i : i32 to f32
      %old = memref.atomic_rmw addf %f, %a[%c0] : (f32, memref<65xf32>) -> f32
      gpu.return
    }
  }
}

// -----

// COM: An atomic add to shared memory, then a plain read of the total by
// COM: thread 0 with no barrier in between: the other threads' atomics may
// COM: not have happened yet, which the race checker reports.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{read-after-write race on shared buffer #0 element 0}}
    gpu.func @atomic_then_read(%a: memref<32xf32>) workgroup(%s : memref<1xf32, #gpu.address_space<workgroup>>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %zero = arith.constant 0.0 : f32
      %is0 = arith.cmpi eq, %tid, %c0 : index
      scf.if %is0 {
        memref.store %zero, %s[%c0] : memref<1xf32, #gpu.address_space<workgroup>>
      }
      gpu.barrier
      %v = memref.load %a[%tid] : memref<32xf32>
      %old = memref.atomic_rmw addf %v, %s[%c0] : (f32, memref<1xf32, #gpu.address_space<workgroup>>) -> f32
      scf.if %is0 {
        %t = memref.load %s[%c0] : memref<1xf32, #gpu.address_space<workgroup>>
        memref.store %t, %a[%c0] : memref<32xf32>
      }
      gpu.return
    }
  }
}
