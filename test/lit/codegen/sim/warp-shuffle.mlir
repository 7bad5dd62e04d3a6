// RUN: kiln-opt %s --split-input-file --kiln-test-simulate --verify-diagnostics

// COM: A butterfly reduction with xor shuffles: every lane ends with the sum
// COM: of the 32 inputs 0..31 = 496, so the checksum is 496 * sum(i % 7 + 1)
// COM: over 32 elements = 496 * 122 = 60512.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-remark @+1 {{ok, checksum 60512.000000}}
    gpu.func @warp_sum(%a: memref<32xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %w = arith.constant 32 : i32
      %c1 = arith.constant 1 : i32
      %c2 = arith.constant 2 : i32
      %c4 = arith.constant 4 : i32
      %c8 = arith.constant 8 : i32
      %c16 = arith.constant 16 : i32
      %v0 = memref.load %a[%tid] : memref<32xf32>
      %s1, %ok1 = gpu.shuffle xor %v0, %c16, %w : f32
      %v1 = arith.addf %v0, %s1 : f32
      %s2, %ok2 = gpu.shuffle xor %v1, %c8, %w : f32
      %v2 = arith.addf %v1, %s2 : f32
      %s3, %ok3 = gpu.shuffle xor %v2, %c4, %w : f32
      %v3 = arith.addf %v2, %s3 : f32
      %s4, %ok4 = gpu.shuffle xor %v3, %c2, %w : f32
      %v4 = arith.addf %v3, %s4 : f32
      %s5, %ok5 = gpu.shuffle xor %v4, %c1, %w : f32
      %v5 = arith.addf %v4, %s5 : f32
      memref.store %v5, %a[%tid] : memref<32xf32>
      gpu.return
    }
  }
}

// -----

// COM: Down by 1: lane i gets lane i+1's value; the last lane's source is
// COM: out of range, so it keeps its own value and `valid` is false.
// COM: Values 1..31, 31: checksum = sum((i+1) * (i%7+1), i<31) + 31 * 4 = 2042.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-remark @+1 {{ok, checksum 2042.000000}}
    gpu.func @shift_down(%a: memref<32xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %w = arith.constant 32 : i32
      %c1 = arith.constant 1 : i32
      %v = memref.load %a[%tid] : memref<32xf32>
      %s, %ok = gpu.shuffle down %v, %c1, %w : f32
      memref.store %s, %a[%tid] : memref<32xf32>
      gpu.return
    }
  }
}

// -----

// COM: Half the warp shuffles while the other half is masked off: lanes
// COM: 0..15 read lanes 16..31, which do not execute the shuffle.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'half_warp', block (0,0,0), 'gpu.shuffle': thread (0,0,0) reads lane 16 of its warp, which is not executing the shuffle}}
    gpu.func @half_warp(%a: memref<32xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %c16 = arith.constant 16 : index
      %w = arith.constant 32 : i32
      %o = arith.constant 16 : i32
      %low = arith.cmpi ult, %tid, %c16 : index
      scf.if %low {
        %v = memref.load %a[%tid] : memref<32xf32>
        %s, %ok = gpu.shuffle xor %v, %o, %w : f32
        memref.store %s, %a[%tid] : memref<32xf32>
      }
      gpu.return
    }
  }
}
