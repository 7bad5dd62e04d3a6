// RUN: kiln-opt %s --split-input-file --kiln-cpu-outline-tasks | FileCheck %s

// COM: A parallel loop at the top of a kernel, with enough work, becomes a
// COM: task over a range of its iterations: the kernel takes the runtime's
// COM: context last and calls the task over every iteration; the task
// COM: views its buffers again from their base pointers and recomputes the
// COM: constants. The grain is the fewest iterations worth a thread.
// CHECK-LABEL: func.func @rows
// CHECK-SAME: (%[[X:.*]]: memref<256x1024xf32>, %[[Y:.*]]: memref<256x1024xf32>, %[[CTX:.*]]: !llvm.ptr)
// CHECK-SAME: kiln.cpu_context
// CHECK-DAG: %[[XB:.*]], %{{.*}}, %{{.*}}:2, %{{.*}}:2 = memref.extract_strided_metadata %[[X]]
// CHECK-DAG: %[[YB:.*]], %{{.*}}, %{{.*}}:2, %{{.*}}:2 = memref.extract_strided_metadata %[[Y]]
// CHECK: call @rows_task0(%{{.*}}, %{{.*}}, %[[XB]], %[[YB]])
// CHECK-NOT: scf.for
// CHECK: return
// CHECK: func.func private @rows_task0(%[[B:.*]]: index, %[[E:.*]]: index, %[[XP:.*]]: memref<f32>, %[[YP:.*]]: memref<f32>)
// CHECK-SAME: kiln.task_grain = 114
// CHECK: %[[XV:.*]] = memref.reinterpret_cast %[[XP]] to offset: [0], sizes: [256, 1024], strides: [1024, 1]
// CHECK: %[[YV:.*]] = memref.reinterpret_cast %[[YP]] to offset: [0], sizes: [256, 1024], strides: [1024, 1]
// CHECK: scf.for %[[T:.*]] = %[[B]] to %[[E]] step %c1
// CHECK: scf.for
// CHECK: vector.load %[[XV]][%[[T]],
// CHECK: vector.store %{{.*}}, %[[YV]][%[[T]],
func.func @rows(%x: memref<256x1024xf32>, %y: memref<256x1024xf32>) attributes {kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c256 = arith.constant 256 : index
  %c1024 = arith.constant 1024 : index
  scf.for %i = %c0 to %c256 step %c1 {
    scf.for %j = %c0 to %c1024 step %c8 {
      %v = vector.load %x[%i, %j] : memref<256x1024xf32>, vector<8xf32>
      %w = arith.addf %v, %v : vector<8xf32>
      vector.store %w, %y[%i, %j] : memref<256x1024xf32>, vector<8xf32>
    }
  } {kiln.parallel}
  return
}

// -----

// COM: Too little work for a second thread, a loop that is not marked
// COM: parallel, and a marked loop inside another loop stay as they are;
// COM: the kernel keeps its arguments.
// CHECK-LABEL: func.func @small
// CHECK-SAME: (%{{.*}}: memref<64x16xf32>)
// CHECK-NOT: kiln.cpu_context
// CHECK: scf.for
// CHECK: scf.for
// CHECK: scf.for
// CHECK-NOT: call
func.func @small(%x: memref<64x16xf32>) attributes {kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %c64 = arith.constant 64 : index
  %f = arith.constant 1.0 : f32
  scf.for %i = %c0 to %c64 step %c1 {
    memref.store %f, %x[%i, %c0] : memref<64x16xf32>
  } {kiln.parallel}
  scf.for %i = %c0 to %c64 step %c1 {
    scf.for %j = %c0 to %c16 step %c1 {
      memref.store %f, %x[%i, %j] : memref<64x16xf32>
    } {kiln.parallel}
  }
  return
}

// -----

// COM: Symbolic sizes: the trip count is computed, views with dynamic
// COM: offsets, sizes and strides travel as their base pointer and those
// COM: values, and index values pass as they are. A lower bound and step
// COM: other than 0 and 1 map the task's iterations back.
// CHECK-LABEL: func.func @symbolic
// CHECK-SAME: (%[[X:.*]]: memref<f32>, %[[N:.*]]: index, %[[CTX:.*]]: !llvm.ptr)
// CHECK: %[[V:.*]] = memref.reinterpret_cast %[[X]]
// CHECK: %[[BASE:.*]], %[[OFF:.*]], %[[SIZES:.*]]:2, %[[STRIDES:.*]]:2 = memref.extract_strided_metadata %[[V]]
// CHECK: %[[SPAN:.*]] = arith.subi %[[N]], %c2
// CHECK: %[[POS:.*]] = arith.maxsi %[[SPAN]], %c0
// CHECK: %[[TRIPS:.*]] = arith.ceildivui %[[POS]], %c2
// CHECK: call @symbolic_task0(%{{.*}}, %[[TRIPS]], %[[BASE]], %[[SIZES]]#0, %[[N]])
// CHECK: func.func private @symbolic_task0(%[[B:.*]]: index, %[[E:.*]]: index, %[[XP:.*]]: memref<f32>, %[[S0:.*]]: index, %[[NN:.*]]: index)
// CHECK: memref.reinterpret_cast %[[XP]] to offset: [0], sizes: [%[[S0]], 1024], strides: [1024, 1]
// CHECK: scf.for %[[T:.*]] = %[[B]] to %[[E]] step %c1
// CHECK: %[[MUL:.*]] = arith.muli %[[T]], %c2
// CHECK: %[[I:.*]] = arith.addi %[[MUL]], %c2
func.func @symbolic(%x: memref<f32>, %n: index) attributes {kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %c8 = arith.constant 8 : index
  %c1024 = arith.constant 1024 : index
  %v = memref.reinterpret_cast %x to offset: [0], sizes: [%n, 1024], strides: [1024, 1] : memref<f32> to memref<?x1024xf32>
  scf.for %i = %c2 to %n step %c2 {
    scf.for %j = %c0 to %c1024 step %c8 {
      %a = vector.load %v[%i, %j] : memref<?x1024xf32>, vector<8xf32>
      %s = arith.index_cast %n : index to i64
      %f = arith.sitofp %s : i64 to f32
      %b = vector.broadcast %f : f32 to vector<8xf32>
      %c = arith.mulf %a, %b : vector<8xf32>
      vector.store %c, %v[%i, %j] : memref<?x1024xf32>, vector<8xf32>
    }
  } {kiln.parallel}
  return
}

// -----

// COM: Parallel loops nested perfectly in each other (a symbolic batch
// COM: around the heads of attention) are one range: a batch of 1 still
// COM: splits over the heads. The index of each loop comes from the task's
// COM: iteration, the innermost fastest; side-effect free ops before the
// COM: inner loop are recomputed per iteration.
// CHECK-LABEL: func.func @nest
// CHECK-SAME: (%[[X:.*]]: memref<f32>, %[[B:.*]]: index, %{{.*}}: !llvm.ptr)
// CHECK: %[[POS:.*]] = arith.maxsi %[[B]]
// CHECK: %[[ALL:.*]] = arith.muli %[[POS]], %c12
// CHECK: call @nest_task0(%{{.*}}, %[[ALL]],
// CHECK: func.func private @nest_task0(%[[BEGIN:[a-z0-9]+]]: index, %[[END:[a-z0-9]+]]: index,
// CHECK: scf.for %[[T:.*]] = %[[BEGIN]] to %[[END]]
// CHECK-DAG: %[[H:.*]] = arith.remui %[[T]], %c12
// CHECK-DAG: %[[BI:.*]] = arith.divui %[[T]], %c12
// CHECK: %[[ROW:.*]] = arith.muli %[[BI]], %c12
// CHECK: arith.addi %[[ROW]], %[[H]]
// CHECK-NOT: scf.for {{.*}} to %c12
func.func @nest(%x: memref<f32>, %b: index) attributes {kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c12 = arith.constant 12 : index
  %c4096 = arith.constant 4096 : index
  %rows = arith.muli %b, %c12 : index
  %v = memref.reinterpret_cast %x to offset: [0], sizes: [%rows, 4096], strides: [4096, 1] : memref<f32> to memref<?x4096xf32>
  scf.for %i = %c0 to %b step %c1 {
    %base = arith.muli %i, %c12 : index
    scf.for %h = %c0 to %c12 step %c1 {
      %r = arith.addi %base, %h : index
      scf.for %j = %c0 to %c4096 step %c8 {
        %a = vector.load %v[%r, %j] : memref<?x4096xf32>, vector<8xf32>
        %c = arith.mulf %a, %a : vector<8xf32>
        vector.store %c, %v[%r, %j] : memref<?x4096xf32>, vector<8xf32>
      }
    } {kiln.parallel}
  } {kiln.parallel}
  return
}

// -----

// COM: A scratch buffer that each iteration allocates and frees (a panel
// COM: of decoded weights) is allocated once per task, before the task's
// COM: loop over its range, and freed after it: each thread has its own,
// COM: and no iteration maps and unmaps memory. One freed in another block
// COM: stays where it is.
// CHECK-LABEL: func.func @scratch
// CHECK: call @scratch_task0
// CHECK: func.func private @scratch_task0
// CHECK: %[[BUF:.*]] = memref.alloc() : memref<3072x16xf32>
// CHECK-NEXT: scf.for
// CHECK-NEXT: memref.alloc() : memref<16xf32>
// CHECK: vector.store %{{.*}}, %[[BUF]]
// CHECK: scf.if
// CHECK-NEXT: memref.dealloc %{{.*}} : memref<16xf32>
// CHECK: memref.dealloc %[[BUF]] : memref<3072x16xf32>
// CHECK-NEXT: return
func.func @scratch(%x: memref<256x1024xf32>, %y: memref<256x1024xf32>, %p: i1) attributes {kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c256 = arith.constant 256 : index
  %c1024 = arith.constant 1024 : index
  scf.for %i = %c0 to %c256 step %c1 {
    %buf = memref.alloc() : memref<3072x16xf32>
    %other = memref.alloc() : memref<16xf32>
    scf.for %j = %c0 to %c1024 step %c8 {
      %v = vector.load %x[%i, %j] : memref<256x1024xf32>, vector<8xf32>
      vector.store %v, %buf[%j, %c0] : memref<3072x16xf32>, vector<8xf32>
      %w = vector.load %buf[%j, %c0] : memref<3072x16xf32>, vector<8xf32>
      vector.store %w, %y[%i, %j] : memref<256x1024xf32>, vector<8xf32>
    }
    scf.if %p {
      memref.dealloc %other : memref<16xf32>
    }
    memref.dealloc %buf : memref<3072x16xf32>
  } {kiln.parallel}
  return
}
