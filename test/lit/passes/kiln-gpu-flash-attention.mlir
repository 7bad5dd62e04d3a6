// RUN: kiln-opt %s --split-input-file --kiln-gpu-flash-attention | FileCheck %s

// COM: The flash kernel after bufferization of GPT-2's attention dispatch
// COM: (kiln-gpu-fuse-attention-layouts merged the head split and merge
// COM: into it): q and k are gathered from the QKV projection [1, 8, 96]
// COM: and transposed, v gathered already transposed, each into a
// COM: temporary; the result is permuted into the kernel's output. All of
// COM: it becomes views: the launch reads q, k, v from the projection at
// COM: offsets 0, 32, 64 with strides (head 16, position 96, element 1),
// COM: writes through the output's [b, h, s, d] strides (256, 16, 32, 1),
// COM: and no temporary or data-movement step is left.
// CHECK-LABEL: func.func @qkv_in_place
// CHECK-NOT: memref.alloc
// CHECK-NOT: linalg.
// CHECK: gpu.launch
// CHECK-SAME: workgroup(%{{.*}} : memref<16x16xbf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<2x64x16xbf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<2x64x16xbf16, #gpu.address_space<workgroup>>)
// CHECK-NEXT: %[[Q:.*]] = memref.reinterpret_cast %arg0 to offset: [0], sizes: [1, 2, 8, 16], strides: [0, 16, 96, 1]
// CHECK-NEXT: %[[K:.*]] = memref.reinterpret_cast %arg0 to offset: [32], sizes: [1, 2, 8, 16], strides: [0, 16, 96, 1]
// CHECK-NEXT: %[[V:.*]] = memref.reinterpret_cast %arg0 to offset: [64], sizes: [1, 2, 8, 16], strides: [0, 16, 96, 1]
// CHECK-NEXT: %[[O:.*]] = memref.reinterpret_cast %arg1 to offset: [0], sizes: [1, 2, 8, 16], strides: [256, 16, 32, 1]
// CHECK: nvgpu.device_async_copy %[[Q]]
// CHECK: nvgpu.device_async_copy %[[K]]
// CHECK: nvgpu.device_async_copy %[[V]]
// CHECK: nvgpu.mma.sync
// CHECK: vector.store %{{.*}}, %[[O]]
// CHECK: gpu.terminator
// CHECK-NOT: linalg.
// CHECK-NOT: memref.dealloc
// CHECK: return
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#swap = affine_map<(d0, d1, d2, d3) -> (d0, d2, d1, d3)>
func.func @qkv_in_place(%arg0: memref<1x8x96xbf16>, %arg1: memref<1x8x2x16xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
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

// COM: A gather at offset 4: rows of q would start mid-chunk, so q is not
// COM: read in place as 16-byte copies; the launch evaluates the gather
// COM: where it loads q's tile instead (element by element),
// COM: and neither the gather nor its temporary stays. k and v are the
// COM: kernel's buffers as they are; the result is copied to the output,
// COM: which the launch writes.
// CHECK-LABEL: func.func @unaligned_gather_evaluated
// CHECK-NOT: memref.alloc
// CHECK-NOT: linalg.generic
// CHECK: gpu.launch
// CHECK-NOT: memref.reinterpret_cast
// CHECK: memref.load %arg0
// CHECK: memref.store %{{.*}} : memref<16x16xbf16, #gpu.address_space<workgroup>>
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: nvgpu.device_async_copy %arg2
// CHECK: vector.store %{{.*}}, %arg3
// CHECK: gpu.terminator
// CHECK-NOT: memref.copy
// CHECK-NOT: memref.dealloc
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @unaligned_gather_evaluated(%arg0: memref<1x8x96xbf16>, %arg1: memref<1x2x8x16xbf16>, %arg2: memref<1x2x8x16xbf16>, %arg3: memref<1x2x8x16xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c4 = arith.constant 4 : index
  %c16 = arith.constant 16 : index
  %t = memref.alloc() : memref<1x2x8x16xbf16>
  linalg.generic {indexing_maps = [#id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%t : memref<1x2x8x16xbf16>) {
  ^bb0(%out: bf16):
    %h = linalg.index 1 : index
    %s = linalg.index 2 : index
    %d = linalg.index 3 : index
    %hd = arith.muli %h, %c16 : index
    %c = arith.addi %hd, %d : index
    %col = arith.addi %c, %c4 : index
    %x = memref.load %arg0[%c0, %s, %col] : memref<1x8x96xbf16>
    linalg.yield %x : bf16
  }
  %q = bufferization.to_tensor %t : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %k = bufferization.to_tensor %arg1 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %v = bufferization.to_tensor %arg2 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %r = kiln.attention %q, %k, %v {scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x8x16xbf16> to memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg3 : memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x8x16xbf16>
  memref.dealloc %t : memref<1x2x8x16xbf16>
  return
}

// -----

// COM: The result permuted into a view whose rows start at odd elements
// COM: (pairs could not be stored as one word): the launch writes a
// COM: temporary, which the permutation then reads.
// CHECK-LABEL: func.func @unaligned_result_stays
// CHECK: %[[T:.*]] = memref.alloc() : memref<1x2x8x16xbf16>
// CHECK: %[[C:.*]] = memref.cast %[[T]]
// CHECK: gpu.launch
// CHECK: vector.store %{{.*}}, %[[T]]
// CHECK: gpu.terminator
// CHECK: linalg.generic {{.*}} ins(%[[C]] : {{.*}}) outs(%{{.*}} : memref<1x8x2x16xbf16, strided<[272, 34, 17, 1], offset: 1>>)
// CHECK: memref.dealloc %[[T]]
// CHECK-NEXT: return
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#swap = affine_map<(d0, d1, d2, d3) -> (d0, d2, d1, d3)>
func.func @unaligned_result_stays(%arg0: memref<1x2x8x16xbf16>, %arg1: memref<1x8x2x17xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %r = kiln.attention %q, %q, %q {scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x8x16xbf16> to memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>>
  %out = memref.subview %arg1[0, 0, 0, 1] [1, 8, 2, 16] [1, 1, 1, 1] : memref<1x8x2x17xbf16> to memref<1x8x2x16xbf16, strided<[272, 34, 17, 1], offset: 1>>
  linalg.generic {indexing_maps = [#swap, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%rb : memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>>) outs(%out : memref<1x8x2x16xbf16, strided<[272, 34, 17, 1], offset: 1>>) {
  ^bb0(%in: bf16, %o: bf16):
    linalg.yield %in : bf16
  }
  return
}

// -----

// COM: Split-KV: 4 key tiles of 64 over 2 splits. Two f32 workspaces
// COM: ([split, batch, head, row, d] and [.., {max, sum}]), the flash launch
// COM: over (query tiles, heads, batch x splits) reading tiles [2 split,
// COM: 2 split + 2) and storing its part, then the combine launch (128
// COM: threads per block, one per output element) rescaling each split by
// COM: exp(m_s - max) and writing the bf16 result; the workspaces are freed.
// CHECK-LABEL: func.func @split_kv
// CHECK: %[[O:.*]] = memref.alloc() : memref<2x1x2x1x64xf32>
// CHECK: %[[ML:.*]] = memref.alloc() : memref<2x1x2x1x2xf32>
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1{{.*}}, %{{.*}} = %c2{{.*}}, %{{.*}} = %c2{{.*}})
// CHECK: scf.for
// CHECK: nvgpu.mma.sync
// CHECK: vector.store %{{.*}}, %[[O]]
// CHECK: memref.store %{{.*}}, %[[ML]]
// CHECK: gpu.terminator
// CHECK: gpu.launch
// CHECK-SAME: threads({{.*}}) in (%{{.*}} = %c128
// CHECK-COUNT-2: memref.load %[[ML]]
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %arg2
// CHECK: gpu.terminator
// CHECK: memref.dealloc %[[O]]
// CHECK: memref.dealloc %[[ML]]
func.func @split_kv(%arg0: memref<1x2x1x64xbf16>, %arg1: memref<1x2x256x64xbf16>, %arg2: memref<1x2x1x64xbf16>) attributes {kiln.config = {splits = 2 : i64, stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x1x64xbf16> to tensor<1x2x1x64xbf16>
  %kv = bufferization.to_tensor %arg1 : memref<1x2x256x64xbf16> to tensor<1x2x256x64xbf16>
  %r = kiln.attention %q, %kv, %kv {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x1x64xbf16>, tensor<1x2x256x64xbf16>, tensor<1x2x256x64xbf16> -> tensor<1x2x1x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x1x64xbf16> to memref<1x2x1x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg2 : memref<1x2x1x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x1x64xbf16>
  return
}

// -----

// COM: pack_heads: 4 query heads over 2 KV heads, one query each; a
// COM: block per KV head whose tile rows are the group's (head, query)
// COM: pairs: grid (1 row tile, 2 KV heads, 1), and Q row r read from head
// COM: 2 * kv + r / 1.
// CHECK-LABEL: func.func @packed_heads
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1{{.*}}, %{{.*}} = %c2{{.*}}, %{{.*}} = %c1{{.*}})
// CHECK: arith.muli %{{.*}}, %c2
// CHECK: nvgpu.device_async_copy %arg0
// CHECK: nvgpu.mma.sync
// CHECK: gpu.terminator
func.func @packed_heads(%arg0: memref<1x4x1x64xbf16>, %arg1: memref<1x2x128x64xbf16>, %arg2: memref<1x4x1x64xbf16>) attributes {kiln.config = {pack_heads = 1 : i64, stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x4x1x64xbf16> to tensor<1x4x1x64xbf16>
  %kv = bufferization.to_tensor %arg1 : memref<1x2x128x64xbf16> to tensor<1x2x128x64xbf16>
  %r = kiln.attention %q, %kv, %kv {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x4x1x64xbf16>, tensor<1x2x128x64xbf16>, tensor<1x2x128x64xbf16> -> tensor<1x4x1x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x4x1x64xbf16> to memref<1x4x1x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg2 : memref<1x4x1x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x4x1x64xbf16>
  return
}

// -----

// COM: Symbolic batch, query and key counts (a dynamic export, or decode
// COM: over a cache's prefix): the counts are the buffers' sizes, read on
// COM: the host side of the launch; the grid's x is ceil(queries / BM) and
// COM: its z the batch; the Q rows, the K/V rows and the keys of the
// COM: scores are guarded by the run's counts, and the key tiles end at
// COM: ceil(keys / BN). A result that a step other than a copy reads goes
// COM: to a temporary of the run's shape.
// CHECK-LABEL: func.func @symbolic_counts
// CHECK-DAG: %[[B:.*]] = memref.dim %arg0, %c0
// CHECK-DAG: %[[S:.*]] = memref.dim %arg0, %c2
// CHECK-DAG: %[[L:.*]] = memref.dim %arg1, %c2
// CHECK-DAG: %[[QT:.*]] = arith.ceildivui %[[S]], %c64
// CHECK-DAG: %[[KT:.*]] = arith.ceildivui %[[L]], %c64
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %[[QT]], %{{.*}} = %c2{{.*}}, %{{.*}} = %[[B]])
// CHECK: arith.minui %{{.*}}, %[[KT]]
// CHECK: arith.cmpi ult, %{{.*}}, %[[S]]
// CHECK: nvgpu.device_async_copy %arg0
// CHECK: arith.cmpi ult, %{{.*}}, %[[L]]
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: scf.for
// CHECK: nvgpu.mma.sync
// CHECK: arith.cmpi ult, %{{.*}}, %[[L]]
// CHECK: vector.store %{{.*}}, %arg3
// CHECK: gpu.terminator
func.func @symbolic_counts(%arg0: memref<?x2x?x64xbf16>, %arg1: memref<?x2x?x64xbf16>, %arg2: memref<?x2x?x64xbf16>, %arg3: memref<?x2x?x64xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 64, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<?x2x?x64xbf16> to tensor<?x2x?x64xbf16>
  %k = bufferization.to_tensor %arg1 : memref<?x2x?x64xbf16> to tensor<?x2x?x64xbf16>
  %v = bufferization.to_tensor %arg2 : memref<?x2x?x64xbf16> to tensor<?x2x?x64xbf16>
  %r = kiln.attention %q, %k, %v {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<?x2x?x64xbf16>, tensor<?x2x?x64xbf16>, tensor<?x2x?x64xbf16> -> tensor<?x2x?x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<?x2x?x64xbf16> to memref<?x2x?x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg3 : memref<?x2x?x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<?x2x?x64xbf16>
  return
}

// -----

// COM: Split-KV over a symbolic key count (decode over a cache's prefix):
// COM: each split's share of the key tiles, ceil(ceil(keys / BN) / splits),
// COM: is computed at run time; the workspaces are sized by the static
// COM: batch and query counts.
// CHECK-LABEL: func.func @split_kv_symbolic_keys
// CHECK: %[[L:.*]] = memref.dim %arg1, %c2
// CHECK: %[[KT:.*]] = arith.ceildivui %[[L]], %c64
// CHECK: memref.alloc() : memref<4x1x2x1x64xf32>
// CHECK: memref.alloc() : memref<4x1x2x1x2xf32>
// CHECK: %[[SHARE:.*]] = arith.ceildivui %[[KT]], %c4
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1{{.*}}, %{{.*}} = %c2{{.*}}, %{{.*}} = %c4{{.*}})
// CHECK: arith.muli %{{.*}}, %[[SHARE]]
// CHECK: gpu.terminator
// CHECK: gpu.launch
// CHECK: gpu.terminator
func.func @split_kv_symbolic_keys(%arg0: memref<1x2x1x64xbf16>, %arg1: memref<1x2x?x64xbf16>, %arg2: memref<1x2x1x64xbf16>) attributes {kiln.config = {splits = 4 : i64, stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x1x64xbf16> to tensor<1x2x1x64xbf16>
  %kv = bufferization.to_tensor %arg1 : memref<1x2x?x64xbf16> to tensor<1x2x?x64xbf16>
  %r = kiln.attention %q, %kv, %kv {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x1x64xbf16>, tensor<1x2x?x64xbf16>, tensor<1x2x?x64xbf16> -> tensor<1x2x1x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x1x64xbf16> to memref<1x2x1x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg2 : memref<1x2x1x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x1x64xbf16>
  return
}

// -----

// COM: Rotary embeddings of q and k computed in the kernel (what
// COM: kiln-gpu-fuse-attention-layouts merges into it): the threads
// COM: evaluate the generic for the tile's elements in row-major order (the
// COM: projection read at the element and its partner, the cos and sin
// COM: tables at the angle; zero past the edges) and store each into the
// COM: shared tile where the chunk swizzle puts it: q's 16 x 16 tile once
// COM: (8 per thread of the warp), k with every KV tile; v keeps its
// COM: cp.async. The generics and their temporaries are gone.
// CHECK-LABEL: func.func @rotary_operands
// CHECK-NOT: memref.alloc
// CHECK: gpu.launch
// CHECK: %[[QV:.*]] = scf.if %{{.*}} -> (bf16) {
// CHECK-COUNT-2: memref.load %arg0
// CHECK: memref.load %arg2
// CHECK: memref.load %arg3
// CHECK: arith.truncf
// CHECK: } else {
// CHECK: memref.store %[[QV]], %{{.*}}[%{{.*}}, %{{.*}}] : memref<16x16xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.load %arg1
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] : memref<2x64x16xbf16, #gpu.address_space<workgroup>>
// CHECK: nvgpu.device_async_copy %arg4
// CHECK: nvgpu.mma.sync
// CHECK: gpu.terminator
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref.dealloc
// CHECK: return
#rot = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @rotary_operands(%arg0: memref<1x8x2x16xf32>, %arg1: memref<1x8x2x16xf32>, %arg2: memref<1x8x8xf32>, %arg3: memref<1x8x8xf32>, %arg4: memref<1x2x8x16xbf16>, %arg5: memref<1x2x8x16xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %c0 = arith.constant 0 : index
  %c8 = arith.constant 8 : index
  %tq = memref.alloc() : memref<1x2x8x16xbf16>
  %tk = memref.alloc() : memref<1x2x8x16xbf16>
  linalg.generic {indexing_maps = [#rot], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%tq : memref<1x2x8x16xbf16>) {
  ^bb0(%out: bf16):
    %h = linalg.index 1 : index
    %p = linalg.index 2 : index
    %d = linalg.index 3 : index
    %first = arith.cmpi ult, %d, %c8 : index
    %up = arith.addi %d, %c8 : index
    %down = arith.subi %d, %c8 : index
    %partner = arith.select %first, %up, %down : index
    %angle = arith.select %first, %d, %down : index
    %self = memref.load %arg0[%c0, %p, %h, %d] : memref<1x8x2x16xf32>
    %other = memref.load %arg0[%c0, %p, %h, %partner] : memref<1x8x2x16xf32>
    %cv = memref.load %arg2[%c0, %p, %angle] : memref<1x8x8xf32>
    %sv = memref.load %arg3[%c0, %p, %angle] : memref<1x8x8xf32>
    %a = arith.mulf %self, %cv : f32
    %b = arith.mulf %other, %sv : f32
    %sub = arith.subf %a, %b : f32
    %add = arith.addf %a, %b : f32
    %r = arith.select %first, %sub, %add : f32
    %t = arith.truncf %r : f32 to bf16
    linalg.yield %t : bf16
  }
  linalg.generic {indexing_maps = [#rot], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%tk : memref<1x2x8x16xbf16>) {
  ^bb0(%out: bf16):
    %h = linalg.index 1 : index
    %p = linalg.index 2 : index
    %d = linalg.index 3 : index
    %first = arith.cmpi ult, %d, %c8 : index
    %up = arith.addi %d, %c8 : index
    %down = arith.subi %d, %c8 : index
    %partner = arith.select %first, %up, %down : index
    %angle = arith.select %first, %d, %down : index
    %self = memref.load %arg1[%c0, %p, %h, %d] : memref<1x8x2x16xf32>
    %other = memref.load %arg1[%c0, %p, %h, %partner] : memref<1x8x2x16xf32>
    %cv = memref.load %arg2[%c0, %p, %angle] : memref<1x8x8xf32>
    %sv = memref.load %arg3[%c0, %p, %angle] : memref<1x8x8xf32>
    %a = arith.mulf %self, %cv : f32
    %b = arith.mulf %other, %sv : f32
    %sub = arith.subf %a, %b : f32
    %add = arith.addf %a, %b : f32
    %r = arith.select %first, %sub, %add : f32
    %t = arith.truncf %r : f32 to bf16
    linalg.yield %t : bf16
  }
  %q = bufferization.to_tensor %tq : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %k = bufferization.to_tensor %tk : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %v = bufferization.to_tensor %arg4 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %r = kiln.attention %q, %k, %v {causal_offset = 0 : i64, scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x8x16xbf16> to memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg5 : memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x8x16xbf16>
  memref.dealloc %tq : memref<1x2x8x16xbf16>
  memref.dealloc %tk : memref<1x2x8x16xbf16>
  return
}
