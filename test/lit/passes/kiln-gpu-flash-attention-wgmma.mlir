// RUN: kiln-opt %s --split-input-file --kiln-gpu-flash-attention-wgmma | FileCheck %s

// COM: GPT-2's attention dispatch after bufferization (as in
// COM: kiln-gpu-flash-attention.mlir), for sm_90a: the tensor maps read the
// COM: head split in place, each operand a view [row, head, batch, d] of
// COM: the QKV projection at offsets 0, 32 and 64 with strides (row 96,
// COM: head 16, batch: any, a dim of one); the boxes are [64 x 1 x 1 x 64]
// COM: with the 128-byte swizzle. In the launch: Q, a 2-stage K and V ring and
// COM: P's tile, each 64 x 64; TMA loads; Q Kᵀ as one wgmma per k16 step,
// COM: only the last waiting; the scores as registers; P stored, fenced
// COM: for the async proxy; P V on wgmma with V N-major; the result
// COM: written through the output's permutation; no temporary left.
// CHECK-LABEL: func.func @qkv_in_place
// CHECK-NOT: memref.alloc
// CHECK: %[[QV:.*]] = memref.reinterpret_cast %arg0 to offset: [0], sizes: [8, 2, 1, 16], strides: [96, 16, 16, 1]
// CHECK: %[[QU:.*]] = memref.cast %[[QV]] : memref<8x2x1x16xbf16, strided<[96, 16, 16, 1]>> to memref<*xbf16>
// CHECK: nvgpu.tma.create.descriptor %[[QU]] box[{{.*}}] : memref<*xbf16> -> <tensor = memref<64x1x1x64xbf16, 3>, swizzle = swizzle_128b
// CHECK: memref.reinterpret_cast %arg0 to offset: [32], sizes: [8, 2, 1, 16], strides: [96, 16, 16, 1]
// CHECK: nvgpu.tma.create.descriptor
// CHECK: memref.reinterpret_cast %arg0 to offset: [64], sizes: [8, 2, 1, 16], strides: [96, 16, 16, 1]
// CHECK: nvgpu.tma.create.descriptor
// CHECK: gpu.launch
// CHECK-SAME: threads(%{{.*}}, %{{.*}}, %{{.*}}) in (%{{.*}} = %c128
// CHECK-SAME: workgroup(%{{.*}} : memref<1x1x64x64xbf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<2x1x64x64xbf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<2x1x64x64xbf16, #gpu.address_space<workgroup>>, %[[P:.*]] : memref<1x64x64xbf16, #gpu.address_space<workgroup>>)
// CHECK-NEXT: %[[O:.*]] = memref.reinterpret_cast %arg1 to offset: [0], sizes: [1, 2, 8, 16], strides: [256, 16, 32, 1]
// CHECK: nvgpu.mbarrier.create
// CHECK: nvgpu.tma.async.load
// CHECK: scf.for
// CHECK: nvgpu.mbarrier.try_wait.parity
// CHECK-COUNT-3: nvgpu.warpgroup.mma {{.*}} {waitGroup = 5 : i64} : <tensor = memref<64x16xbf16, 3>>, <tensor = memref<16x64xbf16, 3>>
// CHECK: nvgpu.warpgroup.mma {{.*}} {waitGroup = 0 : i64}
// CHECK: builtin.unrealized_conversion_cast %{{.*}} : !nvgpu.warpgroup.accumulator<fragmented = vector<64x64xf32>> to f32,
// CHECK: vector.store %{{.*}}, %[[P]]
// CHECK: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK-NEXT: gpu.barrier
// CHECK: nvgpu.tma.async.load
// CHECK: nvgpu.warpgroup.mma {{.*}} {transposeB} : <tensor = memref<64x64xbf16, 3>>, <tensor = memref<64x64xbf16, 3>>
// CHECK: scf.yield
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: vector.store %{{.*}}, %[[O]]
// CHECK: gpu.terminator
// CHECK-NOT: linalg.
// CHECK-NOT: memref.dealloc
// CHECK: return

#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#swap = affine_map<(d0, d1, d2, d3) -> (d0, d2, d1, d3)>
func.func @qkv_in_place(%arg0: memref<1x8x96xbf16>, %arg1: memref<1x8x2x16xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 64, 64>}, kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c16 = arith.constant 16 : index
  %c32 = arith.constant 32 : index
  %c64 = arith.constant 64 : index
  %g0 = memref.alloc() : memref<1x8x2x16xbf16>
  linalg.generic {indexing_maps = [#id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%g0 : memref<1x8x2x16xbf16>) {
  ^bb0(%out: bf16):
    %s = linalg.index 1 : index
    %h = linalg.index 2 : index
    %d = linalg.index 3 : index
    %hd = arith.muli %h, %c16 : index
    %col = arith.addi %hd, %d : index
    %x = memref.load %arg0[%c0, %s, %col] : memref<1x8x96xbf16>
    linalg.yield %x : bf16
  }
  %t0 = memref.alloc() : memref<1x2x8x16xbf16>
  linalg.transpose ins(%g0 : memref<1x8x2x16xbf16>) outs(%t0 : memref<1x2x8x16xbf16>) permutation = [0, 2, 1, 3]
  %q = bufferization.to_tensor %t0 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %g1 = memref.alloc() : memref<1x8x2x16xbf16>
  linalg.generic {indexing_maps = [#id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%g1 : memref<1x8x2x16xbf16>) {
  ^bb0(%out: bf16):
    %s = linalg.index 1 : index
    %h = linalg.index 2 : index
    %d = linalg.index 3 : index
    %hd = arith.muli %h, %c16 : index
    %c = arith.addi %hd, %d : index
    %col = arith.addi %c, %c32 : index
    %x = memref.load %arg0[%c0, %s, %col] : memref<1x8x96xbf16>
    linalg.yield %x : bf16
  }
  %t1 = memref.alloc() : memref<1x2x8x16xbf16>
  linalg.transpose ins(%g1 : memref<1x8x2x16xbf16>) outs(%t1 : memref<1x2x8x16xbf16>) permutation = [0, 2, 1, 3]
  %k = bufferization.to_tensor %t1 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %t2 = memref.alloc() : memref<1x2x8x16xbf16>
  linalg.generic {indexing_maps = [#id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%t2 : memref<1x2x8x16xbf16>) {
  ^bb0(%out: bf16):
    %h = linalg.index 1 : index
    %s = linalg.index 2 : index
    %d = linalg.index 3 : index
    %hd = arith.muli %h, %c16 : index
    %c = arith.addi %hd, %d : index
    %col = arith.addi %c, %c64 : index
    %x = memref.load %arg0[%c0, %s, %col] : memref<1x8x96xbf16>
    linalg.yield %x : bf16
  }
  %v = bufferization.to_tensor %t2 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %r = kiln.attention %q, %k, %v {causal_offset = 0 : i64, scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x8x16xbf16> to memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>>
  linalg.generic {indexing_maps = [#swap, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%rb : memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>>) outs(%arg1 : memref<1x8x2x16xbf16>) {
  ^bb0(%in: bf16, %out: bf16):
    linalg.yield %in : bf16
  }
  memref.dealloc %g0 : memref<1x8x2x16xbf16>
  memref.dealloc %t0 : memref<1x2x8x16xbf16>
  memref.dealloc %g1 : memref<1x8x2x16xbf16>
  memref.dealloc %t1 : memref<1x2x8x16xbf16>
  memref.dealloc %t2 : memref<1x2x8x16xbf16>
  return
}


// -----

// COM: Two warpgroups (128 query rows): each builds the descriptors of its
// COM: own Q rows and P tile in its branch (a view is the same for every
// COM: thread that makes it); a dense [B, H, S, D] operand's map has its
// COM: row-major strides.
// CHECK-LABEL: func.func @two_warpgroups
// CHECK: memref.reinterpret_cast %arg0 to offset: [0], sizes: [200, 2, 1, 64], strides: [64, 12800, 64, 1]
// CHECK: gpu.launch
// CHECK-SAME: in (%{{.*}} = %c256
// CHECK: scf.if %{{.*}} -> (!nvgpu.warpgroup.descriptor<tensor = memref<64x16xbf16, 3>>)
// CHECK: scf.if %{{.*}} -> (!nvgpu.warpgroup.descriptor<tensor = memref<64x64xbf16, 3>>)
func.func @two_warpgroups(%arg0: memref<1x2x200x64xbf16>, %arg1: memref<1x2x200x64xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 128, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x200x64xbf16> to tensor<1x2x200x64xbf16>
  %r = kiln.attention %q, %q, %q {causal_offset = 0 : i64, scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x200x64xbf16>, tensor<1x2x200x64xbf16>, tensor<1x2x200x64xbf16> -> tensor<1x2x200x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x200x64xbf16> to memref<1x2x200x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<1x2x200x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x200x64xbf16>
  return
}

// -----

// COM: Symbolic batch and sequence: the counts are the buffers' sizes on
// COM: the host side (the grid's x and z from them), the tensor maps views
// COM: whose sizes and strides are computed from them.
// CHECK-LABEL: func.func @symbolic_counts
// CHECK: %[[B:.*]] = memref.dim %arg0, %c0
// CHECK: %[[S:.*]] = memref.dim %arg0, %c2
// CHECK: arith.ceildivui %[[S]], %c64
// CHECK: %[[B2:.*]] = memref.dim %arg0, %c0
// CHECK: %[[S2:.*]] = memref.dim %arg0, %c2
// CHECK: %[[SD:.*]] = arith.muli %c64{{.*}}, %[[S2]]
// CHECK: %[[HSD:.*]] = arith.muli %[[SD]], %c2
// CHECK: memref.reinterpret_cast %arg0 to offset: [0], sizes: [%[[S2]], 2, %[[B2]], 64], strides: [64, %[[SD]], %[[HSD]], 1]
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %{{.*}}, %{{.*}} = %c2{{.*}}, %{{.*}} = %[[B]])
func.func @symbolic_counts(%arg0: memref<?x2x?x64xbf16>, %arg1: memref<?x2x?x64xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 64, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<?x2x?x64xbf16> to tensor<?x2x?x64xbf16>
  %r = kiln.attention %q, %q, %q {causal_offset = 0 : i64, scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<?x2x?x64xbf16>, tensor<?x2x?x64xbf16>, tensor<?x2x?x64xbf16> -> tensor<?x2x?x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<?x2x?x64xbf16> to memref<?x2x?x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<?x2x?x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<?x2x?x64xbf16>
  return
}

// -----

// COM: An operand read through a static view of a kernel buffer (the
// COM: second half of each row): the tensor map's view starts at the
// COM: view's offset, with its strides.
// CHECK-LABEL: func.func @strided_operand
// CHECK: %[[SV:.*]] = memref.subview %arg0
// CHECK: memref.reinterpret_cast %[[SV]] to offset: [64], sizes: [80, 2, 1, 64], strides: [128, 10240, 64, 1]
func.func @strided_operand(%arg0: memref<1x2x80x128xbf16>, %arg1: memref<1x2x80x64xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 64, 64>}, kiln.kernel} {
  %s = memref.subview %arg0[0, 0, 0, 64] [1, 2, 80, 64] [1, 1, 1, 1] : memref<1x2x80x128xbf16> to memref<1x2x80x64xbf16, strided<[20480, 10240, 128, 1], offset: 64>>
  %q = bufferization.to_tensor %s : memref<1x2x80x64xbf16, strided<[20480, 10240, 128, 1], offset: 64>> to tensor<1x2x80x64xbf16>
  %r = kiln.attention %q, %q, %q {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x80x64xbf16>, tensor<1x2x80x64xbf16>, tensor<1x2x80x64xbf16> -> tensor<1x2x80x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x80x64xbf16> to memref<1x2x80x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<1x2x80x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x80x64xbf16>
  return
}

// -----

// COM: Q computed in the kernel (its rotary embedding, merged in by
// COM: kiln-gpu-fuse-attention-layouts): no tensor map for Q (K's and V's
// COM: only) and no TMA load of it; every thread evaluates elements of the
// COM: Q tile in row-major order and stores each at its 128-byte-swizzled
// COM: place ([warpgroup][box][row][64], chunks XORed with the row), then
// COM: a proxy fence and a barrier make them visible to the tensor cores.
// COM: The generic and its temporary are gone.
// CHECK-LABEL: func.func @computed_query
// CHECK-NOT: memref.alloc
// CHECK-COUNT-2: nvgpu.tma.create.descriptor
// CHECK-NOT: nvgpu.tma.create.descriptor
// CHECK: gpu.launch
// CHECK: %[[QV:.*]] = scf.if %{{.*}} -> (bf16) {
// CHECK: memref.load %arg0
// CHECK: arith.truncf
// CHECK: memref.store %[[QV]], %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}] : memref<1x1x64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.fence.proxy
// CHECK-NEXT: gpu.barrier
// CHECK: nvgpu.warpgroup.mma
// CHECK: gpu.terminator
// CHECK-NOT: linalg.generic
// CHECK: return
#cq = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @computed_query(%arg0: memref<1x2x100x64xf32>, %arg1: memref<1x2x100x64xbf16>, %arg2: memref<1x2x100x64xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 64, 64>}, kiln.kernel} {
  %t = memref.alloc() : memref<1x2x100x64xbf16>
  linalg.generic {indexing_maps = [#cq], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%t : memref<1x2x100x64xbf16>) {
  ^bb0(%out: bf16):
    %i0 = linalg.index 0 : index
    %i1 = linalg.index 1 : index
    %i2 = linalg.index 2 : index
    %i3 = linalg.index 3 : index
    %v = memref.load %arg0[%i0, %i1, %i2, %i3] : memref<1x2x100x64xf32>
    %w = arith.mulf %v, %v : f32
    %r = arith.truncf %w : f32 to bf16
    linalg.yield %r : bf16
  }
  %q = bufferization.to_tensor %t : memref<1x2x100x64xbf16> to tensor<1x2x100x64xbf16>
  %kv = bufferization.to_tensor %arg1 : memref<1x2x100x64xbf16> to tensor<1x2x100x64xbf16>
  %r = kiln.attention %q, %kv, %kv {causal_offset = 0 : i64, scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x100x64xbf16>, tensor<1x2x100x64xbf16>, tensor<1x2x100x64xbf16> -> tensor<1x2x100x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x100x64xbf16> to memref<1x2x100x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg2 : memref<1x2x100x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x100x64xbf16>
  memref.dealloc %t : memref<1x2x100x64xbf16>
  return
}
