// RUN: kiln-opt %s --split-input-file --kiln-gpu-gemm --verify-diagnostics

// COM: A configuration whose tile is not threads x register block.
// expected-error @below {{kernel strategy 'gemm-simt': the tile must be threads x register_block (TM = Y * RM, TN = X * RN)}}
func.func @tile_mismatch(%a: memref<70x45xf32>, %b: memref<45x130xf32>, %c: memref<70x130xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 8, 8>, register_block = array<i64: 4, 4>}} {
  linalg.matmul ins(%a, %b : memref<70x45xf32>, memref<45x130xf32>) outs(%c : memref<70x130xf32>)
  return
}

// -----

// COM: A configuration without the numbers the strategy needs.
// expected-error @below {{kernel strategy 'gemm-simt': the configuration needs 'register_block' as array<i64> of 2 positive values}}
func.func @missing_key(%a: memref<70x45xf32>, %b: memref<45x130xf32>, %c: memref<70x130xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>}} {
  linalg.matmul ins(%a, %b : memref<70x45xf32>, memref<45x130xf32>) outs(%c : memref<70x130xf32>)
  return
}

// -----

// COM: M tiles over grid y's limit of 65,535 blocks.
// expected-error @below {{kernel strategy 'gemm-simt': the grid of 1 x 65537 tiles x 1 batches exceeds the device's limits}}
func.func @m_over_grid_y(%a: memref<4194305x16xf32>, %b: memref<16x8xf32>, %c: memref<4194305x8xf32>) attributes {kiln.kernel, kiln.config = {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>, register_block = array<i64: 4, 4>}} {
  linalg.matmul ins(%a, %b : memref<4194305x16xf32>, memref<16x8xf32>) outs(%c : memref<4194305x8xf32>)
  return
}
