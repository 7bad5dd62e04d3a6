// RUN: kiln-opt %s --split-input-file --kiln-fuse-weight-decode="strategies=cpu-gemm,gemm-small-m" | FileCheck %s

// COM: A dispatch that decodes 4-bit weights from constants alone (packed
// COM: integers and scales, read at computed indices) and that a GEMM
// COM: dispatch reads once moves into the GEMM's dispatch, at the GEMM's
// COM: place, with its configuration; the constants become its operands.
// CHECK-LABEL: func.func @decode_into_gemm
// CHECK-SAME: (%[[X:.*]]: tensor<4x64xf32>)
// CHECK-DAG: %[[Q:.*]] = arith.constant dense<{{.*}}> : tensor<8x64xi8>
// CHECK-DAG: %[[S:.*]] = arith.constant dense<{{.*}}> : tensor<8xf32>
// CHECK: %[[R:.*]] = kiln.dispatch(%[[Q]], %[[S]], %[[X]]) {config = {register_block = array<i64: 6, 16>, strategy = "cpu-gemm", vector_width = 16 : i64}}
// CHECK-NEXT: ^bb0(%[[QA:.*]]: tensor<8x64xi8>, %[[SA:.*]]: tensor<8xf32>, %[[XA:.*]]: tensor<4x64xf32>):
// CHECK: %[[W:.*]] = linalg.generic
// CHECK: tensor.extract %[[QA]]
// CHECK: tensor.extract %[[SA]]
// CHECK: linalg.matmul ins(%[[XA]], %[[W]] : tensor<4x64xf32>, tensor<64x8xf32>)
// CHECK-NOT: kiln.dispatch
// CHECK: return %[[R]]
#id = affine_map<(k, n) -> (k, n)>
func.func @decode_into_gemm(%x: tensor<4x64xf32>) -> tensor<4x8xf32> {
  %q = arith.constant dense<17> : tensor<8x64xi8>
  %s = arith.constant dense<0.5> : tensor<8xf32>
  %w = kiln.dispatch(%q, %s) {config = {strategy = "cpu-vector", vector_width = 16 : i64}} : (tensor<8x64xi8>, tensor<8xf32>) -> tensor<64x8xf32> {
  ^bb0(%qa: tensor<8x64xi8>, %sa: tensor<8xf32>):
    %e = tensor.empty() : tensor<64x8xf32>
    %d = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel"]} outs(%e : tensor<64x8xf32>) {
    ^bb0(%out: f32):
      %k = linalg.index 0 : index
      %n = linalg.index 1 : index
      %byte = tensor.extract %qa[%n, %k] : tensor<8x64xi8>
      %scale = tensor.extract %sa[%n] : tensor<8xf32>
      %c15 = arith.constant 15 : i8
      %v = arith.andi %byte, %c15 : i8
      %f = arith.uitofp %v : i8 to f32
      %r = arith.mulf %f, %scale : f32
      linalg.yield %r : f32
    } -> tensor<64x8xf32>
    kiln.yield %d : tensor<64x8xf32>
  }
  %r = kiln.dispatch(%x, %w) {config = {register_block = array<i64: 6, 16>, strategy = "cpu-gemm", vector_width = 16 : i64}} : (tensor<4x64xf32>, tensor<64x8xf32>) -> tensor<4x8xf32> {
  ^bb0(%a: tensor<4x64xf32>, %b: tensor<64x8xf32>):
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<4x8xf32>
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
    %m = linalg.matmul ins(%a, %b : tensor<4x64xf32>, tensor<64x8xf32>) outs(%f : tensor<4x8xf32>) -> tensor<4x8xf32>
    kiln.yield %m : tensor<4x8xf32>
  }
  return %r : tensor<4x8xf32>
}

// -----

// COM: Near misses stay apart: a decoding that an activation feeds (not
// COM: constants alone), one that two GEMMs read, and a GEMM whose strategy
// COM: does not decode operands (gemm-mma-sync).
// CHECK-LABEL: func.func @near_misses
// CHECK-COUNT-5: kiln.dispatch
// CHECK-NOT: kiln.dispatch
#id = affine_map<(k, n) -> (k, n)>
func.func @near_misses(%x: tensor<4x64xf32>, %y: tensor<8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  %q = arith.constant dense<17> : tensor<8x64xi8>
  %s = arith.constant dense<0.5> : tensor<8xf32>
  %fromActivation = kiln.dispatch(%q, %y) {config = {strategy = "cpu-vector", vector_width = 16 : i64}} : (tensor<8x64xi8>, tensor<8xf32>) -> tensor<64x8xf32> {
  ^bb0(%qa: tensor<8x64xi8>, %sa: tensor<8xf32>):
    %e = tensor.empty() : tensor<64x8xf32>
    %d = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel"]} outs(%e : tensor<64x8xf32>) {
    ^bb0(%out: f32):
      %k = linalg.index 0 : index
      %n = linalg.index 1 : index
      %byte = tensor.extract %qa[%n, %k] : tensor<8x64xi8>
      %scale = tensor.extract %sa[%n] : tensor<8xf32>
      %f = arith.uitofp %byte : i8 to f32
      %r = arith.mulf %f, %scale : f32
      linalg.yield %r : f32
    } -> tensor<64x8xf32>
    kiln.yield %d : tensor<64x8xf32>
  }
  %shared = kiln.dispatch(%q, %s) {config = {strategy = "cpu-vector", vector_width = 16 : i64}} : (tensor<8x64xi8>, tensor<8xf32>) -> tensor<64x8xf32> {
  ^bb0(%qa: tensor<8x64xi8>, %sa: tensor<8xf32>):
    %e = tensor.empty() : tensor<64x8xf32>
    %d = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel"]} outs(%e : tensor<64x8xf32>) {
    ^bb0(%out: f32):
      %k = linalg.index 0 : index
      %n = linalg.index 1 : index
      %byte = tensor.extract %qa[%n, %k] : tensor<8x64xi8>
      %scale = tensor.extract %sa[%n] : tensor<8xf32>
      %f = arith.uitofp %byte : i8 to f32
      %r = arith.mulf %f, %scale : f32
      linalg.yield %r : f32
    } -> tensor<64x8xf32>
    kiln.yield %d : tensor<64x8xf32>
  }
  %r1 = kiln.dispatch(%x, %fromActivation) {config = {register_block = array<i64: 6, 16>, strategy = "cpu-gemm", vector_width = 16 : i64}} : (tensor<4x64xf32>, tensor<64x8xf32>) -> tensor<4x8xf32> {
  ^bb0(%a: tensor<4x64xf32>, %b: tensor<64x8xf32>):
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<4x8xf32>
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
    %m = linalg.matmul ins(%a, %b : tensor<4x64xf32>, tensor<64x8xf32>) outs(%f : tensor<4x8xf32>) -> tensor<4x8xf32>
    kiln.yield %m : tensor<4x8xf32>
  }
  %r2 = kiln.dispatch(%x, %shared) {config = {register_block = array<i64: 6, 16>, strategy = "cpu-gemm", vector_width = 16 : i64}} : (tensor<4x64xf32>, tensor<64x8xf32>) -> tensor<4x8xf32> {
  ^bb0(%a: tensor<4x64xf32>, %b: tensor<64x8xf32>):
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<4x8xf32>
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
    %m = linalg.matmul ins(%a, %b : tensor<4x64xf32>, tensor<64x8xf32>) outs(%f : tensor<4x8xf32>) -> tensor<4x8xf32>
    kiln.yield %m : tensor<4x8xf32>
  }
  %r3 = kiln.dispatch(%x, %shared) {config = {stages = 3 : i64, strategy = "gemm-mma-sync", tile = array<i64: 32, 32, 32>, warps = array<i64: 2, 2>}} : (tensor<4x64xf32>, tensor<64x8xf32>) -> tensor<4x8xf32> {
  ^bb0(%a: tensor<4x64xf32>, %b: tensor<64x8xf32>):
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<4x8xf32>
    %f = linalg.fill ins(%zero : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
    %m = linalg.matmul ins(%a, %b : tensor<4x64xf32>, tensor<64x8xf32>) outs(%f : tensor<4x8xf32>) -> tensor<4x8xf32>
    kiln.yield %m : tensor<4x8xf32>
  }
  return %r1, %r2, %r3 : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}
