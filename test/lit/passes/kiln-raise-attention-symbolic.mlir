// RUN: kiln-opt %s -split-input-file --kiln-raise-attention=symbolic-dims=true | FileCheck %s
// RUN: kiln-opt %s -split-input-file --kiln-raise-attention | FileCheck %s --check-prefix=STATIC
// RUN: kiln-opt %s -split-input-file --kiln-raise-attention="symbolic-dims=true symbolic-min-head=8 symbolic-max-head=8 symbolic-head-multiple=8" | FileCheck %s
// COM: A target whose kernel takes heads of at least 16, at most 4, or
// COM: multiples of 16 only: the symbolic chains (heads of 8) are left alone.
// RUN: kiln-opt %s -split-input-file --kiln-raise-attention="symbolic-dims=true symbolic-min-head=16" | FileCheck %s --check-prefix=STATIC
// RUN: kiln-opt %s -split-input-file --kiln-raise-attention="symbolic-dims=true symbolic-max-head=4" | FileCheck %s --check-prefix=STATIC
// RUN: kiln-opt %s -split-input-file --kiln-raise-attention="symbolic-dims=true symbolic-head-multiple=16" | FileCheck %s --check-prefix=STATIC

// COM: Symbolic batch and sequence (a dynamic export), for a target whose
// COM: attention kernel takes them: q and kT scaled, a mask computed at run
// COM: time added (it cannot be judged as a constant, so it is the bias);
// COM: kT, a transpose of [B, S, H, D], becomes one transpose with symbolic
// COM: sizes. The scores' own tensor.dim readers (sizing the next step's
// COM: init, one of them twice) are not uses that keep the chain: they go
// COM: with it. Without the option the chain is left alone.
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> (0)>
#mask = affine_map<(d0, d1, d2, d3) -> (d0, 0, d2, d3)>
// CHECK-LABEL: func.func @dynamic_sdpa
// CHECK-SAME: attributes {kiln.raised = {attention = 1 : i64}}
// CHECK-DAG: %[[B:.*]] = tensor.dim %arg1, %c0
// CHECK-DAG: %[[S:.*]] = tensor.dim %arg1, %c1
// CHECK: %[[E:.*]] = tensor.empty(%[[B]], %[[S]]) : tensor<?x2x?x8xf32>
// CHECK: %[[K:.*]] = linalg.transpose ins(%arg1 : tensor<?x?x2x8xf32>) outs(%[[E]] : tensor<?x2x?x8xf32>) permutation = [0, 2, 1, 3]
// CHECK: %[[O:.*]] = kiln.attention %arg0, %[[K]], %arg2, %arg3 {scale = 0.1249999{{[0-9]+}} : f64}
// CHECK-SAME: : tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x1x?x?xf32> -> tensor<?x2x?x8xf32>
// CHECK-NOT: kiln.softmax
// CHECK-NOT: kiln.matmul
// CHECK-NOT: tensor.empty
// CHECK: return %[[O]]
// STATIC-LABEL: func.func @dynamic_sdpa
// STATIC-NOT: kiln.attention
// STATIC: kiln.softmax
func.func @dynamic_sdpa(%q: tensor<?x2x?x8xf32>, %kbshd: tensor<?x?x2x8xf32>, %v: tensor<?x2x?x8xf32>, %m: tensor<?x1x?x?xf32>) -> tensor<?x2x?x8xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %b = tensor.dim %q, %c0 : tensor<?x2x?x8xf32>
  %s = tensor.dim %q, %c2 : tensor<?x2x?x8xf32>
  %half = arith.constant dense<0.35355339> : tensor<1xf32>
  %e0 = tensor.empty(%b, %s) : tensor<?x2x8x?xf32>
  %kt = linalg.transpose ins(%kbshd : tensor<?x?x2x8xf32>) outs(%e0 : tensor<?x2x8x?xf32>) permutation = [0, 2, 3, 1]
  %e1 = tensor.empty(%b, %s) : tensor<?x2x?x8xf32>
  %qs = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%q, %half : tensor<?x2x?x8xf32>, tensor<1xf32>) outs(%e1 : tensor<?x2x?x8xf32>) {
  ^bb0(%a: f32, %x: f32, %o: f32):
    %r = arith.mulf %a, %x : f32
    linalg.yield %r : f32
  } -> tensor<?x2x?x8xf32>
  %ks = linalg.generic {indexing_maps = [#id, #scalar, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%kt, %half : tensor<?x2x8x?xf32>, tensor<1xf32>) outs(%e0 : tensor<?x2x8x?xf32>) {
  ^bb0(%a: f32, %x: f32, %o: f32):
    %r = arith.mulf %a, %x : f32
    linalg.yield %r : f32
  } -> tensor<?x2x8x?xf32>
  %sc = kiln.matmul %qs, %ks : tensor<?x2x?x8xf32>, tensor<?x2x8x?xf32> -> tensor<?x2x?x?xf32>
  %sb = tensor.dim %sc, %c0 : tensor<?x2x?x?xf32>
  %sl = tensor.dim %sc, %c2 : tensor<?x2x?x?xf32>
  %e2 = tensor.empty(%sb, %sl, %sl) : tensor<?x2x?x?xf32>
  %sm = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%sc, %m : tensor<?x2x?x?xf32>, tensor<?x1x?x?xf32>) outs(%e2 : tensor<?x2x?x?xf32>) {
  ^bb0(%a: f32, %x: f32, %o: f32):
    %r = arith.addf %a, %x : f32
    linalg.yield %r : f32
  } -> tensor<?x2x?x?xf32>
  %p = kiln.softmax %sm {axis = 3 : i64} : tensor<?x2x?x?xf32>
  %o = kiln.matmul %p, %v : tensor<?x2x?x?xf32>, tensor<?x2x?x8xf32> -> tensor<?x2x?x8xf32>
  return %o : tensor<?x2x?x8xf32>
}

// -----

// COM: A Where mask with symbolic dims would need its condition turned into
// COM: a bias tensor over symbolic shapes: not raised (yet).
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#cond = affine_map<(d0, d1, d2, d3) -> (d0, 0, d2, d3)>
// CHECK-LABEL: func.func @dynamic_where_mask
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @dynamic_where_mask(%q: tensor<?x2x?x8xf32>, %kt: tensor<?x2x8x?xf32>, %v: tensor<?x2x?x8xf32>, %keep: tensor<?x1x?x?xi1>) -> tensor<?x2x?x8xf32> {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %b = tensor.dim %q, %c0 : tensor<?x2x?x8xf32>
  %s = tensor.dim %q, %c2 : tensor<?x2x?x8xf32>
  %sc = kiln.matmul %q, %kt : tensor<?x2x?x8xf32>, tensor<?x2x8x?xf32> -> tensor<?x2x?x?xf32>
  %e2 = tensor.empty(%b, %s, %s) : tensor<?x2x?x?xf32>
  %sm = linalg.generic {indexing_maps = [#id, #cond, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%sc, %keep : tensor<?x2x?x?xf32>, tensor<?x1x?x?xi1>) outs(%e2 : tensor<?x2x?x?xf32>) {
  ^bb0(%a: f32, %k: i1, %o: f32):
    %fill = arith.constant -3.4e38 : f32
    %r = arith.select %k, %a, %fill : f32
    linalg.yield %r : f32
  } -> tensor<?x2x?x?xf32>
  %p = kiln.softmax %sm {axis = 3 : i64} : tensor<?x2x?x?xf32>
  %o = kiln.matmul %p, %v : tensor<?x2x?x?xf32>, tensor<?x2x?x8xf32> -> tensor<?x2x?x8xf32>
  return %o : tensor<?x2x?x8xf32>
}

// -----

// COM: A causal mask computed from the sequence length (an iota compared
// COM: with another, as the dynamic exports write it) is judged at sample
// COM: sizes of the symbolic dims within kiln.dim_bounds: causal at each,
// COM: it becomes causal_offset = 0 and costs no bias tensor.
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#mask = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
// CHECK-LABEL: func.func @symbolic_causal
// CHECK: kiln.attention %arg0, %{{.*}}, %arg2 {causal_offset = 0 : i64, scale = 1.000000e+00 : f64} : tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32> -> tensor<?x2x?x8xf32>
// CHECK-NOT: kiln.softmax
func.func @symbolic_causal(%q: tensor<?x2x?x8xf32> {kiln.dims = ["batch", "", "sequence", ""]}, %kt: tensor<?x2x8x?xf32> {kiln.dims = ["batch", "", "", "sequence"]}, %v: tensor<?x2x?x8xf32> {kiln.dims = ["batch", "", "sequence", ""]}) -> tensor<?x2x?x8xf32> attributes {kiln.dim_bounds = {batch = array<i64: 1, 4>, sequence = array<i64: 1, 512>}} {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %b = tensor.dim %q, %c0 : tensor<?x2x?x8xf32>
  %s = tensor.dim %q, %c2 : tensor<?x2x?x8xf32>
  %e = tensor.empty(%s, %s) : tensor<1x1x?x?xf32>
  %m = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x1x?x?xf32>) {
  ^bb0(%o: f32):
    %i = linalg.index 2 : index
    %j = linalg.index 3 : index
    %keep = arith.cmpi sle, %j, %i : index
    %zero = arith.constant 0.0 : f32
    %min = arith.constant -3.40282347E+38 : f32
    %r = arith.select %keep, %zero, %min : f32
    linalg.yield %r : f32
  } -> tensor<1x1x?x?xf32>
  %sc = kiln.matmul %q, %kt : tensor<?x2x?x8xf32>, tensor<?x2x8x?xf32> -> tensor<?x2x?x?xf32>
  %e2 = tensor.empty(%b, %s, %s) : tensor<?x2x?x?xf32>
  %sm = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%sc, %m : tensor<?x2x?x?xf32>, tensor<1x1x?x?xf32>) outs(%e2 : tensor<?x2x?x?xf32>) {
  ^bb0(%a: f32, %x: f32, %o: f32):
    %r = arith.addf %a, %x : f32
    linalg.yield %r : f32
  } -> tensor<?x2x?x?xf32>
  %p = kiln.softmax %sm {axis = 3 : i64} : tensor<?x2x?x?xf32>
  %o = kiln.matmul %p, %v : tensor<?x2x?x?xf32>, tensor<?x2x?x8xf32> -> tensor<?x2x?x8xf32>
  return %o : tensor<?x2x?x8xf32>
}

// -----

// COM: Near miss: a sliding window of 100 keys on top of the causal mask.
// COM: The small samples never reach it, but the window's length lies
// COM: past them, so the mask is judged at the bounds too (512 positions),
// COM: where it is not causal: it stays the bias.
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#mask = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
// CHECK-LABEL: func.func @symbolic_window
// CHECK: kiln.attention %arg0, %{{.*}}, %arg2, %{{.*}} {scale = 1.000000e+00 : f64} : tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>, tensor<1x1x?x?xf32>
func.func @symbolic_window(%q: tensor<?x2x?x8xf32> {kiln.dims = ["batch", "", "sequence", ""]}, %kt: tensor<?x2x8x?xf32> {kiln.dims = ["batch", "", "", "sequence"]}, %v: tensor<?x2x?x8xf32> {kiln.dims = ["batch", "", "sequence", ""]}) -> tensor<?x2x?x8xf32> attributes {kiln.dim_bounds = {batch = array<i64: 1, 4>, sequence = array<i64: 1, 512>}} {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %c100 = arith.constant 100 : index
  %b = tensor.dim %q, %c0 : tensor<?x2x?x8xf32>
  %s = tensor.dim %q, %c2 : tensor<?x2x?x8xf32>
  %e = tensor.empty(%s, %s) : tensor<1x1x?x?xf32>
  %m = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e : tensor<1x1x?x?xf32>) {
  ^bb0(%o: f32):
    %i = linalg.index 2 : index
    %j = linalg.index 3 : index
    %keep = arith.cmpi sle, %j, %i : index
    %d = arith.subi %i, %j : index
    %near = arith.cmpi slt, %d, %c100 : index
    %both = arith.andi %keep, %near : i1
    %zero = arith.constant 0.0 : f32
    %min = arith.constant -3.40282347E+38 : f32
    %r = arith.select %both, %zero, %min : f32
    linalg.yield %r : f32
  } -> tensor<1x1x?x?xf32>
  %sc = kiln.matmul %q, %kt : tensor<?x2x?x8xf32>, tensor<?x2x8x?xf32> -> tensor<?x2x?x?xf32>
  %e2 = tensor.empty(%b, %s, %s) : tensor<?x2x?x?xf32>
  %sm = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%sc, %m : tensor<?x2x?x?xf32>, tensor<1x1x?x?xf32>) outs(%e2 : tensor<?x2x?x?xf32>) {
  ^bb0(%a: f32, %x: f32, %o: f32):
    %r = arith.addf %a, %x : f32
    linalg.yield %r : f32
  } -> tensor<?x2x?x?xf32>
  %p = kiln.softmax %sm {axis = 3 : i64} : tensor<?x2x?x?xf32>
  %o = kiln.matmul %p, %v : tensor<?x2x?x?xf32>, tensor<?x2x?x8xf32> -> tensor<?x2x?x8xf32>
  return %o : tensor<?x2x?x8xf32>
}

// -----

// COM: torch's safe softmax after the softmax (the SDPA export of
// COM: transformers' attention): Where(IsNaN(p), 0, p) gives 0 for a row
// COM: whose keys are all masked, as kiln.attention does; it goes with the
// COM: chain, its tensor.dim readers too. A Where filling NaN with 1 is
// COM: something else: the chain stays.
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> (0)>
#mask = affine_map<(d0, d1, d2, d3) -> (d0, 0, d2, d3)>
// CHECK-LABEL: func.func @safe_softmax
// CHECK-SAME: attributes {kiln.raised = {attention = 1 : i64}}
// CHECK: %[[O:.*]] = kiln.attention %arg0, %arg1, %arg2, %arg3 {scale = 1.000000e+00 : f64}
// CHECK-NOT: kiln.softmax
// CHECK-NOT: cmpf
// CHECK: return %[[O]]
func.func @safe_softmax(%q: tensor<1x2x?x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x8xf32>, %m: tensor<1x1x?x?xf32>) -> tensor<1x2x?x8xf32> {
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %zero = arith.constant dense<0.0> : tensor<1xf32>
  %s = tensor.dim %q, %c2 : tensor<1x2x?x8xf32>
  %l = tensor.dim %k, %c2 : tensor<1x2x?x8xf32>
  %e0 = tensor.empty(%l) : tensor<1x2x8x?xf32>
  %kt = linalg.transpose ins(%k : tensor<1x2x?x8xf32>) outs(%e0 : tensor<1x2x8x?xf32>) permutation = [0, 1, 3, 2]
  %sc = kiln.matmul %q, %kt : tensor<1x2x?x8xf32>, tensor<1x2x8x?xf32> -> tensor<1x2x?x?xf32>
  %e1 = tensor.empty(%s, %l) : tensor<1x2x?x?xf32>
  %sm = linalg.generic {indexing_maps = [#id, #mask, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%sc, %m : tensor<1x2x?x?xf32>, tensor<1x1x?x?xf32>) outs(%e1 : tensor<1x2x?x?xf32>) {
  ^bb0(%a: f32, %x: f32, %o: f32):
    %r = arith.addf %a, %x : f32
    linalg.yield %r : f32
  } -> tensor<1x2x?x?xf32>
  %p = kiln.softmax %sm {axis = 3 : i64} : tensor<1x2x?x?xf32>
  %ps = tensor.dim %p, %c2 : tensor<1x2x?x?xf32>
  %pl = tensor.dim %p, %c3 : tensor<1x2x?x?xf32>
  %e2 = tensor.empty(%ps, %pl) : tensor<1x2x?x?xi1>
  %nan = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%p : tensor<1x2x?x?xf32>) outs(%e2 : tensor<1x2x?x?xi1>) {
  ^bb0(%a: f32, %o: i1):
    %r = arith.cmpf uno, %a, %a : f32
    linalg.yield %r : i1
  } -> tensor<1x2x?x?xi1>
  %e3 = tensor.empty(%ps, %pl) : tensor<1x2x?x?xf32>
  %safe = linalg.generic {indexing_maps = [#id, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%nan, %zero, %p : tensor<1x2x?x?xi1>, tensor<1xf32>, tensor<1x2x?x?xf32>) outs(%e3 : tensor<1x2x?x?xf32>) {
  ^bb0(%c: i1, %z: f32, %a: f32, %o: f32):
    %r = arith.select %c, %z, %a : f32
    linalg.yield %r : f32
  } -> tensor<1x2x?x?xf32>
  %o = kiln.matmul %safe, %v : tensor<1x2x?x?xf32>, tensor<1x2x?x8xf32> -> tensor<1x2x?x8xf32>
  return %o : tensor<1x2x?x8xf32>
}

// -----

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#scalar = affine_map<(d0, d1, d2, d3) -> (0)>
// CHECK-LABEL: func.func @nan_filled_with_one
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @nan_filled_with_one(%q: tensor<1x2x?x8xf32>, %kt: tensor<1x2x8x?xf32>, %v: tensor<1x2x?x8xf32>) -> tensor<1x2x?x8xf32> {
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %one = arith.constant dense<1.0> : tensor<1xf32>
  %sc = kiln.matmul %q, %kt : tensor<1x2x?x8xf32>, tensor<1x2x8x?xf32> -> tensor<1x2x?x?xf32>
  %p = kiln.softmax %sc {axis = 3 : i64} : tensor<1x2x?x?xf32>
  %ps = tensor.dim %p, %c2 : tensor<1x2x?x?xf32>
  %pl = tensor.dim %p, %c3 : tensor<1x2x?x?xf32>
  %e2 = tensor.empty(%ps, %pl) : tensor<1x2x?x?xi1>
  %nan = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%p : tensor<1x2x?x?xf32>) outs(%e2 : tensor<1x2x?x?xi1>) {
  ^bb0(%a: f32, %o: i1):
    %r = arith.cmpf uno, %a, %a : f32
    linalg.yield %r : i1
  } -> tensor<1x2x?x?xi1>
  %e3 = tensor.empty(%ps, %pl) : tensor<1x2x?x?xf32>
  %safe = linalg.generic {indexing_maps = [#id, #scalar, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%nan, %one, %p : tensor<1x2x?x?xi1>, tensor<1xf32>, tensor<1x2x?x?xf32>) outs(%e3 : tensor<1x2x?x?xf32>) {
  ^bb0(%c: i1, %z: f32, %a: f32, %o: f32):
    %r = arith.select %c, %z, %a : f32
    linalg.yield %r : f32
  } -> tensor<1x2x?x?xf32>
  %o = kiln.matmul %safe, %v : tensor<1x2x?x?xf32>, tensor<1x2x?x8xf32> -> tensor<1x2x?x8xf32>
  return %o : tensor<1x2x?x8xf32>
}
