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
