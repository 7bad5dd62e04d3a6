// RUN: kiln-opt %s --split-input-file --kiln-gpu-gemm-wgmma --canonicalize --cse --verify-diagnostics | FileCheck %s

// COM: 200 x 136 (bf16) @ 136 x 264 (bf16) summed in f32, then a bias and a
// COM: cast to bf16 (the fused epilogue). Host side: one TMA descriptor per
// COM: operand, dims innermost first (A: K x M, box 128 rows x 64; B: N x K,
// COM: box 64 x 64). 2 x 3 tiles of 128 x 128: a persistent grid of
// COM: min(6, blocks) blocks of three warpgroups; the ring: 4 stages of A
// COM: [128][64] and B [2][64][64], each behind a full barrier (count 1:
// COM: the producer's expect_tx) and an empty one (count 2: a release per
// COM: consumer warpgroup). The producer warpgroup gives registers up, and
// COM: its thread 0 walks the block's tiles (blockIdx.x, + 6, ...) and their
// COM: 3 slices: wait for the stage to be free, expect 32 KiB, one box of
// COM: A, two of B. The consumers take registers, wait for each stage,
// COM: multiply their 64 rows (B transposed, one group in flight), release
// COM: the stage of the group that retired (and the last one after the
// COM: loop), and store pairs from the accumulator's registers through the
// COM: bias and the cast.
// CHECK-LABEL: func.func @bias
// CHECK: %[[UA:.*]] = memref.cast %arg0 : memref<200x136xbf16> to memref<*xbf16>
// CHECK: %[[MA:.*]] = nvgpu.tma.create.descriptor %[[UA]] box[%c128, %c64] {kiln.tma_dims = array<i64: 136, 200>} : memref<*xbf16> -> <tensor = memref<128x64xbf16, 3>, swizzle = swizzle_128b
// CHECK: %[[MB:.*]] = nvgpu.tma.create.descriptor %{{.*}} box[%c64, %c64] {kiln.tma_dims = array<i64: 264, 136>} : memref<*xbf16> -> <tensor = memref<64x64xbf16, 3>, swizzle = swizzle_128b
// CHECK: gpu.launch blocks(%[[BID:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %c6, %{{.*}} = %c1, %{{.*}} = %c1) threads(%[[TID:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %c384, %{{.*}} = %c1, %{{.*}} = %c1) workgroup(%[[RA:.*]] : memref<4x128x64xbf16, #gpu.address_space<workgroup>>, %[[RB:.*]] : memref<4x2x64x64xbf16, #gpu.address_space<workgroup>>)
// CHECK: %[[WG:.*]] = arith.divui %[[TID]], %c128
// CHECK: %[[FULL:.*]] = nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 4>
// CHECK: %[[EMPTY:.*]] = nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 4>
// CHECK: nvgpu.mbarrier.init %[[FULL]][%c0], %c1
// CHECK-NEXT: nvgpu.mbarrier.init %[[EMPTY]][%c0], %c2
// CHECK: nvgpu.mbarrier.init %[[FULL]][%c3], %c1
// CHECK-NEXT: nvgpu.mbarrier.init %[[EMPTY]][%c3], %c2
// CHECK: nvvm.fence.mbarrier.init
// CHECK: gpu.barrier
// CHECK: %[[PRODUCER:.*]] = arith.cmpi ult, %[[WG]], %c1
// CHECK: scf.if %[[PRODUCER]] {
// CHECK-NEXT: nvvm.setmaxregister decrease 40
// CHECK: scf.for %{{.*}} = %[[BID]] to %c6 step %c6 iter_args
// CHECK: scf.for %{{.*}} = %c0 to %c3 step %c1 {
// CHECK: nvgpu.mbarrier.try_wait.parity %[[EMPTY]]
// CHECK: nvgpu.mbarrier.arrive.expect_tx %[[FULL]][%{{.*}}], %c32768
// CHECK-COUNT-3: nvgpu.tma.async.load
// CHECK: } else {
// CHECK-NEXT: nvvm.setmaxregister increase 232
// CHECK: scf.for %{{.*}} = %[[BID]] to %c6 step %c6 iter_args
// CHECK: nvgpu.warpgroup.mma.init.accumulator -> <fragmented = vector<64x128xf32>>
// CHECK: scf.for %{{.*}} = %c0 to %c3 step %c1 iter_args
// CHECK: nvgpu.mbarrier.try_wait.parity %[[FULL]]
// CHECK: memref.subview %[[RA]][%{{.*}}, 0, 0] [1, 64, 64]
// CHECK: nvgpu.warpgroup.generate.descriptor %{{.*}}, %[[MA]]
// CHECK: memref.subview %[[RA]][%{{.*}}, 64, 0] [1, 64, 64]
// CHECK: nvgpu.warpgroup.generate.descriptor %{{.*}}, %[[MA]]
// CHECK: nvgpu.warpgroup.generate.descriptor %{{.*}}, %[[MB]]
// CHECK: nvgpu.warpgroup.mma %{{.*}}, %{{.*}}, %{{.*}} {transposeB} : <tensor = memref<64x64xbf16, 3>>, <tensor = memref<64x128xbf16, 3>>, <fragmented = vector<64x128xf32>>
// CHECK: nvgpu.mbarrier.arrive %[[EMPTY]]
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: nvgpu.mbarrier.arrive %[[EMPTY]]
// CHECK: builtin.unrealized_conversion_cast %{{.*}} : !nvgpu.warpgroup.accumulator<fragmented = vector<64x128xf32>> to f32,
// CHECK: vector.load %arg2[%{{.*}}] {alignment = 8 : i64} : memref<264xf32>, vector<2xf32>
// CHECK: arith.addf
// CHECK: arith.truncf
// CHECK: vector.store %{{.*}}, %arg3[%{{.*}}, %{{.*}}] {alignment = 4 : i64} : memref<200x264xbf16>, vector<2xbf16>
// CHECK-NOT: gpu.barrier
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref.alloc
#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (k, n)>
#y = affine_map<(m, n, k) -> (m, n)>
#id = affine_map<(m, n) -> (m, n)>
#row = affine_map<(m, n) -> (n)>
func.func @bias(%a: memref<200x136xbf16>, %b: memref<136x264xbf16>, %bias: memref<264xf32>, %c: memref<200x264xbf16>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-wgmma", tile = array<i64: 128, 128, 64>, stages = 4 : i64, blocks = 132 : i64}} {
  %zero = arith.constant 0.0 : f32
  %t = memref.alloc() : memref<200x264xf32>
  linalg.fill ins(%zero : f32) outs(%t : memref<200x264xf32>)
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : memref<200x136xbf16>, memref<136x264xbf16>) outs(%t : memref<200x264xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pe = arith.extf %p : bf16 to f32
    %qe = arith.extf %q : bf16 to f32
    %m = arith.mulf %pe, %qe : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%t, %bias : memref<200x264xf32>, memref<264xf32>) outs(%c : memref<200x264xbf16>) {
  ^bb0(%v: f32, %bb: f32, %o: bf16):
    %s = arith.addf %v, %bb : f32
    %r = arith.truncf %s : f32 to bf16
    linalg.yield %r : bf16
  }
  memref.dealloc %t : memref<200x264xf32>
  return
}

// -----

// COM: A batch in front of A (and of the output) is folded into M: the
// COM: descriptor sees A as [2 * 96, 64] and the epilogue splits the row.
// COM: Two tiles: a grid of two blocks, not the configuration's 132.
// CHECK-LABEL: func.func @folded_batch
// CHECK: nvgpu.tma.create.descriptor %{{.*}} box[%c128, %c64] {kiln.tma_dims = array<i64: 64, 192>}
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c2, %{{.*}} = %c1, %{{.*}} = %c1)
// CHECK: arith.divui %{{.*}}, %c96
// CHECK: arith.remui %{{.*}}, %c96
// CHECK: vector.store %{{.*}}, %arg2[{{.*}}] {alignment = 8 : i64} : memref<2x96x128xf32>, vector<2xf32>
#a3 = affine_map<(b, m, n, k) -> (b, m, k)>
#b3 = affine_map<(b, m, n, k) -> (k, n)>
#c3 = affine_map<(b, m, n, k) -> (b, m, n)>
func.func @folded_batch(%a: memref<2x96x64xf16>, %b: memref<64x128xf16>, %c: memref<2x96x128xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-wgmma", tile = array<i64: 128, 128, 64>, stages = 4 : i64, blocks = 132 : i64}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<2x96x128xf32>)
  linalg.generic {indexing_maps = [#a3, #b3, #c3], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%a, %b : memref<2x96x64xf16>, memref<64x128xf16>) outs(%c : memref<2x96x128xf32>) {
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

// COM: B read K-innermost ([N, K], a transposed weight): one [128 n][64 k]
// COM: TMA box per slice, as A's. MLIR 22's lowering would advance a K-major
// COM: B's descriptor by 16 rows per k16 step, so each step is its own
// COM: wgmma op on [64][16] and [128][16] views 16 elements (32 bytes) apart,
// COM: chained without waiting; the slice's last lets its own 4 groups stay
// COM: in flight.
// CHECK-LABEL: func.func @k_major_b
// CHECK: %[[MB:.*]] = nvgpu.tma.create.descriptor %{{.*}} box[%c128, %c64] {kiln.tma_dims = array<i64: 64, 256>}
// CHECK: gpu.launch {{.*}} workgroup(%[[RA:.*]] : memref<2x128x64xbf16, #gpu.address_space<workgroup>>, %[[RB:.*]] : memref<2x128x64xbf16, #gpu.address_space<workgroup>>)
// CHECK: nvgpu.tma.async.load %[[MB]][%c0, %{{.*}}], %{{.*}} to
// CHECK: memref.subview %[[RA]][%{{.*}}, 0, 48] [1, 64, 16]
// CHECK: memref.subview %[[RA]][%{{.*}}, 64, 48] [1, 64, 16]
// CHECK: memref.subview %[[RB]][%{{.*}}, 0, 0] [1, 128, 16]
// CHECK: nvgpu.warpgroup.mma %{{.*}}#0, %{{.*}}, %{{.*}} {waitGroup = 8 : i64} : <tensor = memref<64x16xbf16, 3>>, <tensor = memref<16x128xbf16, 3>>, <fragmented = vector<64x128xf32>>
// CHECK: memref.subview %[[RB]][%{{.*}}, 0, 16] [1, 128, 16]
// CHECK: nvgpu.warpgroup.mma %{{.*}}#1, {{.*}} {waitGroup = 8 : i64}
// CHECK: memref.subview %[[RB]][%{{.*}}, 0, 48] [1, 128, 16]
// CHECK: nvgpu.warpgroup.mma %{{.*}}#3, {{.*}} {waitGroup = 4 : i64}
// CHECK: nvgpu.mbarrier.arrive
// CHECK-NOT: linalg.generic
#xk = affine_map<(m, n, k) -> (m, k)>
#wk = affine_map<(m, n, k) -> (n, k)>
#yk = affine_map<(m, n, k) -> (m, n)>
func.func @k_major_b(%a: memref<256x64xbf16>, %b: memref<256x64xbf16>, %c: memref<256x256xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-wgmma", tile = array<i64: 128, 128, 64>, stages = 4 : i64, blocks = 132 : i64}} {
  linalg.generic {indexing_maps = [#xk, #wk, #yk], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : memref<256x64xbf16>, memref<256x64xbf16>) outs(%c : memref<256x256xf32>) {
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

#xe = affine_map<(m, n, k) -> (m, k)>
#we = affine_map<(m, n, k) -> (k, n)>
#ye = affine_map<(m, n, k) -> (m, n)>
// expected-error @+1 {{gemm-wgmma builds 128x128x64 tiles only}}
func.func @bad_tile(%a: memref<256x64xbf16>, %b: memref<64x256xbf16>, %c: memref<256x256xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-wgmma", tile = array<i64: 64, 64, 32>, stages = 4 : i64, blocks = 132 : i64}} {
  linalg.generic {indexing_maps = [#xe, #we, #ye], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : memref<256x64xbf16>, memref<64x256xbf16>) outs(%c : memref<256x256xf32>) {
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

#xg = affine_map<(m, n, k) -> (m, k)>
#wg = affine_map<(m, n, k) -> (k, n)>
#yg = affine_map<(m, n, k) -> (m, n)>
// expected-error @+1 {{a persistent grid of 70000 blocks is not launchable (1 to 65535)}}
func.func @bad_grid(%a: memref<256x64xbf16>, %b: memref<64x256xbf16>, %c: memref<256x256xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-wgmma", tile = array<i64: 128, 128, 64>, stages = 4 : i64, blocks = 70000 : i64}} {
  linalg.generic {indexing_maps = [#xg, #wg, #yg], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : memref<256x64xbf16>, memref<64x256xbf16>) outs(%c : memref<256x256xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pe = arith.extf %p : bf16 to f32
    %qe = arith.extf %q : bf16 to f32
    %m = arith.mulf %pe, %qe : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }
  return
}
