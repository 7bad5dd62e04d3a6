// RUN: kiln-opt %s --split-input-file --kiln-gpu-gemm-mma-sync --verify-diagnostics

// COM: A configuration the strategy cannot build is an error naming it.
// expected-error @+1 {{each warp's part of the tile must be whole m16n8k16 tiles}}
func.func @ragged_warps(%a: memref<96x64xbf16>, %b: memref<64x80xbf16>, %c: memref<96x80xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 48, 64, 32>, warps = array<i64: 2, 2>, stages = 3 : i64}} {
  linalg.matmul ins(%a, %b : memref<96x64xbf16>, memref<64x80xbf16>) outs(%c : memref<96x80xf32>)
  return
}

// -----

// expected-error @+1 {{the pipeline needs at least 2 stages}}
func.func @one_stage(%a: memref<96x64xbf16>, %b: memref<64x80xbf16>, %c: memref<96x80xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>, stages = 1 : i64}} {
  linalg.matmul ins(%a, %b : memref<96x64xbf16>, memref<64x80xbf16>) outs(%c : memref<96x80xf32>)
  return
}

// -----

// expected-error @+1 {{strategy 'gemm-mma-sync'}}
func.func @no_stages(%a: memref<96x64xbf16>, %b: memref<64x80xbf16>, %c: memref<96x80xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>}} {
  linalg.matmul ins(%a, %b : memref<96x64xbf16>, memref<64x80xbf16>) outs(%c : memref<96x80xf32>)
  return
}
