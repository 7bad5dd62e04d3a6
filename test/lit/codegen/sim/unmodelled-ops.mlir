// RUN: kiln-opt %s --split-input-file --kiln-test-simulate --verify-diagnostics

// COM: An op with no handler is an error that names it, never a silent skip.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'subgroup_reduce', block (0,0,0), 'gpu.subgroup_reduce': is not modelled by the simulator}}
    gpu.func @subgroup_reduce(%a: memref<32xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 32, 1, 1>}} {
      %tid = gpu.thread_id x
      %x = memref.load %a[%tid] : memref<32xf32>
      %sum = gpu.subgroup_reduce add %x : (f32) -> f32
      memref.store %sum, %a[%tid] : memref<32xf32>
      gpu.return
    }
  }
}

// -----

// COM: Vector operands are modelled only by the vector ops, also for an
// COM: arith op the simulator runs on scalars.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'vector_add', block (0,0,0), 'arith.addf': vector operands and results are modelled only for vector.load/store/extract/insert/from_elements/broadcast/shape_cast and the nvgpu collectives}}
    gpu.func @vector_add(%a: memref<4x4xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 4, 1, 1>}} {
      %tid = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %v = vector.load %a[%tid, %c0] : memref<4x4xf32>, vector<4xf32>
      %w = arith.addf %v, %v : vector<4xf32>
      vector.store %w, %a[%tid, %c0] : memref<4x4xf32>, vector<4xf32>
      gpu.return
    }
  }
}

// -----

// COM: An unmodelled op whose result is not a scalar.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-error @+1 {{kernel 'alloca', block (0,0,0), 'memref.alloca': has a result type the simulator does not model}}
    gpu.func @alloca(%a: memref<4xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 4, 1, 1>}} {
      %tid = gpu.thread_id x
      %m = memref.alloca() : memref<4xf32>
      %x = memref.load %a[%tid] : memref<4xf32>
      memref.store %x, %m[%tid] : memref<4xf32>
      gpu.return
    }
  }
}
