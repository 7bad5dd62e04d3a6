// RUN: kiln-opt %s --split-input-file --kiln-gpu-gemm-mma-sync --canonicalize --cse | FileCheck %s

// COM: 96x40 (bf16) @ 40x80 (bf16) summed in f32, 64x64x32 tiles over 2x2
// COM: warps: a 2x2 grid of 128-thread blocks; a 3-stage ring per operand
// COM: in shared memory ([stage][m][k] for A, [stage][k][n] for B); the
// COM: prologue loads slices 0 and 1 (one commit group each); each of the
// COM: 2 K slices waits for all but the newest group, synchronizes, loads
// COM: slice k+2 (zero-filled past K), and runs 2 k16 steps of 2 A
// COM: fragments (ldmatrix x4) and 4 B fragments (transposed ldmatrix x2)
// COM: into 2x4 m16n8k16 tiles with f32 accumulators in registers; the
// COM: zero fill becomes the accumulators' start; the epilogue stores each
// COM: lane's adjacent column pairs as 16 guarded 8-byte vector stores.
// CHECK-LABEL: func.func @matmul
// CHECK-NOT: linalg.fill
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c2, %{{.*}} = %c2, %{{.*}} = %c1) threads({{.*}}) in (%{{.*}} = %c128, %{{.*}} = %c1, %{{.*}} = %c1) workgroup(%[[A:.*]] : memref<3x64x32xbf16, #gpu.address_space<workgroup>>, %[[B:.*]] : memref<3x32x64xbf16, #gpu.address_space<workgroup>>)
// CHECK-COUNT-2: nvgpu.device_async_copy %arg0{{.*}}, %[[A]]{{.*}}, 8, %{{.*}} {bypassL1}
// CHECK-COUNT-2: nvgpu.device_async_copy %arg1{{.*}}, %[[B]]{{.*}}, 8, %{{.*}} {bypassL1}
// CHECK: nvgpu.device_async_create_group
// CHECK: nvgpu.device_async_create_group
// CHECK: scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args({{.*}}) -> (vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, !nvgpu.device.async.token)
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 1 : i32}
// CHECK-NEXT: gpu.barrier
// CHECK-COUNT-4: nvgpu.device_async_copy
// CHECK: nvgpu.device_async_create_group
// CHECK-COUNT-2: nvgpu.ldmatrix %[[A]]{{.*}} {numTiles = 4 : i32, transpose = false} : memref<3x64x32xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
// CHECK-COUNT-4: nvgpu.ldmatrix %[[B]]{{.*}} {numTiles = 2 : i32, transpose = true} : memref<3x32x64xbf16, #gpu.address_space<workgroup>> -> vector<2x2xbf16>
// CHECK-COUNT-8: nvgpu.mma.sync
// CHECK-COUNT-2: nvgpu.ldmatrix %[[A]]
// CHECK-COUNT-4: nvgpu.ldmatrix %[[B]]
// CHECK-COUNT-8: nvgpu.mma.sync({{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xbf16>, vector<2x2xbf16>, vector<2x2xf32>) -> vector<2x2xf32>
// CHECK: scf.yield
// CHECK-COUNT-16: vector.store %{{.*}}, %arg2[{{.*}}] {alignment = 8 : i64} : memref<96x80xf32>, vector<2xf32>
// CHECK-NOT: linalg.matmul
func.func @matmul(%a: memref<96x40xbf16>, %b: memref<40x80xbf16>, %c: memref<96x80xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<96x80xf32>)
  linalg.matmul ins(%a, %b : memref<96x40xbf16>, memref<40x80xbf16>) outs(%c : memref<96x80xf32>)
  return
}

// -----

// COM: B read with K innermost (x @ y^T): stored [stage][n][k] and read
// COM: with non-transposed ldmatrix; A with M innermost (x^T): stored
// COM: [stage][k][m], transposed ldmatrix x4. The batch is grid z. One K
// COM: slice: a ring of 2 stages does what 3 would.
// CHECK-LABEL: func.func @transposed_operands
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1, %{{.*}} = %c1, %{{.*}} = %c4) {{.*}} workgroup(%[[A:.*]] : memref<2x32x64xf16, #gpu.address_space<workgroup>>, %[[B:.*]] : memref<2x64x32xf16, #gpu.address_space<workgroup>>)
// CHECK: nvgpu.ldmatrix %[[A]]{{.*}} {numTiles = 4 : i32, transpose = true}
// CHECK: nvgpu.ldmatrix %[[B]]{{.*}} {numTiles = 2 : i32, transpose = false}
// CHECK: nvgpu.mma.sync({{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xf16>, vector<2x2xf16>, vector<2x2xf32>) -> vector<2x2xf32>
#ta = affine_map<(b, m, n, k) -> (b, k, m)>
#tb = affine_map<(b, m, n, k) -> (b, n, k)>
#tc = affine_map<(b, m, n, k) -> (b, m, n)>
func.func @transposed_operands(%x: memref<4x32x48xf16>, %y: memref<4x40x32xf16>, %c: memref<4x48x40xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  linalg.generic {indexing_maps = [#ta, #tb, #tc], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%x, %y : memref<4x32x48xf16>, memref<4x40x32xf16>) outs(%c : memref<4x48x40xf32>) {
  ^bb0(%p: f16, %q: f16, %acc: f32):
    %pe = arith.extf %p : f16 to f32
    %qe = arith.extf %q : f16 to f32
    %m = arith.mulf %pe, %qe : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// COM: Left for other strategies: f32 operands, and an f16 contraction whose
// COM: row stride (36 elements) does not allow 16-byte chunks.
// CHECK-LABEL: func.func @not_taken
// CHECK-NOT: gpu.launch
// CHECK: linalg.matmul
// CHECK: linalg.matmul
func.func @not_taken(%a: memref<32x32xf32>, %b: memref<32x32xf32>, %c: memref<32x32xf32>, %d: memref<32x36xf16>, %e: memref<36x16xf16>, %f: memref<32x16xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  linalg.matmul ins(%a, %b : memref<32x32xf32>, memref<32x32xf32>) outs(%c : memref<32x32xf32>)
  linalg.matmul ins(%d, %e : memref<32x36xf16>, memref<36x16xf16>) outs(%f : memref<32x16xf32>)
  return
}

// -----

// COM: A fused epilogue (kiln-gpu-fuse-epilogues): the product goes to a
// COM: temporary that one elementwise generic reads. Its body runs on the
// COM: accumulators in registers: each lane's column pair reads the bias
// COM: as one 8-byte vector, adds, applies GELU's tanh, narrows and stores
// COM: the pair as one bf16x2 vector; the temporary and the generic are
// COM: gone.
// CHECK-LABEL: func.func @epilogue
// CHECK-NOT: memref.alloc
// CHECK: gpu.launch
// CHECK: scf.for
// CHECK: nvgpu.mma.sync
// CHECK: scf.yield
// CHECK: scf.if
// CHECK: vector.load %arg2[{{.*}}] {alignment = 8 : i64} : memref<80xf32>, vector<2xf32>
// CHECK: arith.addf
// CHECK: math.tanh
// CHECK: arith.truncf {{.*}} : f32 to bf16
// CHECK: vector.store %{{.*}}, %arg3[{{.*}}] {alignment = 4 : i64} : memref<96x80xbf16>, vector<2xbf16>
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref.dealloc
#id = affine_map<(m, n) -> (m, n)>
#row = affine_map<(m, n) -> (n)>
func.func @epilogue(%a: memref<96x40xbf16>, %b: memref<40x80xbf16>, %bias: memref<80xf32>, %c: memref<96x80xbf16>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  %zero = arith.constant 0.0 : f32
  %t = memref.alloc() : memref<96x80xf32>
  linalg.fill ins(%zero : f32) outs(%t : memref<96x80xf32>)
  linalg.matmul ins(%a, %b : memref<96x40xbf16>, memref<40x80xbf16>) outs(%t : memref<96x80xf32>)
  linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%t, %bias : memref<96x80xf32>, memref<80xf32>) outs(%c : memref<96x80xbf16>) {
  ^bb0(%v: f32, %bv: f32, %o: bf16):
    %s = arith.addf %v, %bv : f32
    %g = math.tanh %s : f32
    %n = arith.truncf %g : f32 to bf16
    linalg.yield %n : bf16
  }
  memref.dealloc %t : memref<96x80xf32>
  return
}

// -----

// COM: N odd: no pairs, and a row starts anywhere in a sector. Once the K
// COM: loop is done (its last copies landed, every warp past its last
// COM: ldmatrix), the accumulators go to B's ring as a strip of f32 (each
// COM: two bf16 elements, rows of 32 + 8 floats); then each warp takes
// COM: (row, 32-column window) jobs in a loop kept rolled, the windows
// COM: shifted so that they start on a sector of the output (row * 25 mod
// COM: 8), and finishes and stores one element per lane. A fill by a
// COM: non-constant leaves the product in memory: the epilogue stays a
// COM: generic of its own.
// CHECK-LABEL: func.func @epilogue_odd_n
// CHECK-NOT: memref.alloc
// CHECK: gpu.launch
// CHECK: %[[LOOP:.*]]:3 = scf.for
// CHECK: nvgpu.device_async_wait %[[LOOP]]#2 {numGroups = 0 : i32}
// CHECK-NEXT: gpu.barrier
// CHECK-NEXT: %[[STRIP:.*]] = memref.collapse_shape %{{.*}} {{\[\[}}0, 1, 2]] : memref<3x32x32xbf16, #gpu.address_space<workgroup>> into memref<3072xbf16, #gpu.address_space<workgroup>>
// CHECK-COUNT-4: vector.store %{{.*}}, %[[STRIP]][%{{.*}}] {alignment = 8 : i64} : memref<3072xbf16, #gpu.address_space<workgroup>>, vector<4xbf16>
// CHECK: gpu.barrier
// CHECK: scf.for %{{.*}} = %c0 to %c16 step %c1 {
// CHECK: %[[SHIFT:.*]] = arith.remui %{{.*}}, %c8 : index
// CHECK: %[[COL:.*]] = arith.subi %{{.*}}, %[[SHIFT]] : index
// CHECK: scf.if
// CHECK: %[[HALVES:.*]] = vector.load %[[STRIP]][%{{.*}}] {alignment = 4 : i64} : memref<3072xbf16, #gpu.address_space<workgroup>>, vector<2xbf16>
// CHECK: vector.bitcast %[[HALVES]] : vector<2xbf16> to vector<1xf32>
// CHECK: memref.load %arg2
// CHECK: arith.mulf
// CHECK: memref.store %{{.*}}, %arg3[%{{.*}}, %[[COL]]] : memref<40x25xf32>
// CHECK: } {loop_annotation = #loop_annotation}
// CHECK-NOT: linalg.generic
#id = affine_map<(m, n) -> (m, n)>
func.func @epilogue_odd_n(%a: memref<40x64xbf16>, %b: memref<25x64xbf16>, %s: memref<40x25xf32>, %c: memref<40x25xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  %zero = arith.constant 0.0 : f32
  %t = memref.alloc() : memref<40x25xf32>
  linalg.fill ins(%zero : f32) outs(%t : memref<40x25xf32>)
  linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>] ins(%a, %b : memref<40x64xbf16>, memref<25x64xbf16>) outs(%t : memref<40x25xf32>)
  linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%t, %s : memref<40x25xf32>, memref<40x25xf32>) outs(%c : memref<40x25xf32>) {
  ^bb0(%v: f32, %sv: f32, %o: f32):
    %m = arith.mulf %v, %sv : f32
    linalg.yield %m : f32
  }
  memref.dealloc %t : memref<40x25xf32>
  return
}

// -----

// CHECK-LABEL: func.func @epilogue_without_constant_fill
// CHECK: memref.alloc
// CHECK: gpu.launch
// CHECK: nvgpu.mma.sync
// CHECK: linalg.generic
#id = affine_map<(m, n) -> (m, n)>
func.func @epilogue_without_constant_fill(%a: memref<64x32xbf16>, %b: memref<32x64xbf16>, %init: f32, %c: memref<64x64xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  %t = memref.alloc() : memref<64x64xf32>
  linalg.fill ins(%init : f32) outs(%t : memref<64x64xf32>)
  linalg.matmul ins(%a, %b : memref<64x32xbf16>, memref<32x64xbf16>) outs(%t : memref<64x64xf32>)
  linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%t : memref<64x64xf32>) outs(%c : memref<64x64xf32>) {
  ^bb0(%v: f32, %o: f32):
    %n = arith.negf %v : f32
    linalg.yield %n : f32
  }
  memref.dealloc %t : memref<64x64xf32>
  return
}

// -----

// COM: Symbolic rows (a batch and a sequence length, as a dynamic export
// COM: has them) with weights shared by every batch: the batch folds into
// COM: M = dim0 x dim1, the grid's y is ceil(M / 64), a row splits back into
// COM: (batch, position) for the loads and stores, and the guards compare
// COM: with M.
// CHECK-LABEL: func.func @symbolic_rows
// CHECK: %[[B:.*]] = memref.dim %arg0, %c0 : memref<?x?x64xbf16>
// CHECK: %[[S:.*]] = memref.dim %arg0, %c1 : memref<?x?x64xbf16>
// CHECK: %[[M:.*]] = arith.muli %[[B]], %[[S]] : index
// CHECK: %[[TILES:.*]] = arith.ceildivui %[[M]], %c64 : index
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c2, %{{.*}} = %[[TILES]], %{{.*}} = %c1)
// CHECK: arith.cmpi ult, %{{.*}}, %[[M]] : index
// CHECK: arith.remui %{{.*}}, %[[S]] : index
// CHECK: arith.divui %{{.*}}, %[[S]] : index
// CHECK: nvgpu.device_async_copy
// CHECK: nvgpu.mma.sync
#a = affine_map<(b, m, n, k) -> (b, m, k)>
#w = affine_map<(b, m, n, k) -> (k, n)>
#c = affine_map<(b, m, n, k) -> (b, m, n)>
func.func @symbolic_rows(%a: memref<?x?x64xbf16>, %w: memref<64x96xbf16>, %c: memref<?x?x96xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<?x?x96xf32>)
  linalg.generic {indexing_maps = [#a, #w, #c], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%a, %w : memref<?x?x64xbf16>, memref<64x96xbf16>) outs(%c : memref<?x?x96xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pe = arith.extf %p : bf16 to f32
    %qe = arith.extf %q : bf16 to f32
    %m = arith.mulf %pe, %qe : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// COM: Split-K (4 ways over 8 slices of 32): grid z runs over (batch,
// COM: split); each block starts at slice split * 2, runs min(2, 8 - its
// COM: first) slices (its loads guarded by that count), from accumulators at 0
// COM: (not the fill value), and stores its partial pairs to an f32
// COM: workspace [split][batch][M][N rounded up to even]; a second launch of a
// COM: thread per output element adds the fill value and the 4 partials
// COM: and stores the sum.
// CHECK-LABEL: func.func @split_k
// CHECK-DAG: %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : vector<2x2xf32>
// CHECK-DAG: %[[FILL:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-DAG: %[[WORK:.*]] = memref.alloc() : memref<4x1x24x66xf32>
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c3, %{{.*}} = %c1, %{{.*}} = %c4)
// CHECK: %[[SPLIT:.*]] = arith.remui %{{.*}}, %c4 : index
// CHECK: %[[FIRST:.*]] = arith.muli %[[SPLIT]], %c2 : index
// CHECK: %[[LEFT:.*]] = arith.subi %c8, %[[FIRST]] : index
// CHECK: %[[COUNT:.*]] = arith.minui %[[LEFT]], %c2 : index
// CHECK: scf.for %{{.*}} = %c0 to %[[COUNT]] step %c1 iter_args(%{{.*}} = %[[ZERO]], %{{.*}} = %[[ZERO]],
// CHECK: vector.store %{{.*}}, %[[WORK]][%[[SPLIT]], %{{.*}}, %{{.*}}, %{{.*}}] {alignment = 8 : i64} : memref<4x1x24x66xf32>, vector<2xf32>
// CHECK: gpu.terminator
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c7, %{{.*}} = %c1, %{{.*}} = %c1) threads({{.*}}) in (%{{.*}} = %c256, %{{.*}} = %c1, %{{.*}} = %c1)
// CHECK: %[[P0:.*]] = memref.load %[[WORK]][%c0, %c0, %{{.*}}, %{{.*}}] : memref<4x1x24x66xf32>
// CHECK-NEXT: arith.addf %[[P0]], %[[FILL]] : f32
// CHECK-COUNT-3: memref.load %[[WORK]]
// CHECK: memref.store %{{.*}}, %arg2[%{{.*}}, %{{.*}}] : memref<24x65xf32>
// CHECK: memref.dealloc %[[WORK]]
func.func @split_k(%a: memref<24x256xbf16>, %b: memref<65x256xbf16>, %c: memref<24x65xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>, stages = 3 : i64, split_k = 4 : i64}} {
  %half = arith.constant 0.5 : f32
  linalg.fill ins(%half : f32) outs(%c : memref<24x65xf32>)
  linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>] ins(%a, %b : memref<24x256xbf16>, memref<65x256xbf16>) outs(%c : memref<24x65xf32>)
  return
}
