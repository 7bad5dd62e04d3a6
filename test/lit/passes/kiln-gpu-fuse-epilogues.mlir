// RUN: kiln-opt %s --split-input-file --kiln-gpu-fuse-epilogues | FileCheck %s

// COM: A tensor-core GEMM whose only user adds a broadcast bias, applies
// COM: ReLU and narrows to bf16: one dispatch, at the consumer's place,
// COM: with the GEMM's configuration; the bias becomes its operand.
// CHECK-LABEL: func.func @bias_relu_cast
// CHECK-SAME: (%[[X:.*]]: tensor<64x32xbf16>, %[[W:.*]]: tensor<32x48xbf16>, %[[BIAS:.*]]: tensor<48xf32>)
// CHECK: %[[R:.*]] = kiln.dispatch(%[[X]], %[[W]], %[[BIAS]]) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}} : (tensor<64x32xbf16>, tensor<32x48xbf16>, tensor<48xf32>) -> tensor<64x48xbf16> {
// CHECK-NEXT: ^bb0(%[[A:.*]]: tensor<64x32xbf16>, %[[B:.*]]: tensor<32x48xbf16>, %[[C:.*]]: tensor<48xf32>):
// CHECK: %[[F:.*]] = linalg.fill
// CHECK: %[[M:.*]] = linalg.matmul ins(%[[A]], %[[B]] : {{.*}}) outs(%[[F]] : tensor<64x48xf32>)
// CHECK: %[[G:.*]] = linalg.generic {{.*}} ins(%[[M]], %[[C]] : tensor<64x48xf32>, tensor<48xf32>) outs(%{{.*}} : tensor<64x48xbf16>)
// CHECK: arith.maximumf
// CHECK: arith.truncf
// CHECK: kiln.yield %[[G]] : tensor<64x48xbf16>
// CHECK-NOT: kiln.dispatch
// CHECK: return %[[R]]
#id = affine_map<(m, n) -> (m, n)>
#row = affine_map<(m, n) -> (n)>
func.func @bias_relu_cast(%x: tensor<64x32xbf16>, %w: tensor<32x48xbf16>, %bias: tensor<48xf32>) -> tensor<64x48xbf16> {
  %p = kiln.dispatch(%x, %w) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}} : (tensor<64x32xbf16>, tensor<32x48xbf16>) -> tensor<64x48xf32> {
  ^bb0(%a: tensor<64x32xbf16>, %b: tensor<32x48xbf16>):
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<64x48xf32>
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<64x48xf32>) -> tensor<64x48xf32>
    %m = linalg.matmul ins(%a, %b : tensor<64x32xbf16>, tensor<32x48xbf16>) outs(%f : tensor<64x48xf32>) -> tensor<64x48xf32>
    kiln.yield %m : tensor<64x48xf32>
  }
  %r = kiln.dispatch(%p, %bias) {config = {strategy = "elementwise", threads = 256 : i64, vector_width = 4 : i64}} : (tensor<64x48xf32>, tensor<48xf32>) -> tensor<64x48xbf16> {
  ^bb0(%acc: tensor<64x48xf32>, %c: tensor<48xf32>):
    %e = tensor.empty() : tensor<64x48xbf16>
    %g = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%acc, %c : tensor<64x48xf32>, tensor<48xf32>) outs(%e : tensor<64x48xbf16>) {
    ^bb0(%v: f32, %bv: f32, %o: bf16):
      %s = arith.addf %v, %bv : f32
      %zero = arith.constant 0.0 : f32
      %relu = arith.maximumf %s, %zero : f32
      %t = arith.truncf %relu : f32 to bf16
      linalg.yield %t : bf16
    } -> tensor<64x48xbf16>
    kiln.yield %g : tensor<64x48xbf16>
  }
  return %r : tensor<64x48xbf16>
}

// -----

// COM: Nothing fuses when the product has a second user (an output), when
// COM: the consumer reads it through another map (a transpose), when the
// COM: consumer reduces, or when the GEMM's strategy has no epilogue
// COM: (gemm-simt).
// CHECK-LABEL: func.func @not_fused
// CHECK-COUNT-8: kiln.dispatch
// CHECK-NOT: kiln.dispatch
#id = affine_map<(m, n) -> (m, n)>
#t = affine_map<(m, n) -> (n, m)>
#red = affine_map<(m, n) -> (m)>
func.func @not_fused(%x: tensor<64x32xbf16>, %w: tensor<32x64xbf16>) -> (tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64xf32>, tensor<64x64xf32>) {
  %p0 = kiln.dispatch(%x, %w) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}} : (tensor<64x32xbf16>, tensor<32x64xbf16>) -> tensor<64x64xf32> {
  ^bb0(%a: tensor<64x32xbf16>, %b: tensor<32x64xbf16>):
    %e = tensor.empty() : tensor<64x64xf32>
    %m = linalg.matmul ins(%a, %b : tensor<64x32xbf16>, tensor<32x64xbf16>) outs(%e : tensor<64x64xf32>) -> tensor<64x64xf32>
    kiln.yield %m : tensor<64x64xf32>
  }
  %r0 = kiln.dispatch(%p0) {config = {strategy = "elementwise"}} : (tensor<64x64xf32>) -> tensor<64x64xf32> {
  ^bb0(%acc: tensor<64x64xf32>):
    %e = tensor.empty() : tensor<64x64xf32>
    %g = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%acc : tensor<64x64xf32>) outs(%e : tensor<64x64xf32>) {
    ^bb0(%v: f32, %o: f32):
      %n = arith.negf %v : f32
      linalg.yield %n : f32
    } -> tensor<64x64xf32>
    kiln.yield %g : tensor<64x64xf32>
  }
  %p1 = kiln.dispatch(%x, %w) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}} : (tensor<64x32xbf16>, tensor<32x64xbf16>) -> tensor<64x64xf32> {
  ^bb0(%a: tensor<64x32xbf16>, %b: tensor<32x64xbf16>):
    %e = tensor.empty() : tensor<64x64xf32>
    %m = linalg.matmul ins(%a, %b : tensor<64x32xbf16>, tensor<32x64xbf16>) outs(%e : tensor<64x64xf32>) -> tensor<64x64xf32>
    kiln.yield %m : tensor<64x64xf32>
  }
  %r1 = kiln.dispatch(%p1) {config = {strategy = "generic"}} : (tensor<64x64xf32>) -> tensor<64x64xf32> {
  ^bb0(%acc: tensor<64x64xf32>):
    %e = tensor.empty() : tensor<64x64xf32>
    %g = linalg.generic {indexing_maps = [#t, #id], iterator_types = ["parallel", "parallel"]} ins(%acc : tensor<64x64xf32>) outs(%e : tensor<64x64xf32>) {
    ^bb0(%v: f32, %o: f32):
      linalg.yield %v : f32
    } -> tensor<64x64xf32>
    kiln.yield %g : tensor<64x64xf32>
  }
  %p2 = kiln.dispatch(%x, %w) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}} : (tensor<64x32xbf16>, tensor<32x64xbf16>) -> tensor<64x64xf32> {
  ^bb0(%a: tensor<64x32xbf16>, %b: tensor<32x64xbf16>):
    %e = tensor.empty() : tensor<64x64xf32>
    %m = linalg.matmul ins(%a, %b : tensor<64x32xbf16>, tensor<32x64xbf16>) outs(%e : tensor<64x64xf32>) -> tensor<64x64xf32>
    kiln.yield %m : tensor<64x64xf32>
  }
  %r2 = kiln.dispatch(%p2) {config = {strategy = "row-reduce"}} : (tensor<64x64xf32>) -> tensor<64xf32> {
  ^bb0(%acc: tensor<64x64xf32>):
    %e = tensor.empty() : tensor<64xf32>
    %g = linalg.generic {indexing_maps = [#id, #red], iterator_types = ["parallel", "reduction"]} ins(%acc : tensor<64x64xf32>) outs(%e : tensor<64xf32>) {
    ^bb0(%v: f32, %o: f32):
      %s = arith.addf %v, %o : f32
      linalg.yield %s : f32
    } -> tensor<64xf32>
    kiln.yield %g : tensor<64xf32>
  }
  %p3 = kiln.dispatch(%x, %w) {config = {strategy = "gemm-simt"}} : (tensor<64x32xbf16>, tensor<32x64xbf16>) -> tensor<64x64xf32> {
  ^bb0(%a: tensor<64x32xbf16>, %b: tensor<32x64xbf16>):
    %e = tensor.empty() : tensor<64x64xf32>
    %m = linalg.matmul ins(%a, %b : tensor<64x32xbf16>, tensor<32x64xbf16>) outs(%e : tensor<64x64xf32>) -> tensor<64x64xf32>
    kiln.yield %m : tensor<64x64xf32>
  }
  %r3 = kiln.dispatch(%p3) {config = {strategy = "elementwise"}} : (tensor<64x64xf32>) -> tensor<64x64xf32> {
  ^bb0(%acc: tensor<64x64xf32>):
    %e = tensor.empty() : tensor<64x64xf32>
    %g = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%acc : tensor<64x64xf32>) outs(%e : tensor<64x64xf32>) {
    ^bb0(%v: f32, %o: f32):
      %n = arith.negf %v : f32
      linalg.yield %n : f32
    } -> tensor<64x64xf32>
    kiln.yield %g : tensor<64x64xf32>
  }
  return %p0, %r0, %r1, %r2, %r3 : tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64xf32>, tensor<64x64xf32>
}

// -----

// COM: A residual add (the same shape, the identity map) and an epilogue
// COM: that reads an operand the GEMM also reads: the merged dispatch
// COM: takes each value once.
// CHECK-LABEL: func.func @residual
// CHECK-SAME: (%[[X:.*]]: tensor<64x64xbf16>, %[[W:.*]]: tensor<64x64xbf16>, %[[RES:.*]]: tensor<64x64xf32>)
// CHECK: kiln.dispatch(%[[X]], %[[W]], %[[RES]]) {{.*}}strategy = "gemm-mma-sync"
// CHECK: linalg.matmul
// CHECK: linalg.generic
// CHECK: arith.addf
// CHECK-NOT: kiln.dispatch
#id = affine_map<(m, n) -> (m, n)>
func.func @residual(%x: tensor<64x64xbf16>, %w: tensor<64x64xbf16>, %res: tensor<64x64xf32>) -> tensor<64x64xf32> {
  %p = kiln.dispatch(%x, %w) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}} : (tensor<64x64xbf16>, tensor<64x64xbf16>) -> tensor<64x64xf32> {
  ^bb0(%a: tensor<64x64xbf16>, %b: tensor<64x64xbf16>):
    %e = tensor.empty() : tensor<64x64xf32>
    %m = linalg.matmul ins(%a, %b : tensor<64x64xbf16>, tensor<64x64xbf16>) outs(%e : tensor<64x64xf32>) -> tensor<64x64xf32>
    kiln.yield %m : tensor<64x64xf32>
  }
  %r = kiln.dispatch(%p, %res, %x) {config = {strategy = "elementwise"}} : (tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xbf16>) -> tensor<64x64xf32> {
  ^bb0(%acc: tensor<64x64xf32>, %rv: tensor<64x64xf32>, %xv: tensor<64x64xbf16>):
    %e = tensor.empty() : tensor<64x64xf32>
    %g = linalg.generic {indexing_maps = [#id, #id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%acc, %rv, %xv : tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xbf16>) outs(%e : tensor<64x64xf32>) {
    ^bb0(%v: f32, %r0: f32, %x0: bf16, %o: f32):
      %s = arith.addf %v, %r0 : f32
      %xe = arith.extf %x0 : bf16 to f32
      %t = arith.addf %s, %xe : f32
      linalg.yield %t : f32
    } -> tensor<64x64xf32>
    kiln.yield %g : tensor<64x64xf32>
  }
  return %r : tensor<64x64xf32>
}
