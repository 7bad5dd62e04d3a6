// RUN: kiln-opt %s --split-input-file --kiln-gpu-fuse-attention-layouts | FileCheck %s

// COM: GPT-2's head split and merge around a flash attention: q and k are
// COM: gathered from the QKV projection [1, 8, 96] and transposed to
// COM: [1, 2, 8, 16] (v is taken as it is); the result is permuted back.
// COM: Every data-movement dispatch moves into the flash dispatch, which
// COM: then reads the projection and yields the merged heads.
// CHECK-LABEL: func.func @gpt2_heads
// CHECK: %[[F:.*]] = kiln.dispatch(%arg0, %arg1) {config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}} : (tensor<1x8x96xbf16>, tensor<1x2x8x16xbf16>) -> tensor<1x8x2x16xbf16>
// CHECK: tensor.extract
// CHECK: linalg.transpose
// CHECK: tensor.extract
// CHECK: linalg.transpose
// CHECK: kiln.attention
// CHECK: linalg.generic
// CHECK: kiln.yield
// CHECK-NOT: kiln.dispatch
// CHECK: return %[[F]]
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#swap = affine_map<(d0, d1, d2, d3) -> (d0, d2, d1, d3)>
func.func @gpt2_heads(%qkv: tensor<1x8x96xbf16>, %v: tensor<1x2x8x16xbf16>) -> tensor<1x8x2x16xbf16> {
  %q0 = kiln.dispatch(%qkv) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x8x96xbf16>) -> tensor<1x8x2x16xbf16> {
  ^bb0(%a: tensor<1x8x96xbf16>):
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %e = tensor.empty() : tensor<1x8x2x16xbf16>
    %g = linalg.generic {indexing_maps = [#id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x8x2x16xbf16>) {
    ^bb0(%out: bf16):
      %s = linalg.index 1 : index
      %h = linalg.index 2 : index
      %d = linalg.index 3 : index
      %hd = arith.muli %h, %c16 : index
      %col = arith.addi %hd, %d : index
      %x = tensor.extract %a[%c0, %s, %col] : tensor<1x8x96xbf16>
      linalg.yield %x : bf16
    } -> tensor<1x8x2x16xbf16>
    kiln.yield %g : tensor<1x8x2x16xbf16>
  }
  %q = kiln.dispatch(%q0) {config = {strategy = "generic", threads = 256 : i64}} : (tensor<1x8x2x16xbf16>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%a: tensor<1x8x2x16xbf16>):
    %e = tensor.empty() : tensor<1x2x8x16xbf16>
    %t = linalg.transpose ins(%a : tensor<1x8x2x16xbf16>) outs(%e : tensor<1x2x8x16xbf16>) permutation = [0, 2, 1, 3]
    kiln.yield %t : tensor<1x2x8x16xbf16>
  }
  %k0 = kiln.dispatch(%qkv) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x8x96xbf16>) -> tensor<1x8x2x16xbf16> {
  ^bb0(%a: tensor<1x8x96xbf16>):
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %c32 = arith.constant 32 : index
    %e = tensor.empty() : tensor<1x8x2x16xbf16>
    %g = linalg.generic {indexing_maps = [#id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x8x2x16xbf16>) {
    ^bb0(%out: bf16):
      %s = linalg.index 1 : index
      %h = linalg.index 2 : index
      %d = linalg.index 3 : index
      %hd = arith.muli %h, %c16 : index
      %c = arith.addi %hd, %d : index
      %col = arith.addi %c, %c32 : index
      %x = tensor.extract %a[%c0, %s, %col] : tensor<1x8x96xbf16>
      linalg.yield %x : bf16
    } -> tensor<1x8x2x16xbf16>
    kiln.yield %g : tensor<1x8x2x16xbf16>
  }
  %k = kiln.dispatch(%k0) {config = {strategy = "generic", threads = 256 : i64}} : (tensor<1x8x2x16xbf16>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%a: tensor<1x8x2x16xbf16>):
    %e = tensor.empty() : tensor<1x2x8x16xbf16>
    %t = linalg.transpose ins(%a : tensor<1x8x2x16xbf16>) outs(%e : tensor<1x2x8x16xbf16>) permutation = [0, 2, 1, 3]
    kiln.yield %t : tensor<1x2x8x16xbf16>
  }
  %o = kiln.dispatch(%q, %k, %v) {config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}} : (tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%a: tensor<1x2x8x16xbf16>, %b: tensor<1x2x8x16xbf16>, %c: tensor<1x2x8x16xbf16>):
    %r = kiln.attention %a, %b, %c {causal_offset = 0 : i64, scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
    kiln.yield %r : tensor<1x2x8x16xbf16>
  }
  %m = kiln.dispatch(%o) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x2x8x16xbf16>) -> tensor<1x8x2x16xbf16> {
  ^bb0(%a: tensor<1x2x8x16xbf16>):
    %e = tensor.empty() : tensor<1x8x2x16xbf16>
    %p = linalg.generic {indexing_maps = [#swap, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%a : tensor<1x2x8x16xbf16>) outs(%e : tensor<1x8x2x16xbf16>) {
    ^bb0(%in: bf16, %out: bf16):
      linalg.yield %in : bf16
    } -> tensor<1x8x2x16xbf16>
    kiln.yield %p : tensor<1x8x2x16xbf16>
  }
  return %m : tensor<1x8x2x16xbf16>
}

// -----

// COM: Near misses: a transpose that another dispatch reads too stays a
// COM: kernel (the flash dispatch would not make it dead); a consumer that
// COM: computes (a scale) is not data movement; dispatches of other
// COM: strategies are not touched.
// CHECK-LABEL: func.func @shared_and_computing
// CHECK: %[[Q:.*]] = kiln.dispatch(%arg0) {config = {strategy = "generic"
// CHECK: %[[F:.*]] = kiln.dispatch(%[[Q]], %arg1, %arg1) {config = {stages = 2 : i64, strategy = "flash-attention-mma-sync"
// CHECK: %[[S:.*]] = kiln.dispatch(%[[F]]) {config = {strategy = "elementwise"
// CHECK: return %[[S]], %[[Q]]
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @shared_and_computing(%x: tensor<1x8x2x16xbf16>, %kv: tensor<1x2x8x16xbf16>) -> (tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>) {
  %q = kiln.dispatch(%x) {config = {strategy = "generic", threads = 256 : i64}} : (tensor<1x8x2x16xbf16>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%a: tensor<1x8x2x16xbf16>):
    %e = tensor.empty() : tensor<1x2x8x16xbf16>
    %t = linalg.transpose ins(%a : tensor<1x8x2x16xbf16>) outs(%e : tensor<1x2x8x16xbf16>) permutation = [0, 2, 1, 3]
    kiln.yield %t : tensor<1x2x8x16xbf16>
  }
  %o = kiln.dispatch(%q, %kv, %kv) {config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}} : (tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%a: tensor<1x2x8x16xbf16>, %b: tensor<1x2x8x16xbf16>, %c: tensor<1x2x8x16xbf16>):
    %r = kiln.attention %a, %b, %c {scale = 2.500000e-01 : f64, softmax_type = f32} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
    kiln.yield %r : tensor<1x2x8x16xbf16>
  }
  %s = kiln.dispatch(%o) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x2x8x16xbf16>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%a: tensor<1x2x8x16xbf16>):
    %e = tensor.empty() : tensor<1x2x8x16xbf16>
    %p = linalg.generic {indexing_maps = [#id4, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%a : tensor<1x2x8x16xbf16>) outs(%e : tensor<1x2x8x16xbf16>) {
    ^bb0(%in: bf16, %out: bf16):
      %y = arith.addf %in, %in : bf16
      linalg.yield %y : bf16
    } -> tensor<1x2x8x16xbf16>
    kiln.yield %p : tensor<1x2x8x16xbf16>
  }
  return %s, %q : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>
}

// -----

// COM: LLaMA's rotary embeddings of q and k (generics that compute each
// COM: element from the projection and the cos/sin tables): the mma.sync
// COM: flash kernel evaluates them where it loads its tiles, so their
// COM: dispatches move into it; the projection and the tables, read by
// COM: others too, stay its inputs.
// CHECK-LABEL: func.func @rotary_into_mma_sync
// CHECK: %[[F:.*]] = kiln.dispatch(%arg1, %arg2, %arg3, %arg0, %arg4) {config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}}
// CHECK-COUNT-2: linalg.generic
// CHECK: kiln.attention
// CHECK-NOT: kiln.dispatch
// CHECK: return %[[F]]
#rid = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @rotary_into_mma_sync(%xq: tensor<1x8x2x16xf32>, %xk: tensor<1x8x2x16xf32>, %cos: tensor<1x8x8xf32>, %sin: tensor<1x8x8xf32>, %v: tensor<1x2x8x16xbf16>) -> tensor<1x2x8x16xbf16> {
  %q = kiln.dispatch(%xq, %cos, %sin) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x8x2x16xf32>, tensor<1x8x8xf32>, tensor<1x8x8xf32>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%x: tensor<1x8x2x16xf32>, %c: tensor<1x8x8xf32>, %s: tensor<1x8x8xf32>):
    %e = tensor.empty() : tensor<1x2x8x16xbf16>
    %g = linalg.generic {indexing_maps = [#rid], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x2x8x16xbf16>) {
    ^bb0(%out: bf16):
      %c0 = arith.constant 0 : index
      %c8 = arith.constant 8 : index
      %h = linalg.index 1 : index
      %p = linalg.index 2 : index
      %d = linalg.index 3 : index
      %first = arith.cmpi ult, %d, %c8 : index
      %up = arith.addi %d, %c8 : index
      %down = arith.subi %d, %c8 : index
      %partner = arith.select %first, %up, %down : index
      %angle = arith.select %first, %d, %down : index
      %self = tensor.extract %x[%c0, %p, %h, %d] : tensor<1x8x2x16xf32>
      %other = tensor.extract %x[%c0, %p, %h, %partner] : tensor<1x8x2x16xf32>
      %cv = tensor.extract %c[%c0, %p, %angle] : tensor<1x8x8xf32>
      %sv = tensor.extract %s[%c0, %p, %angle] : tensor<1x8x8xf32>
      %a = arith.mulf %self, %cv : f32
      %b = arith.mulf %other, %sv : f32
      %sub = arith.subf %a, %b : f32
      %add = arith.addf %a, %b : f32
      %r = arith.select %first, %sub, %add : f32
      %t = arith.truncf %r : f32 to bf16
      linalg.yield %t : bf16
    } -> tensor<1x2x8x16xbf16>
    kiln.yield %g : tensor<1x2x8x16xbf16>
  }
  %k = kiln.dispatch(%xk, %cos, %sin) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x8x2x16xf32>, tensor<1x8x8xf32>, tensor<1x8x8xf32>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%x: tensor<1x8x2x16xf32>, %c: tensor<1x8x8xf32>, %s: tensor<1x8x8xf32>):
    %e = tensor.empty() : tensor<1x2x8x16xbf16>
    %g = linalg.generic {indexing_maps = [#rid], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x2x8x16xbf16>) {
    ^bb0(%out: bf16):
      %c0 = arith.constant 0 : index
      %c8 = arith.constant 8 : index
      %h = linalg.index 1 : index
      %p = linalg.index 2 : index
      %d = linalg.index 3 : index
      %first = arith.cmpi ult, %d, %c8 : index
      %up = arith.addi %d, %c8 : index
      %down = arith.subi %d, %c8 : index
      %partner = arith.select %first, %up, %down : index
      %angle = arith.select %first, %d, %down : index
      %self = tensor.extract %x[%c0, %p, %h, %d] : tensor<1x8x2x16xf32>
      %other = tensor.extract %x[%c0, %p, %h, %partner] : tensor<1x8x2x16xf32>
      %cv = tensor.extract %c[%c0, %p, %angle] : tensor<1x8x8xf32>
      %sv = tensor.extract %s[%c0, %p, %angle] : tensor<1x8x8xf32>
      %a = arith.mulf %self, %cv : f32
      %b = arith.mulf %other, %sv : f32
      %sub = arith.subf %a, %b : f32
      %add = arith.addf %a, %b : f32
      %r = arith.select %first, %sub, %add : f32
      %t = arith.truncf %r : f32 to bf16
      linalg.yield %t : bf16
    } -> tensor<1x2x8x16xbf16>
    kiln.yield %g : tensor<1x2x8x16xbf16>
  }
  %o = kiln.dispatch(%q, %k, %v) {config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}} : (tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>) -> tensor<1x2x8x16xbf16> {
  ^bb0(%a: tensor<1x2x8x16xbf16>, %b: tensor<1x2x8x16xbf16>, %c: tensor<1x2x8x16xbf16>):
    %r = kiln.attention %a, %b, %c {scale = 2.500000e-01 : f64} : tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16>, tensor<1x2x8x16xbf16> -> tensor<1x2x8x16xbf16>
    kiln.yield %r : tensor<1x2x8x16xbf16>
  }
  return %o : tensor<1x2x8x16xbf16>
}

// -----

// COM: The Hopper kernel loads K and V with TMA, which cannot compute: a
// COM: rotary producer of K stays a dispatch of its own (of Q it would
// COM: move in: its threads load Q). So does, for the mma.sync kernel, a
// COM: producer that computes with math functions (too costly to
// COM: recompute per tile).
// CHECK-LABEL: func.func @computed_producers_that_stay
// CHECK: kiln.dispatch(%arg0) {config = {strategy = "elementwise"
// CHECK: kiln.dispatch(%arg1, %{{.*}}, %arg1) {config = {{{.*}}strategy = "flash-attention-wgmma"
// CHECK: kiln.dispatch(%arg0) {config = {strategy = "elementwise"
// CHECK: kiln.dispatch(%{{.*}}, %arg1, %arg1) {config = {{{.*}}strategy = "flash-attention-mma-sync"
#cid = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @computed_producers_that_stay(%x: tensor<1x2x64x64xf32>, %kv: tensor<1x2x64x64xbf16>) -> (tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>) {
  %q = kiln.dispatch(%x) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x2x64x64xf32>) -> tensor<1x2x64x64xbf16> {
  ^bb0(%a: tensor<1x2x64x64xf32>):
    %e = tensor.empty() : tensor<1x2x64x64xbf16>
    %g = linalg.generic {indexing_maps = [#cid], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x2x64x64xbf16>) {
    ^bb0(%out: bf16):
      %i0 = linalg.index 0 : index
      %i1 = linalg.index 1 : index
      %i2 = linalg.index 2 : index
      %i3 = linalg.index 3 : index
      %v = tensor.extract %a[%i0, %i1, %i2, %i3] : tensor<1x2x64x64xf32>
      %w = arith.mulf %v, %v : f32
      %t = arith.truncf %w : f32 to bf16
      linalg.yield %t : bf16
    } -> tensor<1x2x64x64xbf16>
    kiln.yield %g : tensor<1x2x64x64xbf16>
  }
  %o = kiln.dispatch(%kv, %q, %kv) {config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 64, 64>}} : (tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>) -> tensor<1x2x64x64xbf16> {
  ^bb0(%a: tensor<1x2x64x64xbf16>, %b: tensor<1x2x64x64xbf16>, %c: tensor<1x2x64x64xbf16>):
    %r = kiln.attention %a, %b, %c {scale = 1.250000e-01 : f64} : tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16> -> tensor<1x2x64x64xbf16>
    kiln.yield %r : tensor<1x2x64x64xbf16>
  }
  %q2 = kiln.dispatch(%x) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x2x64x64xf32>) -> tensor<1x2x64x64xbf16> {
  ^bb0(%a: tensor<1x2x64x64xf32>):
    %e = tensor.empty() : tensor<1x2x64x64xbf16>
    %g = linalg.generic {indexing_maps = [#cid], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x2x64x64xbf16>) {
    ^bb0(%out: bf16):
      %i0 = linalg.index 0 : index
      %i1 = linalg.index 1 : index
      %i2 = linalg.index 2 : index
      %i3 = linalg.index 3 : index
      %v = tensor.extract %a[%i0, %i1, %i2, %i3] : tensor<1x2x64x64xf32>
      %w = math.exp %v : f32
      %t = arith.truncf %w : f32 to bf16
      linalg.yield %t : bf16
    } -> tensor<1x2x64x64xbf16>
    kiln.yield %g : tensor<1x2x64x64xbf16>
  }
  %o2 = kiln.dispatch(%q2, %kv, %kv) {config = {stages = 2 : i64, strategy = "flash-attention-mma-sync", tile = array<i64: 16, 64>}} : (tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>) -> tensor<1x2x64x64xbf16> {
  ^bb0(%a: tensor<1x2x64x64xbf16>, %b: tensor<1x2x64x64xbf16>, %c: tensor<1x2x64x64xbf16>):
    %r = kiln.attention %a, %b, %c {scale = 1.250000e-01 : f64} : tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16> -> tensor<1x2x64x64xbf16>
    kiln.yield %r : tensor<1x2x64x64xbf16>
  }
  return %o, %o2 : tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>
}

// -----

// COM: The Hopper kernel's threads load Q (once per block): a rotary
// COM: producer of Q moves into its dispatch.
// CHECK-LABEL: func.func @computed_query_into_wgmma
// CHECK: %[[F:.*]] = kiln.dispatch(%arg0, %arg1) {config = {{{.*}}strategy = "flash-attention-wgmma"
// CHECK: linalg.generic
// CHECK: kiln.attention
// CHECK-NOT: kiln.dispatch
// CHECK: return %[[F]]
#qid = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @computed_query_into_wgmma(%x: tensor<1x2x64x64xf32>, %kv: tensor<1x2x64x64xbf16>) -> tensor<1x2x64x64xbf16> {
  %q = kiln.dispatch(%x) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<1x2x64x64xf32>) -> tensor<1x2x64x64xbf16> {
  ^bb0(%a: tensor<1x2x64x64xf32>):
    %e = tensor.empty() : tensor<1x2x64x64xbf16>
    %g = linalg.generic {indexing_maps = [#qid], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x2x64x64xbf16>) {
    ^bb0(%out: bf16):
      %i0 = linalg.index 0 : index
      %i1 = linalg.index 1 : index
      %i2 = linalg.index 2 : index
      %i3 = linalg.index 3 : index
      %v = tensor.extract %a[%i0, %i1, %i2, %i3] : tensor<1x2x64x64xf32>
      %w = arith.mulf %v, %v : f32
      %t = arith.truncf %w : f32 to bf16
      linalg.yield %t : bf16
    } -> tensor<1x2x64x64xbf16>
    kiln.yield %g : tensor<1x2x64x64xbf16>
  }
  %o = kiln.dispatch(%q, %kv, %kv) {config = {stages = 2 : i64, strategy = "flash-attention-wgmma", tile = array<i64: 64, 64>}} : (tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>) -> tensor<1x2x64x64xbf16> {
  ^bb0(%a: tensor<1x2x64x64xbf16>, %b: tensor<1x2x64x64xbf16>, %c: tensor<1x2x64x64xbf16>):
    %r = kiln.attention %a, %b, %c {scale = 1.250000e-01 : f64} : tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16> -> tensor<1x2x64x64xbf16>
    kiln.yield %r : tensor<1x2x64x64xbf16>
  }
  return %o : tensor<1x2x64x64xbf16>
}
