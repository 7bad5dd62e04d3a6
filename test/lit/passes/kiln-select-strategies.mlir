// RUN: kiln-opt %s --split-input-file --kiln-select-strategies=target=cuda:sm_80,sm_90a | FileCheck %s --check-prefix=CUDA
// RUN: kiln-opt %s --split-input-file --kiln-select-strategies="target=cpu cpu=x86-64-v3" | FileCheck %s --check-prefix=CPU
// RUN: kiln-opt %s --split-input-file --kiln-select-strategies="target=cpu cpu=skylake-avx512" | FileCheck %s --check-prefix=AVX512
// RUN: kiln-opt %s --split-input-file --kiln-select-strategies=target=cuda:sm_90a | FileCheck %s --check-prefix=HOPPER

// COM: Selection only: every dispatch gets one configuration from its root
// COM: op and the target's facts (the strategies' own tests apply
// COM: hand-written ones). A 70x45 @ 45x130 matmul: gemm-simt with 64x64x16
// COM: tiles on cuda; packed panels with a 6x16 register block on the cpu.
// CUDA-LABEL: func.func @gemm
// CUDA: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {register_block = array<i64: 4, 4>, strategy = "gemm-simt", threads = array<i64: 16, 16>, tile = array<i64: 64, 64, 16>}}
// CPU-LABEL: func.func @gemm
// CPU: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {register_block = array<i64: 6, 16>, strategy = "cpu-gemm", vector_width = 16 : i64}}
// COM: AVX-512: two 512-bit registers per row, blocks of 8 rows.
// AVX512: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {register_block = array<i64: 8, 32>, strategy = "cpu-gemm", vector_width = 32 : i64}}
func.func @gemm(%a: tensor<70x45xf32>, %b: tensor<45x130xf32>) -> tensor<70x130xf32> {
  %r = kiln.dispatch(%a, %b) : (tensor<70x45xf32>, tensor<45x130xf32>) -> tensor<70x130xf32> {
  ^bb0(%x: tensor<70x45xf32>, %y: tensor<45x130xf32>):
    %e = tensor.empty() : tensor<70x130xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<70x130xf32>) -> tensor<70x130xf32>
    %m = linalg.matmul ins(%x, %y : tensor<70x45xf32>, tensor<45x130xf32>) outs(%f : tensor<70x130xf32>) -> tensor<70x130xf32>
    kiln.yield %m : tensor<70x130xf32>
  }
  return %r : tensor<70x130xf32>
}

// -----

// COM: A matrix-vector product (M = 1) would fill one row of a 64x64
// COM: tile: not gemm-simt.
// CUDA-LABEL: func.func @matvec
// CUDA: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {strategy = "generic", threads = 256 : i64}}
// CPU-LABEL: func.func @matvec
// CPU: strategy = "cpu-gemm"
func.func @matvec(%a: tensor<1x45xf32>, %b: tensor<45x130xf32>) -> tensor<1x130xf32> {
  %r = kiln.dispatch(%a, %b) : (tensor<1x45xf32>, tensor<45x130xf32>) -> tensor<1x130xf32> {
  ^bb0(%x: tensor<1x45xf32>, %y: tensor<45x130xf32>):
    %e = tensor.empty() : tensor<1x130xf32>
    %m = linalg.matmul ins(%x, %y : tensor<1x45xf32>, tensor<45x130xf32>) outs(%e : tensor<1x130xf32>) -> tensor<1x130xf32>
    kiln.yield %m : tensor<1x130xf32>
  }
  return %r : tensor<1x130xf32>
}

// -----

// COM: A row sum in f32: a warp (the architecture's warp size) per row, 8
// COM: rows per 256-thread block.
// CUDA-LABEL: func.func @row_sum
// CUDA: {config = {rows_per_block = 8 : i64, strategy = "row-reduce", warp = 32 : i64}}
// CPU-LABEL: func.func @row_sum
// CPU: {config = {strategy = "cpu-vector", vector_width = 16 : i64}}
func.func @row_sum(%a: tensor<6x100xf32>) -> tensor<6xf32> {
  %r = kiln.dispatch(%a) : (tensor<6x100xf32>) -> tensor<6xf32> {
  ^bb0(%x: tensor<6x100xf32>):
    %e = tensor.empty() : tensor<6xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<6xf32>) -> tensor<6xf32>
    %s = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]}
        ins(%x : tensor<6x100xf32>) outs(%f : tensor<6xf32>) {
    ^bb0(%in: f32, %acc: f32):
      %sum = arith.addf %acc, %in : f32
      linalg.yield %sum : f32
    } -> tensor<6xf32>
    kiln.yield %s : tensor<6xf32>
  }
  return %r : tensor<6xf32>
}

// -----

// COM: A softmax in f32 over the last dim is one row-fused kernel (a warp
// COM: per row of 64); over another dim, a row reduction whose elementwise
// COM: steps are a part of its configuration; in f16 (warp shuffles move 32
// COM: bits) it takes the generic mapping.
// CUDA-LABEL: func.func @softmaxes
// CUDA: {config = {rows_per_block = 8 : i64, strategy = "row-fused", warps_per_row = 1 : i64}}
// CUDA: {config = {strategy = "generic", threads = 256 : i64}}
// CUDA: {config = {elementwise = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}, rows_per_block = 8 : i64, strategy = "row-reduce", warp = 32 : i64}}
func.func @softmaxes(%a: tensor<4x64xf32>, %b: tensor<4x64xf16>, %c: tensor<4x64xf32>) -> (tensor<4x64xf32>, tensor<4x64xf16>, tensor<4x64xf32>) {
  %r = kiln.dispatch(%a) : (tensor<4x64xf32>) -> tensor<4x64xf32> {
  ^bb0(%x: tensor<4x64xf32>):
    %e = tensor.empty() : tensor<4x64xf32>
    %s = linalg.softmax dimension(1) ins(%x : tensor<4x64xf32>) outs(%e : tensor<4x64xf32>) -> tensor<4x64xf32>
    kiln.yield %s : tensor<4x64xf32>
  }
  %h = kiln.dispatch(%b) : (tensor<4x64xf16>) -> tensor<4x64xf16> {
  ^bb0(%x: tensor<4x64xf16>):
    %e = tensor.empty() : tensor<4x64xf16>
    %s = linalg.softmax dimension(1) ins(%x : tensor<4x64xf16>) outs(%e : tensor<4x64xf16>) -> tensor<4x64xf16>
    kiln.yield %s : tensor<4x64xf16>
  }
  %m = kiln.dispatch(%c) : (tensor<4x64xf32>) -> tensor<4x64xf32> {
  ^bb0(%x: tensor<4x64xf32>):
    %e = tensor.empty() : tensor<4x64xf32>
    %s = linalg.softmax dimension(0) ins(%x : tensor<4x64xf32>) outs(%e : tensor<4x64xf32>) -> tensor<4x64xf32>
    kiln.yield %s : tensor<4x64xf32>
  }
  return %r, %h, %m : tensor<4x64xf32>, tensor<4x64xf16>, tensor<4x64xf32>
}

// -----

// COM: Layer and RMS norms kept whole (cuda): row-fused, one warp per row
// COM: up to 1024 elements, doubling the warps until a thread holds at
// COM: most 32 (1600: 2 warps, 4 rows per block; 4096: 4 warps, 2 rows).
// CUDA-LABEL: func.func @norms
// CUDA: {config = {rows_per_block = 8 : i64, strategy = "row-fused", warps_per_row = 1 : i64}}
// CUDA: {config = {rows_per_block = 4 : i64, strategy = "row-fused", warps_per_row = 2 : i64}}
// CUDA: {config = {rows_per_block = 2 : i64, strategy = "row-fused", warps_per_row = 4 : i64}}
func.func @norms(%a: tensor<4x768xf32>, %g: tensor<768xf32>, %b: tensor<4x1600xf32>, %h: tensor<1600xf32>, %c: tensor<4x4096xf16>, %w: tensor<4096xf16>) -> (tensor<4x768xf32>, tensor<4x1600xf32>, tensor<4x4096xf16>) {
  %r = kiln.dispatch(%a, %g) : (tensor<4x768xf32>, tensor<768xf32>) -> tensor<4x768xf32> {
  ^bb0(%x: tensor<4x768xf32>, %y: tensor<768xf32>):
    %n = kiln.layer_norm %x, %y, %y {axis = -1 : i64, epsilon = 1.0e-05 : f32} : tensor<4x768xf32>, tensor<768xf32>, tensor<768xf32>
    kiln.yield %n : tensor<4x768xf32>
  }
  %s = kiln.dispatch(%b, %h) : (tensor<4x1600xf32>, tensor<1600xf32>) -> tensor<4x1600xf32> {
  ^bb0(%x: tensor<4x1600xf32>, %y: tensor<1600xf32>):
    %n = kiln.layer_norm %x, %y {axis = 1 : i64, epsilon = 1.0e-05 : f32} : tensor<4x1600xf32>, tensor<1600xf32>
    kiln.yield %n : tensor<4x1600xf32>
  }
  %t = kiln.dispatch(%c, %w) : (tensor<4x4096xf16>, tensor<4096xf16>) -> tensor<4x4096xf16> {
  ^bb0(%x: tensor<4x4096xf16>, %y: tensor<4096xf16>):
    %n = kiln.rms_norm %x, %y {axis = -1 : i64, epsilon = 1.0e-06 : f32} : tensor<4x4096xf16>, tensor<4096xf16>
    kiln.yield %n : tensor<4x4096xf16>
  }
  return %r, %s, %t : tensor<4x768xf32>, tensor<4x1600xf32>, tensor<4x4096xf16>
}

// -----

// COM: Elementwise with an innermost extent divisible by the vector width
// COM: gets vector accesses; an odd extent (5) the generic mapping.
// CUDA-LABEL: func.func @elementwise
// CUDA: {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}}
// CUDA: {config = {strategy = "generic", threads = 256 : i64}}
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @elementwise(%a: tensor<8x128xf32>, %b: tensor<3x5xf32>) -> (tensor<8x128xf32>, tensor<3x5xf32>) {
  %r = kiln.dispatch(%a) : (tensor<8x128xf32>) -> tensor<8x128xf32> {
  ^bb0(%x: tensor<8x128xf32>):
    %e = tensor.empty() : tensor<8x128xf32>
    %g = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
        ins(%x : tensor<8x128xf32>) outs(%e : tensor<8x128xf32>) {
    ^bb0(%in: f32, %o: f32):
      %n = arith.negf %in : f32
      linalg.yield %n : f32
    } -> tensor<8x128xf32>
    kiln.yield %g : tensor<8x128xf32>
  }
  %s = kiln.dispatch(%b) : (tensor<3x5xf32>) -> tensor<3x5xf32> {
  ^bb0(%x: tensor<3x5xf32>):
    %e = tensor.empty() : tensor<3x5xf32>
    %g = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
        ins(%x : tensor<3x5xf32>) outs(%e : tensor<3x5xf32>) {
    ^bb0(%in: f32, %o: f32):
      %n = arith.negf %in : f32
      linalg.yield %n : f32
    } -> tensor<3x5xf32>
    kiln.yield %g : tensor<3x5xf32>
  }
  return %r, %s : tensor<8x128xf32>, tensor<3x5xf32>
}

// -----

// COM: kiln.attention is a dispatch root of its own; f32 attention has no
// COM: tensor-core kernel, so it takes its decomposition
// COM: (attention-fallback), whose GEMMs, row reductions and elementwise
// COM: steps each have a part. The CPU runs it as one loop nest with an
// COM: online softmax over blocks of 32 keys (four AVX registers of scores).
// CUDA-LABEL: func.func @attention
// CUDA: {config = {elementwise = {{{.*}}}, "gemm-simt" = {{{.*}}}, generic = {{{.*}}}, "row-reduce" = {{{.*}}}, strategy = "attention-fallback"}}
// CPU-LABEL: func.func @attention
// CPU: {config = {key_block = 32 : i64, strategy = "cpu-flash-attention", vector_width = 16 : i64}}
func.func @attention(%q: tensor<1x2x8x16xf32>, %k: tensor<1x2x8x16xf32>, %v: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  %r = kiln.dispatch(%q, %k, %v) : (tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  ^bb0(%a: tensor<1x2x8x16xf32>, %b: tensor<1x2x8x16xf32>, %c: tensor<1x2x8x16xf32>):
    %o = kiln.attention %a, %b, %c {scale = 0.25 : f64} : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
    kiln.yield %o : tensor<1x2x8x16xf32>
  }
  return %r : tensor<1x2x8x16xf32>
}

// -----

// COM: bf16 attention with an f32 softmax: flash-attention-mma-sync, four
// COM: warps of 16 query rows, key tiles of 64 (two stages of K and V for a
// COM: head of 64 fit 48 KiB); 8 query tiles x 12 heads x 2 fill the SMs.
// CUDA-LABEL: func.func @flash_prefill
// CUDA: {config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 64, 64>}}
func.func @flash_prefill(%q: tensor<2x12x512x64xbf16>) -> tensor<2x12x512x64xbf16> {
  %r = kiln.dispatch(%q) : (tensor<2x12x512x64xbf16>) -> tensor<2x12x512x64xbf16> {
  ^bb0(%a: tensor<2x12x512x64xbf16>):
    %o = kiln.attention %a, %a, %a {causal_offset = 0 : i64, scale = 0.125 : f64, softmax_type = f32} : tensor<2x12x512x64xbf16>, tensor<2x12x512x64xbf16>, tensor<2x12x512x64xbf16> -> tensor<2x12x512x64xbf16>
    kiln.yield %o : tensor<2x12x512x64xbf16>
  }
  return %r : tensor<2x12x512x64xbf16>
}

// -----

// COM: Decode: one query row per head against 2048 keys is 12 blocks, too
// COM: few for the SMs: the 32 key tiles are split 9 ways on the A100
// COM: (ceil(108 SMs / 12 blocks)), 11 ways on the H100 (132 / 12); a
// COM: target of both takes the first architecture's facts.
// CUDA-LABEL: func.func @flash_decode
// CUDA: {config = {splits = 9 : i64, stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}}
// HOPPER-LABEL: func.func @flash_decode
// HOPPER: {config = {splits = 11 : i64, stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}}
func.func @flash_decode(%q: tensor<1x12x1x64xbf16>, %kv: tensor<1x12x2048x64xbf16>) -> tensor<1x12x1x64xbf16> {
  %r = kiln.dispatch(%q, %kv) : (tensor<1x12x1x64xbf16>, tensor<1x12x2048x64xbf16>) -> tensor<1x12x1x64xbf16> {
  ^bb0(%a: tensor<1x12x1x64xbf16>, %b: tensor<1x12x2048x64xbf16>):
    %o = kiln.attention %a, %b, %b {scale = 0.125 : f64, softmax_type = f32} : tensor<1x12x1x64xbf16>, tensor<1x12x2048x64xbf16>, tensor<1x12x2048x64xbf16> -> tensor<1x12x1x64xbf16>
    kiln.yield %o : tensor<1x12x1x64xbf16>
  }
  return %r : tensor<1x12x1x64xbf16>
}

// -----

// COM: bf16 operands summed in f32 (--precision bf16) on architectures that
// COM: all have mma.sync: gemm-mma-sync with the largest square tile whose
// COM: blocks fill the SMs (108 on the A100): 512x512 has 16 blocks of 128
// COM: and 64 of 64, too few, so 32x32x32 (256 blocks); 1536x1536 has 144
// COM: of 128. The CPU computes them with its own GEMM.
// CUDA-LABEL: func.func @tensor_core_gemms
// CUDA: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}}
// CUDA: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 128, 128, 32>, warps = array<i64: 2, 4>}}
// CPU-LABEL: func.func @tensor_core_gemms
// CPU-COUNT-2: strategy = "cpu-gemm"
func.func @tensor_core_gemms(%a: tensor<512x64xbf16>, %b: tensor<64x512xbf16>, %c: tensor<1536x64xbf16>, %d: tensor<64x1536xbf16>) -> (tensor<512x512xf32>, tensor<1536x1536xf32>) {
  %r = kiln.dispatch(%a, %b) : (tensor<512x64xbf16>, tensor<64x512xbf16>) -> tensor<512x512xf32> {
  ^bb0(%x: tensor<512x64xbf16>, %y: tensor<64x512xbf16>):
    %e = tensor.empty() : tensor<512x512xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<512x512xf32>) -> tensor<512x512xf32>
    %m = linalg.matmul ins(%x, %y : tensor<512x64xbf16>, tensor<64x512xbf16>) outs(%f : tensor<512x512xf32>) -> tensor<512x512xf32>
    kiln.yield %m : tensor<512x512xf32>
  }
  %s = kiln.dispatch(%c, %d) : (tensor<1536x64xbf16>, tensor<64x1536xbf16>) -> tensor<1536x1536xf32> {
  ^bb0(%x: tensor<1536x64xbf16>, %y: tensor<64x1536xbf16>):
    %e = tensor.empty() : tensor<1536x1536xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<1536x1536xf32>) -> tensor<1536x1536xf32>
    %m = linalg.matmul ins(%x, %y : tensor<1536x64xbf16>, tensor<64x1536xbf16>) outs(%f : tensor<1536x1536xf32>) -> tensor<1536x1536xf32>
    kiln.yield %m : tensor<1536x1536xf32>
  }
  return %r, %s : tensor<512x512xf32>, tensor<1536x1536xf32>
}

// -----

// COM: Few rows against a long K: 24x128 on 32-tiles is 4 blocks, under
// COM: half the A100's 108 SMs, so K (64 slices) splits 6 ways: the most
// COM: whose f32 workspace traffic (8 bytes per split and output element)
// COM: stays within a quarter of the operands' bytes. 24x128 with K = 96
// COM: (3 slices) cannot split; 32x768 with K = 768 (24 blocks) would move
// COM: more through the workspace than it saves; 128x768 (96 blocks) needs
// COM: no split.
// CUDA-LABEL: func.func @split_k
// CUDA: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {split_k = 6 : i64, stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}}
// CUDA-COUNT-3: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}}
func.func @split_k(%a: tensor<24x2048xbf16>, %b: tensor<2048x128xbf16>, %c: tensor<24x96xbf16>, %d: tensor<96x128xbf16>, %g: tensor<32x768xbf16>, %h: tensor<768x768xbf16>, %e: tensor<128x1024xbf16>, %f: tensor<1024x768xbf16>) -> (tensor<24x128xf32>, tensor<24x128xf32>, tensor<32x768xf32>, tensor<128x768xf32>) {
  %r = kiln.dispatch(%a, %b) : (tensor<24x2048xbf16>, tensor<2048x128xbf16>) -> tensor<24x128xf32> {
  ^bb0(%x: tensor<24x2048xbf16>, %y: tensor<2048x128xbf16>):
    %t = tensor.empty() : tensor<24x128xf32>
    %zero = arith.constant 0.0 : f32
    %z = linalg.fill ins(%zero : f32) outs(%t : tensor<24x128xf32>) -> tensor<24x128xf32>
    %m = linalg.matmul ins(%x, %y : tensor<24x2048xbf16>, tensor<2048x128xbf16>) outs(%z : tensor<24x128xf32>) -> tensor<24x128xf32>
    kiln.yield %m : tensor<24x128xf32>
  }
  %s = kiln.dispatch(%c, %d) : (tensor<24x96xbf16>, tensor<96x128xbf16>) -> tensor<24x128xf32> {
  ^bb0(%x: tensor<24x96xbf16>, %y: tensor<96x128xbf16>):
    %t = tensor.empty() : tensor<24x128xf32>
    %zero = arith.constant 0.0 : f32
    %z = linalg.fill ins(%zero : f32) outs(%t : tensor<24x128xf32>) -> tensor<24x128xf32>
    %m = linalg.matmul ins(%x, %y : tensor<24x96xbf16>, tensor<96x128xbf16>) outs(%z : tensor<24x128xf32>) -> tensor<24x128xf32>
    kiln.yield %m : tensor<24x128xf32>
  }
  %v = kiln.dispatch(%g, %h) : (tensor<32x768xbf16>, tensor<768x768xbf16>) -> tensor<32x768xf32> {
  ^bb0(%x: tensor<32x768xbf16>, %y: tensor<768x768xbf16>):
    %t = tensor.empty() : tensor<32x768xf32>
    %zero = arith.constant 0.0 : f32
    %z = linalg.fill ins(%zero : f32) outs(%t : tensor<32x768xf32>) -> tensor<32x768xf32>
    %m = linalg.matmul ins(%x, %y : tensor<32x768xbf16>, tensor<768x768xbf16>) outs(%z : tensor<32x768xf32>) -> tensor<32x768xf32>
    kiln.yield %m : tensor<32x768xf32>
  }
  %u = kiln.dispatch(%e, %f) : (tensor<128x1024xbf16>, tensor<1024x768xbf16>) -> tensor<128x768xf32> {
  ^bb0(%x: tensor<128x1024xbf16>, %y: tensor<1024x768xbf16>):
    %t = tensor.empty() : tensor<128x768xf32>
    %zero = arith.constant 0.0 : f32
    %z = linalg.fill ins(%zero : f32) outs(%t : tensor<128x768xf32>) -> tensor<128x768xf32>
    %m = linalg.matmul ins(%x, %y : tensor<128x1024xbf16>, tensor<1024x768xbf16>) outs(%z : tensor<128x768xf32>) -> tensor<128x768xf32>
    kiln.yield %m : tensor<128x768xf32>
  }
  return %r, %s, %v, %u : tensor<24x128xf32>, tensor<24x128xf32>, tensor<32x768xf32>, tensor<128x768xf32>
}

// -----

// COM: At most 16 rows with both operands K-innermost and K whole 16-byte
// COM: chunks (decoding with the weight stored [N, K]): gemm-small-m, 4
// COM: warps of 2 columns for up to 4 rows, of 1 column for more (their
// COM: sums are held in registers).
// CUDA-LABEL: func.func @small_m
// CUDA: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {columns = 2 : i64, strategy = "gemm-small-m", warps = 4 : i64}}
// CUDA: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {columns = 1 : i64, strategy = "gemm-small-m", warps = 4 : i64}}
// CPU-LABEL: func.func @small_m
// CPU-COUNT-2: strategy = "cpu-gemm"
#xs = affine_map<(m, n, k) -> (m, k)>
#ws = affine_map<(m, n, k) -> (n, k)>
#ys = affine_map<(m, n, k) -> (m, n)>
func.func @small_m(%a: tensor<4x64xbf16>, %b: tensor<96x64xbf16>, %c: tensor<16x64xf32>, %d: tensor<96x64xf32>) -> (tensor<4x96xf32>, tensor<16x96xf32>) {
  %r = kiln.dispatch(%a, %b) : (tensor<4x64xbf16>, tensor<96x64xbf16>) -> tensor<4x96xf32> {
  ^bb0(%x: tensor<4x64xbf16>, %y: tensor<96x64xbf16>):
    %e = tensor.empty() : tensor<4x96xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<4x96xf32>) -> tensor<4x96xf32>
    %m = linalg.generic {indexing_maps = [#xs, #ws, #ys], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %y : tensor<4x64xbf16>, tensor<96x64xbf16>) outs(%f : tensor<4x96xf32>) {
    ^bb0(%p: bf16, %q: bf16, %acc: f32):
      %pe = arith.extf %p : bf16 to f32
      %qe = arith.extf %q : bf16 to f32
      %pq = arith.mulf %pe, %qe : f32
      %s = arith.addf %acc, %pq : f32
      linalg.yield %s : f32
    } -> tensor<4x96xf32>
    kiln.yield %m : tensor<4x96xf32>
  }
  %t = kiln.dispatch(%c, %d) : (tensor<16x64xf32>, tensor<96x64xf32>) -> tensor<16x96xf32> {
  ^bb0(%x: tensor<16x64xf32>, %y: tensor<96x64xf32>):
    %e = tensor.empty() : tensor<16x96xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<16x96xf32>) -> tensor<16x96xf32>
    %m = linalg.generic {indexing_maps = [#xs, #ws, #ys], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %y : tensor<16x64xf32>, tensor<96x64xf32>) outs(%f : tensor<16x96xf32>) {
    ^bb0(%p: f32, %q: f32, %acc: f32):
      %pq = arith.mulf %p, %q : f32
      %s = arith.addf %acc, %pq : f32
      linalg.yield %s : f32
    } -> tensor<16x96xf32>
    kiln.yield %m : tensor<16x96xf32>
  }
  return %r, %t : tensor<4x96xf32>, tensor<16x96xf32>
}

// -----

// COM: On a target of sm_90a alone, the products whose 128x128 tiles make a
// COM: full wave on its 132 SMs and whose K has a few 64-deep slices
// COM: take gemm-wgmma (TMA, wgmma, warp-specialized), 6 stages (192 KiB
// COM: of ring; the epilogue needs no shared memory) and a persistent grid
// COM: of one block per SM; 512x512 (16 tiles) keeps mma.sync's smaller
// COM: tiles, as does a K of 64.
// HOPPER-LABEL: func.func @hopper_gemms
// HOPPER: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {blocks = 132 : i64, stages = 6 : i64, strategy = "gemm-wgmma", tile = array<i64: 128, 128, 64>}}
// HOPPER: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {{{.*}}strategy = "gemm-mma-sync"{{.*}}}}
// HOPPER: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {{{.*}}strategy = "gemm-mma-sync"{{.*}}}}
// CUDA-LABEL: func.func @hopper_gemms
// CUDA-NOT: gemm-wgmma
func.func @hopper_gemms(%a: tensor<1536x256xbf16>, %b: tensor<256x1536xbf16>, %c: tensor<512x256xbf16>, %d: tensor<256x512xbf16>, %e: tensor<1536x64xbf16>, %g: tensor<64x1536xbf16>) -> (tensor<1536x1536xf32>, tensor<512x512xf32>, tensor<1536x1536xf32>) {
  %r = kiln.dispatch(%a, %b) : (tensor<1536x256xbf16>, tensor<256x1536xbf16>) -> tensor<1536x1536xf32> {
  ^bb0(%x: tensor<1536x256xbf16>, %y: tensor<256x1536xbf16>):
    %t = tensor.empty() : tensor<1536x1536xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%t : tensor<1536x1536xf32>) -> tensor<1536x1536xf32>
    %m = linalg.matmul ins(%x, %y : tensor<1536x256xbf16>, tensor<256x1536xbf16>) outs(%f : tensor<1536x1536xf32>) -> tensor<1536x1536xf32>
    kiln.yield %m : tensor<1536x1536xf32>
  }
  %s = kiln.dispatch(%c, %d) : (tensor<512x256xbf16>, tensor<256x512xbf16>) -> tensor<512x512xf32> {
  ^bb0(%x: tensor<512x256xbf16>, %y: tensor<256x512xbf16>):
    %t = tensor.empty() : tensor<512x512xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%t : tensor<512x512xf32>) -> tensor<512x512xf32>
    %m = linalg.matmul ins(%x, %y : tensor<512x256xbf16>, tensor<256x512xbf16>) outs(%f : tensor<512x512xf32>) -> tensor<512x512xf32>
    kiln.yield %m : tensor<512x512xf32>
  }
  %u = kiln.dispatch(%e, %g) : (tensor<1536x64xbf16>, tensor<64x1536xbf16>) -> tensor<1536x1536xf32> {
  ^bb0(%x: tensor<1536x64xbf16>, %y: tensor<64x1536xbf16>):
    %t = tensor.empty() : tensor<1536x1536xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%t : tensor<1536x1536xf32>) -> tensor<1536x1536xf32>
    %m = linalg.matmul ins(%x, %y : tensor<1536x64xbf16>, tensor<64x1536xbf16>) outs(%f : tensor<1536x1536xf32>) -> tensor<1536x1536xf32>
    kiln.yield %m : tensor<1536x1536xf32>
  }
  return %r, %s, %u : tensor<1536x1536xf32>, tensor<512x512xf32>, tensor<1536x1536xf32>
}

// -----

// COM: A symbolic M (rows from a batch and a sequence length): the middle
// COM: tensor-core tile, whatever the run's M turns out to be.
// CUDA-LABEL: func.func @symbolic_m
// CUDA: kiln.dispatch(%{{.*}}, %{{.*}}) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 64, 64, 32>, warps = array<i64: 2, 2>}}
func.func @symbolic_m(%a: tensor<?x64xbf16>, %b: tensor<64x96xbf16>) -> tensor<?x96xf32> {
  %r = kiln.dispatch(%a, %b) : (tensor<?x64xbf16>, tensor<64x96xbf16>) -> tensor<?x96xf32> {
  ^bb0(%x: tensor<?x64xbf16>, %y: tensor<64x96xbf16>):
    %c0 = arith.constant 0 : index
    %d = tensor.dim %x, %c0 : tensor<?x64xbf16>
    %e = tensor.empty(%d) : tensor<?x96xf32>
    %zero = arith.constant 0.0 : f32
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<?x96xf32>) -> tensor<?x96xf32>
    %m = linalg.matmul ins(%x, %y : tensor<?x64xbf16>, tensor<64x96xbf16>) outs(%f : tensor<?x96xf32>) -> tensor<?x96xf32>
    kiln.yield %m : tensor<?x96xf32>
  }
  return %r : tensor<?x96xf32>
}

// -----

// COM: Decode with grouped-query heads (LLaMA 3 8B: 32 query heads over 8
// COM: KV heads): the 4 query heads of a group are packed into the rows of
// COM: one tile so each K/V tile is loaded once for them; 8 blocks split
// COM: the 64 key tiles of 64 (a head of 128: 66 KiB of shared memory)
// COM: 14 ways.
// CUDA-LABEL: func.func @flash_decode_gqa
// CUDA: {config = {pack_heads = 1 : i64, splits = 14 : i64, stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}}
func.func @flash_decode_gqa(%q: tensor<1x32x1x128xbf16>, %kv: tensor<1x8x4096x128xbf16>) -> tensor<1x32x1x128xbf16> {
  %r = kiln.dispatch(%q, %kv) : (tensor<1x32x1x128xbf16>, tensor<1x8x4096x128xbf16>) -> tensor<1x32x1x128xbf16> {
  ^bb0(%a: tensor<1x32x1x128xbf16>, %b: tensor<1x8x4096x128xbf16>):
    %o = kiln.attention %a, %b, %b {scale = 0.088388347648318447 : f64, softmax_type = f32} : tensor<1x32x1x128xbf16>, tensor<1x8x4096x128xbf16>, tensor<1x8x4096x128xbf16> -> tensor<1x32x1x128xbf16>
    kiln.yield %o : tensor<1x32x1x128xbf16>
  }
  return %r : tensor<1x32x1x128xbf16>
}

// -----

// COM: f64 attention keeps its precision in the CPU's fallback (the flash
// COM: loop nest computes in f32).
// CPU-LABEL: func.func @attention_f64
// CPU: {config = {register_block = array<i64: 6, 16>, strategy = "cpu-attention-fallback", vector_width = 16 : i64}}
func.func @attention_f64(%q: tensor<1x2x8x16xf64>, %k: tensor<1x2x8x16xf64>, %v: tensor<1x2x8x16xf64>) -> tensor<1x2x8x16xf64> {
  %r = kiln.dispatch(%q, %k, %v) : (tensor<1x2x8x16xf64>, tensor<1x2x8x16xf64>, tensor<1x2x8x16xf64>) -> tensor<1x2x8x16xf64> {
  ^bb0(%a: tensor<1x2x8x16xf64>, %b: tensor<1x2x8x16xf64>, %c: tensor<1x2x8x16xf64>):
    %o = kiln.attention %a, %b, %c {scale = 0.25 : f64} : tensor<1x2x8x16xf64>, tensor<1x2x8x16xf64>, tensor<1x2x8x16xf64> -> tensor<1x2x8x16xf64>
    kiln.yield %o : tensor<1x2x8x16xf64>
  }
  return %r : tensor<1x2x8x16xf64>
}
