// RUN: kiln-opt %s --split-input-file --verify-diagnostics --kiln-lower-warpgroup-fragments

// COM: A 64 x 16 accumulator has 8 registers per thread; a cast that says
// COM: otherwise is an error, not a wrong struct access.
func.func @wrong_count() -> f32 {
  %acc = nvgpu.warpgroup.mma.init.accumulator -> <fragmented = vector<64x16xf32>>
  // expected-error @+1 {{an accumulator of 'vector<64x16xf32>' has 8 registers per thread, not 4}}
  %r:4 = builtin.unrealized_conversion_cast %acc : !nvgpu.warpgroup.accumulator<fragmented = vector<64x16xf32>> to f32, f32, f32, f32
  return %r#0 : f32
}

// -----

// COM: Only f32 accumulators are read as registers (an f16 one's struct
// COM: packs two values per register).
func.func @f16_accumulator(%x: f16) {
  %acc = nvgpu.warpgroup.mma.init.accumulator -> <fragmented = vector<64x16xf16>>
  // expected-error @+1 {{only f32 accumulators are read as registers; 'vector<64x16xf16>' is not}}
  %r:8 = builtin.unrealized_conversion_cast %acc : !nvgpu.warpgroup.accumulator<fragmented = vector<64x16xf16>> to f16, f16, f16, f16, f16, f16, f16, f16
  return
}
