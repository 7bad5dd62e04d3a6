// RUN: kiln-opt %s --split-input-file --kiln-gpu-gemm-small-m --canonicalize --cse --verify-diagnostics | FileCheck %s

// COM: 2 rows of x (bf16) @ w^T (w stored [N = 40, K = 64]) summed in f32;
// COM: 4 warps of 2 columns each: ceil(40 / 8) = 5 blocks of 128 threads.
// COM: Each lane starts at k = 8 * lane and steps by 32 x 8 = 256 (one step
// COM: here): per step one 16-byte load of each column's weights, then one
// COM: of each row of x; 2 x 2 f32 sums; a butterfly of 5 xor shuffles per
// COM: sum; lane r stores row r of each column, guarded at N.
// CHECK-LABEL: func.func @rows2
// CHECK-NOT: linalg.fill
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c5, %{{.*}} = %c1, %{{.*}} = %c1) threads({{.*}}) in (%{{.*}} = %c128, %{{.*}} = %c1, %{{.*}} = %c1)
// CHECK: scf.for %{{.*}} = %{{.*}} to %c64 step %c256 iter_args({{.*}}) -> (f32, f32, f32, f32)
// CHECK-COUNT-2: vector.load %arg1[{{.*}}] {alignment = 16 : i64} : memref<40x64xbf16>, vector<8xbf16>
// CHECK-COUNT-2: vector.load %arg0[{{.*}}] {alignment = 16 : i64} : memref<2x64xbf16>, vector<8xbf16>
// CHECK: arith.extf {{.*}} : bf16 to f32
// CHECK: scf.yield
// CHECK-COUNT-20: gpu.shuffle  xor
// CHECK-COUNT-4: memref.store %{{.*}}, %arg2[{{.*}}] : memref<2x40xf32>
// CHECK-NOT: linalg.generic
#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>
func.func @rows2(%a: memref<2x64xbf16>, %b: memref<40x64xbf16>, %c: memref<2x40xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-small-m", warps = 4 : i64, columns = 2 : i64}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<2x40xf32>)
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : memref<2x64xbf16>, memref<40x64xbf16>) outs(%c : memref<2x40xf32>) {
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

// COM: Batched (grid z over 8 heads) f32 scores of one query against 37
// COM: keys read in place, K-innermost: 4 f32 per 16-byte chunk, and the
// COM: fused epilogue (a scale) applied before the store; the temporary and
// COM: the elementwise generic are gone.
// CHECK-LABEL: func.func @batched_epilogue
// CHECK-NOT: memref.alloc
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c10, %{{.*}} = %c1, %{{.*}} = %c8) threads({{.*}}) in (%{{.*}} = %c128, %{{.*}} = %c1, %{{.*}} = %c1)
// CHECK: vector.load %arg1[{{.*}}] {alignment = 16 : i64} : memref<8x37x64xf32>, vector<4xf32>
// CHECK: vector.load %arg0[{{.*}}] {alignment = 16 : i64} : memref<8x1x64xf32>, vector<4xf32>
// CHECK: gpu.shuffle  xor
// CHECK: scf.if
// CHECK: arith.mulf %{{.*}}, %cst
// CHECK: memref.store %{{.*}}, %arg2[{{.*}}] : memref<8x1x37xf32>
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref.dealloc
#q = affine_map<(b, m, n, k) -> (b, m, k)>
#k = affine_map<(b, m, n, k) -> (b, n, k)>
#o = affine_map<(b, m, n, k) -> (b, m, n)>
#id = affine_map<(b, m, n) -> (b, m, n)>
func.func @batched_epilogue(%a: memref<8x1x64xf32>, %b: memref<8x37x64xf32>, %c: memref<8x1x37xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-small-m", warps = 4 : i64, columns = 1 : i64}} {
  %zero = arith.constant 0.0 : f32
  %t = memref.alloc() : memref<8x1x37xf32>
  linalg.fill ins(%zero : f32) outs(%t : memref<8x1x37xf32>)
  linalg.generic {indexing_maps = [#q, #k, #o], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%a, %b : memref<8x1x64xf32>, memref<8x37x64xf32>) outs(%t : memref<8x1x37xf32>) {
  ^bb0(%p: f32, %q2: f32, %acc: f32):
    %m = arith.mulf %p, %q2 : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%t : memref<8x1x37xf32>) outs(%c : memref<8x1x37xf32>) {
  ^bb0(%v: f32, %o2: f32):
    %scale = arith.constant 0.125 : f32
    %r = arith.mulf %v, %scale : f32
    linalg.yield %r : f32
  }
  memref.dealloc %t : memref<8x1x37xf32>
  return
}

// -----

// COM: Not this strategy's: the accumulators start from a non-constant
// COM: (left to the generic mapping), and K = 36 is not whole 16-byte bf16
// COM: chunks.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: gpu.launch
// CHECK: linalg.fill
// CHECK: linalg.generic
// CHECK: linalg.generic
#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>
func.func @left_alone(%a: memref<2x64xbf16>, %b: memref<40x64xbf16>, %c: memref<2x40xf32>, %s: f32, %d: memref<2x36xbf16>, %e: memref<40x36xbf16>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-small-m", warps = 4 : i64, columns = 2 : i64}} {
  linalg.fill ins(%s : f32) outs(%c : memref<2x40xf32>)
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : memref<2x64xbf16>, memref<40x64xbf16>) outs(%c : memref<2x40xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pe = arith.extf %p : bf16 to f32
    %qe = arith.extf %q : bf16 to f32
    %m = arith.mulf %pe, %qe : f32
    %r = arith.addf %acc, %m : f32
    linalg.yield %r : f32
  }
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]} ins(%d, %e : memref<2x36xbf16>, memref<40x36xbf16>) outs(%c : memref<2x40xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pe = arith.extf %p : bf16 to f32
    %qe = arith.extf %q : bf16 to f32
    %m = arith.mulf %pe, %qe : f32
    %r = arith.addf %acc, %m : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// COM: A configuration out of range is an error naming the fields.
// expected-error @+1 {{kernel strategy 'gemm-small-m': 'warps' must be 1..32 and 'columns' 1..8}}
func.func @bad_config(%a: memref<2x64xbf16>, %b: memref<40x64xbf16>, %c: memref<2x40xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-small-m", warps = 64 : i64, columns = 2 : i64}} {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<2x40xf32>)
  linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : memref<2x64xbf16>, memref<40x64xbf16>) outs(%c : memref<2x40xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pe = arith.extf %p : bf16 to f32
    %qe = arith.extf %q : bf16 to f32
    %m = arith.mulf %pe, %qe : f32
    %r = arith.addf %acc, %m : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// COM: Weights decoded where they are read (kiln-fuse-weight-decode put a
// COM: MatMulNBits decoding in this kernel): B is a temporary [K, N] that a
// COM: generic writes from 4-bit integers stored [N, K / 2] and per-column
// COM: scales. The lanes walk K in chunks of 8 (bf16) and evaluate the
// COM: decoding's body for each element they read: a byte of the packed
// COM: column, its nibble, the column's scale, rounded to bf16. The
// COM: temporary, its decoding and its deallocation are gone: the packed
// COM: bytes are all the kernel reads of B, whatever their layout.
// COM: The 8 elements of a column's chunk share 4 bytes and one scale:
// COM: their indices are composed as affine expressions of the chunk's
// COM: aligned start, so each is loaded once.
// CHECK-LABEL: func.func @decoded_weights
// CHECK-NOT: memref.alloc
// CHECK: gpu.launch
// CHECK: scf.for %{{.*}} = %{{.*}} to %c64 step %c256
// CHECK: memref.load %arg1[%[[N0:.*]], %{{.*}}] : memref<48x32xi8>
// CHECK: memref.load %arg2[%[[N0]]] : memref<48xf32>
// CHECK-COUNT-3: memref.load %arg1[%[[N0]], %{{.*}}] : memref<48x32xi8>
// CHECK: memref.load %arg1[%[[N1:.*]], %{{.*}}] : memref<48x32xi8>
// CHECK: memref.load %arg2[%[[N1]]] : memref<48xf32>
// CHECK-COUNT-3: memref.load %arg1[%[[N1]], %{{.*}}] : memref<48x32xi8>
// CHECK-NOT: memref.load
// CHECK: arith.truncf {{.*}} : f32 to bf16
// CHECK: vector.load %arg0[{{.*}}] {alignment = 16 : i64} : memref<1x64xbf16>, vector<8xbf16>
// CHECK: gpu.shuffle  xor
// CHECK: memref.store %{{.*}}, %arg3[{{.*}}] : memref<1x48xf32>
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref.dealloc
#kn = affine_map<(k, n) -> (k, n)>
#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (k, n)>
#y = affine_map<(m, n, k) -> (m, n)>
func.func @decoded_weights(%a: memref<1x64xbf16>, %packed: memref<48x32xi8>, %scales: memref<48xf32>, %c: memref<1x48xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-small-m", warps = 4 : i64, columns = 2 : i64}} {
  %t = memref.alloc() : memref<64x48xbf16>
  linalg.generic {indexing_maps = [#kn], iterator_types = ["parallel", "parallel"]} outs(%t : memref<64x48xbf16>) {
  ^bb0(%out: bf16):
    %k = linalg.index 0 : index
    %n = linalg.index 1 : index
    %c2 = arith.constant 2 : index
    %c4 = arith.constant 4 : index
    %c15 = arith.constant 15 : i32
    %at = arith.divui %k, %c2 : index
    %odd = arith.remui %k, %c2 : index
    %bit = arith.muli %odd, %c4 : index
    %byte = memref.load %packed[%n, %at] : memref<48x32xi8>
    %wide = arith.extui %byte : i8 to i32
    %s = arith.index_cast %bit : index to i32
    %shifted = arith.shrui %wide, %s : i32
    %q = arith.andi %shifted, %c15 : i32
    %scale = memref.load %scales[%n] : memref<48xf32>
    %f = arith.uitofp %q : i32 to f32
    %eight = arith.constant 8.0 : f32
    %d = arith.subf %f, %eight : f32
    %r = arith.mulf %d, %scale : f32
    %h = arith.truncf %r : f32 to bf16
    linalg.yield %h : bf16
  }
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<1x48xf32>)
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %t : memref<1x64xbf16>, memref<64x48xbf16>) outs(%c : memref<1x48xf32>) {
  ^bb0(%p: bf16, %q: bf16, %acc: f32):
    %pe = arith.extf %p : bf16 to f32
    %qe = arith.extf %q : bf16 to f32
    %m = arith.mulf %pe, %qe : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }
  memref.dealloc %t : memref<64x48xbf16>
  return
}
