// RUN: kiln-opt %s --split-input-file --verify-diagnostics --kiln-gpu-flash-attention

// COM: Configurations the flash kernel cannot build, and attention it does
// COM: not take, are errors that name the strategy, not wrong kernels.
// expected-error @+1 {{kernel strategy 'flash-attention-mma-sync': the query tile (16 rows per warp) and the key tile (k16 steps of P V) must be multiples of 16}}
func.func @tile_not_multiple_of_16(%arg0: memref<1x2x8x16xbf16>, %arg1: memref<1x2x8x16xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 24, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %r = kiln.attention %q, %q, %q {scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x8x16xbf16> to memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x8x16xbf16>
  return
}

// -----

// expected-error @+1 {{kernel strategy 'flash-attention-mma-sync': the pipeline needs at least 2 stages}}
func.func @one_stage(%arg0: memref<1x2x8x16xbf16>, %arg1: memref<1x2x8x16xbf16>) attributes {kiln.config = {stages = 1 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  %r = kiln.attention %q, %q, %q {scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x8x16xbf16> to memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<1x2x8x16xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x8x16xbf16>
  return
}

// -----

func.func @f32_attention(%arg0: memref<1x2x8x16xf32>, %arg1: memref<1x2x8x16xf32>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x8x16xf32> to tensor<1x2x8x16xf32>
  // expected-error @+1 {{flash-attention-mma-sync takes f16 or bf16 attention with static head counts}}
  %r = kiln.attention %q, %q, %q {scale = 2.500000e-01 : f64} : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  %rb = bufferization.to_buffer %r : tensor<1x2x8x16xf32> to memref<1x2x8x16xf32, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<1x2x8x16xf32, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x8x16xf32>
  return
}

// -----

func.func @result_not_stored(%arg0: memref<1x2x8x16xbf16>) -> tensor<1x2x8x16xbf16> attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x8x16xbf16> to tensor<1x2x8x16xbf16>
  // expected-error @+1 {{expects the bufferized kernel}}
  %r = kiln.attention %q, %q, %q {scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
  return %r : tensor<1x2x8x16xbf16>
}
