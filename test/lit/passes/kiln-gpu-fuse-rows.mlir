// RUN: kiln-opt %s --split-input-file --kiln-gpu-fuse-rows | FileCheck %s

// COM: h = x + y (read again later), a row-fused step on h, its result
// COM: cast to bf16: one dispatch reading x and y that yields the cast row
// COM: and h; the later reader of h takes the merged dispatch's second
// COM: result.
// CHECK-LABEL: func.func @residual_norm_cast
// CHECK: %[[M:.*]]:2 = kiln.dispatch(%arg0, %arg1) {config = {rows_per_block = 8 : i64, strategy = "row-fused", warps_per_row = 1 : i64}} : (tensor<6x64xf32>, tensor<6x64xf32>) -> (tensor<6x64xbf16>, tensor<6x64xf32>)
// CHECK: linalg.generic
// CHECK: arith.addf
// CHECK: linalg.generic
// CHECK: arith.mulf
// CHECK: linalg.generic
// CHECK: arith.truncf
// CHECK: kiln.yield %{{.*}}, %{{.*}} : tensor<6x64xbf16>, tensor<6x64xf32>
// CHECK: %[[LATER:.*]] = kiln.dispatch(%[[M]]#1)
// CHECK: return %[[M]]#0, %[[LATER]]
#id = affine_map<(r, d) -> (r, d)>
func.func @residual_norm_cast(%x: tensor<6x64xf32>, %y: tensor<6x64xf32>) -> (tensor<6x64xbf16>, tensor<6x64xf32>) {
  %h = kiln.dispatch(%x, %y) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<6x64xf32>, tensor<6x64xf32>) -> tensor<6x64xf32> {
  ^bb0(%a: tensor<6x64xf32>, %b: tensor<6x64xf32>):
    %e = tensor.empty() : tensor<6x64xf32>
    %s = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%a, %b : tensor<6x64xf32>, tensor<6x64xf32>) outs(%e : tensor<6x64xf32>) {
    ^bb0(%p: f32, %q: f32, %o: f32):
      %v = arith.addf %p, %q : f32
      linalg.yield %v : f32
    } -> tensor<6x64xf32>
    kiln.yield %s : tensor<6x64xf32>
  }
  %n = kiln.dispatch(%h) {config = {rows_per_block = 8 : i64, strategy = "row-fused", warps_per_row = 1 : i64}} : (tensor<6x64xf32>) -> tensor<6x64xf32> {
  ^bb0(%a: tensor<6x64xf32>):
    %e = tensor.empty() : tensor<6x64xf32>
    %s = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<6x64xf32>) outs(%e : tensor<6x64xf32>) {
    ^bb0(%p: f32, %o: f32):
      %v = arith.mulf %p, %p : f32
      linalg.yield %v : f32
    } -> tensor<6x64xf32>
    kiln.yield %s : tensor<6x64xf32>
  }
  %c = kiln.dispatch(%n) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<6x64xf32>) -> tensor<6x64xbf16> {
  ^bb0(%a: tensor<6x64xf32>):
    %e = tensor.empty() : tensor<6x64xbf16>
    %s = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<6x64xf32>) outs(%e : tensor<6x64xbf16>) {
    ^bb0(%p: f32, %o: bf16):
      %v = arith.truncf %p : f32 to bf16
      linalg.yield %v : bf16
    } -> tensor<6x64xbf16>
    kiln.yield %s : tensor<6x64xbf16>
  }
  %later = kiln.dispatch(%h) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<6x64xf32>) -> tensor<6x64xf32> {
  ^bb0(%a: tensor<6x64xf32>):
    %e = tensor.empty() : tensor<6x64xf32>
    %s = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<6x64xf32>) outs(%e : tensor<6x64xf32>) {
    ^bb0(%p: f32, %o: f32):
      %v = arith.addf %p, %p : f32
      linalg.yield %v : f32
    } -> tensor<6x64xf32>
    kiln.yield %s : tensor<6x64xf32>
  }
  return %c, %later : tensor<6x64xbf16>, tensor<6x64xf32>
}

// -----

// COM: h is read before the row-fused dispatch too: the merged dispatch
// COM: would come after that reader, so the producer stays; the cast still
// COM: moves in.
// CHECK-LABEL: func.func @early_reader
// CHECK: %[[H:.*]] = kiln.dispatch(%arg0, %arg1) {config = {{{.*}}strategy = "elementwise"
// CHECK: %[[EARLY:.*]] = kiln.dispatch(%[[H]]) {config = {{{.*}}strategy = "elementwise"
// CHECK: %[[N:.*]] = kiln.dispatch(%[[H]]) {config = {{{.*}}strategy = "row-fused"{{.*}}} : (tensor<6x64xf32>) -> tensor<6x64xbf16>
// CHECK: return %[[N]], %[[EARLY]]
#id2 = affine_map<(r, d) -> (r, d)>
func.func @early_reader(%x: tensor<6x64xf32>, %y: tensor<6x64xf32>) -> (tensor<6x64xbf16>, tensor<6x64xf32>) {
  %h = kiln.dispatch(%x, %y) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<6x64xf32>, tensor<6x64xf32>) -> tensor<6x64xf32> {
  ^bb0(%a: tensor<6x64xf32>, %b: tensor<6x64xf32>):
    %e = tensor.empty() : tensor<6x64xf32>
    %s = linalg.generic {indexing_maps = [#id2, #id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%a, %b : tensor<6x64xf32>, tensor<6x64xf32>) outs(%e : tensor<6x64xf32>) {
    ^bb0(%p: f32, %q: f32, %o: f32):
      %v = arith.addf %p, %q : f32
      linalg.yield %v : f32
    } -> tensor<6x64xf32>
    kiln.yield %s : tensor<6x64xf32>
  }
  %early = kiln.dispatch(%h) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<6x64xf32>) -> tensor<6x64xf32> {
  ^bb0(%a: tensor<6x64xf32>):
    %e = tensor.empty() : tensor<6x64xf32>
    %s = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<6x64xf32>) outs(%e : tensor<6x64xf32>) {
    ^bb0(%p: f32, %o: f32):
      %v = arith.addf %p, %p : f32
      linalg.yield %v : f32
    } -> tensor<6x64xf32>
    kiln.yield %s : tensor<6x64xf32>
  }
  %n = kiln.dispatch(%h) {config = {rows_per_block = 8 : i64, strategy = "row-fused", warps_per_row = 1 : i64}} : (tensor<6x64xf32>) -> tensor<6x64xf32> {
  ^bb0(%a: tensor<6x64xf32>):
    %e = tensor.empty() : tensor<6x64xf32>
    %s = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<6x64xf32>) outs(%e : tensor<6x64xf32>) {
    ^bb0(%p: f32, %o: f32):
      %v = arith.mulf %p, %p : f32
      linalg.yield %v : f32
    } -> tensor<6x64xf32>
    kiln.yield %s : tensor<6x64xf32>
  }
  %c = kiln.dispatch(%n) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<6x64xf32>) -> tensor<6x64xbf16> {
  ^bb0(%a: tensor<6x64xf32>):
    %e = tensor.empty() : tensor<6x64xbf16>
    %s = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<6x64xf32>) outs(%e : tensor<6x64xbf16>) {
    ^bb0(%p: f32, %o: bf16):
      %v = arith.truncf %p : f32 to bf16
      linalg.yield %v : bf16
    } -> tensor<6x64xbf16>
    kiln.yield %s : tensor<6x64xbf16>
  }
  return %c, %early : tensor<6x64xbf16>, tensor<6x64xf32>
}

// -----

// COM: An exporter's RMSNorm after dispatch formation: a row-reduce sum of
// COM: squares, a per-row step (mean, + eps, 1 / sqrt) and the row scaled
// COM: by it (read broadcast along the row): one row-fused dispatch, its
// COM: configuration from the row length and the row-reduce's block.
// CHECK-LABEL: func.func @decomposed_rms_norm
// CHECK: %[[R:.*]] = kiln.dispatch(%{{.*}}, %arg0) {config = {rows_per_block = 4 : i64, strategy = "row-fused", warps_per_row = 2 : i64}} : (tensor<6x1x2048xf32>, tensor<6x2048xf32>) -> tensor<6x2048xf32>
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: math.sqrt
// CHECK: arith.mulf
// CHECK: kiln.yield
// CHECK-NOT: kiln.dispatch
// CHECK: return %[[R]]
#row3 = affine_map<(r, o, d) -> (r, o, d)>
#red3 = affine_map<(r, o, d) -> (r, o)>
#id2 = affine_map<(r, o) -> (r, o)>
#row2 = affine_map<(r, d) -> (r, d)>
#bcast = affine_map<(r, d) -> (r, 0)>
func.func @decomposed_rms_norm(%x: tensor<6x2048xf32>) -> tensor<6x2048xf32> {
  %xe = tensor.expand_shape %x [[0, 1], [2]] output_shape [6, 1, 2048] : tensor<6x2048xf32> into tensor<6x1x2048xf32>
  %s = kiln.dispatch(%xe) {config = {rows_per_block = 8 : i64, strategy = "row-reduce", warp = 32 : i64}} : (tensor<6x1x2048xf32>) -> tensor<6x1xf32> {
  ^bb0(%a: tensor<6x1x2048xf32>):
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<6x1xf32>
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<6x1xf32>) -> tensor<6x1xf32>
    %r = linalg.generic {indexing_maps = [#row3, #red3], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a : tensor<6x1x2048xf32>) outs(%f : tensor<6x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      %sq = arith.mulf %in, %in : f32
      %acc = arith.addf %out, %sq : f32
      linalg.yield %acc : f32
    } -> tensor<6x1xf32>
    kiln.yield %r : tensor<6x1xf32>
  }
  %inv = kiln.dispatch(%s) {config = {strategy = "generic", threads = 256 : i64}} : (tensor<6x1xf32>) -> tensor<6x1xf32> {
  ^bb0(%a: tensor<6x1xf32>):
    %n = arith.constant 2048.0 : f32
    %eps = arith.constant 1.0e-6 : f32
    %one = arith.constant 1.0 : f32
    %e = tensor.empty() : tensor<6x1xf32>
    %r = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<6x1xf32>) outs(%e : tensor<6x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      %m = arith.divf %in, %n : f32
      %me = arith.addf %m, %eps : f32
      %sq = math.sqrt %me : f32
      %i = arith.divf %one, %sq : f32
      linalg.yield %i : f32
    } -> tensor<6x1xf32>
    kiln.yield %r : tensor<6x1xf32>
  }
  %y = kiln.dispatch(%x, %inv) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<6x2048xf32>, tensor<6x1xf32>) -> tensor<6x2048xf32> {
  ^bb0(%a: tensor<6x2048xf32>, %b: tensor<6x1xf32>):
    %e = tensor.empty() : tensor<6x2048xf32>
    %r = linalg.generic {indexing_maps = [#row2, #bcast, #row2], iterator_types = ["parallel", "parallel"]} ins(%a, %b : tensor<6x2048xf32>, tensor<6x1xf32>) outs(%e : tensor<6x2048xf32>) {
    ^bb0(%p: f32, %q: f32, %out: f32):
      %v = arith.mulf %p, %q : f32
      linalg.yield %v : f32
    } -> tensor<6x2048xf32>
    kiln.yield %r : tensor<6x2048xf32>
  }
  return %y : tensor<6x2048xf32>
}

// -----

// COM: The per-row value read by another dispatch too: nothing merges.
// CHECK-LABEL: func.func @per_row_value_read_twice
// CHECK: strategy = "row-reduce"
// CHECK: strategy = "elementwise"
#row2 = affine_map<(r, d) -> (r, d)>
#red2 = affine_map<(r, d) -> (r)>
#bcast = affine_map<(r, d) -> (r)>
func.func @per_row_value_read_twice(%x: tensor<6x2048xf32>) -> (tensor<6x2048xf32>, tensor<6xf32>) {
  %s = kiln.dispatch(%x) {config = {rows_per_block = 8 : i64, strategy = "row-reduce", warp = 32 : i64}} : (tensor<6x2048xf32>) -> tensor<6xf32> {
  ^bb0(%a: tensor<6x2048xf32>):
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<6xf32>
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<6xf32>) -> tensor<6xf32>
    %r = linalg.generic {indexing_maps = [#row2, #red2], iterator_types = ["parallel", "reduction"]} ins(%a : tensor<6x2048xf32>) outs(%f : tensor<6xf32>) {
    ^bb0(%in: f32, %out: f32):
      %acc = arith.addf %out, %in : f32
      linalg.yield %acc : f32
    } -> tensor<6xf32>
    kiln.yield %r : tensor<6xf32>
  }
  %y = kiln.dispatch(%x, %s) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<6x2048xf32>, tensor<6xf32>) -> tensor<6x2048xf32> {
  ^bb0(%a: tensor<6x2048xf32>, %b: tensor<6xf32>):
    %e = tensor.empty() : tensor<6x2048xf32>
    %r = linalg.generic {indexing_maps = [#row2, #bcast, #row2], iterator_types = ["parallel", "parallel"]} ins(%a, %b : tensor<6x2048xf32>, tensor<6xf32>) outs(%e : tensor<6x2048xf32>) {
    ^bb0(%p: f32, %q: f32, %out: f32):
      %v = arith.subf %p, %q : f32
      linalg.yield %v : f32
    } -> tensor<6x2048xf32>
    kiln.yield %r : tensor<6x2048xf32>
  }
  return %y, %s : tensor<6x2048xf32>, tensor<6xf32>
}
