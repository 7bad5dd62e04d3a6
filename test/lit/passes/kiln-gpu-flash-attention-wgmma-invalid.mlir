// RUN: kiln-opt %s --split-input-file --verify-diagnostics --kiln-gpu-flash-attention-wgmma

// COM: Configurations the Hopper flash kernel cannot build, and attention
// COM: it does not take, are errors that name the strategy.
// expected-error @+1 {{kernel strategy 'flash-attention-wgmma': flash-attention-wgmma takes 64 or 128 query rows (a warpgroup per 64) and 64 keys}}
func.func @rows_not_warpgroups(%arg0: memref<1x2x80x64xbf16>, %arg1: memref<1x2x80x64xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 48, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x80x64xbf16> to tensor<1x2x80x64xbf16>
  %r = kiln.attention %q, %q, %q {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x80x64xbf16>, tensor<1x2x80x64xbf16>, tensor<1x2x80x64xbf16> -> tensor<1x2x80x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x80x64xbf16> to memref<1x2x80x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<1x2x80x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x80x64xbf16>
  return
}

// -----

// expected-error @+1 {{kernel strategy 'flash-attention-wgmma': the pipeline needs at least 2 stages}}
func.func @one_stage(%arg0: memref<1x2x80x64xbf16>, %arg1: memref<1x2x80x64xbf16>) attributes {kiln.config = {stages = 1 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 64, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x80x64xbf16> to tensor<1x2x80x64xbf16>
  %r = kiln.attention %q, %q, %q {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x80x64xbf16>, tensor<1x2x80x64xbf16>, tensor<1x2x80x64xbf16> -> tensor<1x2x80x64xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x80x64xbf16> to memref<1x2x80x64xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<1x2x80x64xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x80x64xbf16>
  return
}

// -----

func.func @head_of_256(%arg0: memref<1x2x80x256xbf16>, %arg1: memref<1x2x80x256xbf16>) attributes {kiln.config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 64, 64>}, kiln.kernel} {
  %q = bufferization.to_tensor %arg0 : memref<1x2x80x256xbf16> to tensor<1x2x80x256xbf16>
  // expected-error @+1 {{flash-attention-wgmma takes f16 or bf16 attention with static head counts and heads of at most 128 elements in multiples of 8}}
  %r = kiln.attention %q, %q, %q {scale = 1.250000e-01 : f64, softmax_type = f32} : tensor<1x2x80x256xbf16>, tensor<1x2x80x256xbf16>, tensor<1x2x80x256xbf16> -> tensor<1x2x80x256xbf16>
  %rb = bufferization.to_buffer %r : tensor<1x2x80x256xbf16> to memref<1x2x80x256xbf16, strided<[?, ?, ?, ?], offset: ?>>
  memref.copy %rb, %arg1 : memref<1x2x80x256xbf16, strided<[?, ?, ?, ?], offset: ?>> to memref<1x2x80x256xbf16>
  return
}
