// RUN: kiln-opt %s -split-input-file --kiln-raise-rotary | FileCheck %s

// LLaMA's rotate-half RoPE with symbolic batch and sequence, as the
// importer writes it: x * cos, Slice as extract_slice, Neg, Concat as an
// index generic over clamped extracts, * sin, Add. The [S, 16] tables are
// cos and sin of cat(f, f), so pair i reads angle i: the gathers read
// columns 0..7.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#tab = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
#id2 = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @rotate_half
// CHECK-SAME: attributes {kiln.raised = {rotary_embedding = 1 : i64}}
// CHECK: %[[COST:.*]] = linalg.generic {{.*}} ins(%[[EMB:.*]] : tensor<?x16xf32>)
// CHECK: math.cos
// CHECK: %[[SINT:.*]] = linalg.generic {{.*}} ins(%[[EMB]] : tensor<?x16xf32>)
// CHECK: math.sin
// CHECK: %[[COS:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x?x8xf32>)
// CHECK: tensor.extract %[[COST]][%{{.*}}, %{{.*}}] : tensor<?x16xf32>
// CHECK: %[[SIN:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x?x8xf32>)
// CHECK: tensor.extract %[[SINT]][
// CHECK: %[[R:.*]] = kiln.rotary_embedding %arg0, %[[COS]], %[[SIN]] : tensor<?x4x?x16xf32>, tensor<?x?x8xf32>
// CHECK-NOT: arith.negf
// CHECK: return %[[R]]
func.func @rotate_half(%x: tensor<?x4x?x16xf32>, %f: tensor<?x8xf32>) -> tensor<?x4x?x16xf32> {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %c7 = arith.constant 7 : index
  %c8 = arith.constant 8 : index
  %p = tensor.dim %f, %c0 : tensor<?x8xf32>
  %et = tensor.empty(%p) : tensor<?x16xf32>
  %emb = linalg.generic {indexing_maps = [#id2], iterator_types = ["parallel", "parallel"]} outs(%et : tensor<?x16xf32>) {
  ^bb0(%o: f32):
    %i0 = linalg.index 0 : index
    %i1 = linalg.index 1 : index
    %j = arith.remui %i1, %c8 : index
    %v = tensor.extract %f[%i0, %j] : tensor<?x8xf32>
    linalg.yield %v : f32
  } -> tensor<?x16xf32>
  %cos = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%emb : tensor<?x16xf32>) outs(%et : tensor<?x16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %m = math.cos %a : f32
    linalg.yield %m : f32
  } -> tensor<?x16xf32>
  %sin = linalg.generic {indexing_maps = [#id2, #id2], iterator_types = ["parallel", "parallel"]} ins(%emb : tensor<?x16xf32>) outs(%et : tensor<?x16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %m = math.sin %a : f32
    linalg.yield %m : f32
  } -> tensor<?x16xf32>
  %b = tensor.dim %x, %c0 : tensor<?x4x?x16xf32>
  %s = tensor.dim %x, %c2 : tensor<?x4x?x16xf32>
  %e = tensor.empty(%b, %s) : tensor<?x4x?x16xf32>
  %xc = linalg.generic {indexing_maps = [#id, #tab, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%x, %cos : tensor<?x4x?x16xf32>, tensor<?x16xf32>) outs(%e : tensor<?x4x?x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.mulf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<?x4x?x16xf32>
  %x1 = tensor.extract_slice %x[0, 0, 0, 0] [%b, 4, %s, 8] [1, 1, 1, 1] : tensor<?x4x?x16xf32> to tensor<?x4x?x8xf32>
  %x2 = tensor.extract_slice %x[0, 0, 0, 8] [%b, 4, %s, 8] [1, 1, 1, 1] : tensor<?x4x?x16xf32> to tensor<?x4x?x8xf32>
  %eh = tensor.empty(%b, %s) : tensor<?x4x?x8xf32>
  %n = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%x2 : tensor<?x4x?x8xf32>) outs(%eh : tensor<?x4x?x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %m = arith.negf %a : f32
    linalg.yield %m : f32
  } -> tensor<?x4x?x8xf32>
  %e2 = tensor.empty(%b, %s) : tensor<?x4x?x16xf32>
  %rot = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e2 : tensor<?x4x?x16xf32>) {
  ^bb0(%o: f32):
    %i0 = linalg.index 0 : index
    %i1 = linalg.index 1 : index
    %i2 = linalg.index 2 : index
    %i3 = linalg.index 3 : index
    %hi = arith.subi %i3, %c8 : index
    %hi0 = arith.maxsi %hi, %c0 : index
    %hi1 = arith.minsi %hi0, %c7 : index
    %v1 = tensor.extract %x1[%i0, %i1, %i2, %hi1] : tensor<?x4x?x8xf32>
    %lo0 = arith.maxsi %i3, %c0 : index
    %lo1 = arith.minsi %lo0, %c7 : index
    %v0 = tensor.extract %n[%i0, %i1, %i2, %lo1] : tensor<?x4x?x8xf32>
    %first = arith.cmpi slt, %i3, %c8 : index
    %v = arith.select %first, %v0, %v1 : f32
    linalg.yield %v : f32
  } -> tensor<?x4x?x16xf32>
  %e3 = tensor.empty(%b, %s) : tensor<?x4x?x16xf32>
  %rs = linalg.generic {indexing_maps = [#id, #tab, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%rot, %sin : tensor<?x4x?x16xf32>, tensor<?x16xf32>) outs(%e3 : tensor<?x4x?x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.mulf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<?x4x?x16xf32>
  %e4 = tensor.empty(%b, %s) : tensor<?x4x?x16xf32>
  %y = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%xc, %rs : tensor<?x4x?x16xf32>, tensor<?x4x?x16xf32>) outs(%e4 : tensor<?x4x?x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.addf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<?x4x?x16xf32>
  return %y : tensor<?x4x?x16xf32>
}

// -----

// GPT-J's interleaved pairs (2i, 2i + 1), the rotation as one index
// generic: -x[d + 1] at even d, x[d - 1] at odd d. The [8, 8] tables are
// repeated twice each along the head ([8, 8, 2] collapsed): pair i reads
// column 2i of the collapsed table.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#tab = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
#rep_in = affine_map<(d0, d1, d2) -> (d0, d1)>
#rep_out = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @interleaved
// CHECK-SAME: attributes {kiln.raised = {rotary_embedding = 1 : i64}}
// CHECK: %[[COS:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<1x8x8xf32>)
// CHECK: %[[I:.*]] = linalg.index 2
// CHECK: arith.muli %[[I]], %{{.*}} : index
// CHECK: %[[SIN:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<1x8x8xf32>)
// CHECK: kiln.rotary_embedding %arg0, %[[COS]], %[[SIN]] {interleaved} : tensor<1x2x8x16xf32>, tensor<1x8x8xf32>
func.func @interleaved(%x: tensor<1x2x8x16xf32>, %cos8: tensor<8x8xf32>, %sin8: tensor<8x8xf32>) -> tensor<1x2x8x16xf32> {
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c0 = arith.constant 0 : index
  %c15 = arith.constant 15 : index
  %er = tensor.empty() : tensor<8x8x2xf32>
  %cr = linalg.generic {indexing_maps = [#rep_in, #rep_out], iterator_types = ["parallel", "parallel", "parallel"]} ins(%cos8 : tensor<8x8xf32>) outs(%er : tensor<8x8x2xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<8x8x2xf32>
  %cos = tensor.collapse_shape %cr [[0], [1, 2]] : tensor<8x8x2xf32> into tensor<8x16xf32>
  %er2 = tensor.empty() : tensor<8x8x2xf32>
  %sr = linalg.generic {indexing_maps = [#rep_in, #rep_out], iterator_types = ["parallel", "parallel", "parallel"]} ins(%sin8 : tensor<8x8xf32>) outs(%er2 : tensor<8x8x2xf32>) {
  ^bb0(%a: f32, %o: f32):
    linalg.yield %a : f32
  } -> tensor<8x8x2xf32>
  %sin = tensor.collapse_shape %sr [[0], [1, 2]] : tensor<8x8x2xf32> into tensor<8x16xf32>
  %e = tensor.empty() : tensor<1x2x8x16xf32>
  %xc = linalg.generic {indexing_maps = [#id, #tab, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%x, %cos : tensor<1x2x8x16xf32>, tensor<8x16xf32>) outs(%e : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.mulf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  %e2 = tensor.empty() : tensor<1x2x8x16xf32>
  %rot = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e2 : tensor<1x2x8x16xf32>) {
  ^bb0(%o: f32):
    %i1 = linalg.index 1 : index
    %i2 = linalg.index 2 : index
    %i3 = linalg.index 3 : index
    %up = arith.addi %i3, %c1 : index
    %up1 = arith.minsi %up, %c15 : index
    %next = tensor.extract %x[%c0, %i1, %i2, %up1] : tensor<1x2x8x16xf32>
    %neg = arith.negf %next : f32
    %dn = arith.subi %i3, %c1 : index
    %dn1 = arith.maxsi %dn, %c0 : index
    %prev = tensor.extract %x[%c0, %i1, %i2, %dn1] : tensor<1x2x8x16xf32>
    %odd = arith.remui %i3, %c2 : index
    %even = arith.cmpi eq, %odd, %c0 : index
    %v = arith.select %even, %neg, %prev : f32
    linalg.yield %v : f32
  } -> tensor<1x2x8x16xf32>
  %e3 = tensor.empty() : tensor<1x2x8x16xf32>
  %rs = linalg.generic {indexing_maps = [#id, #tab, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%rot, %sin : tensor<1x2x8x16xf32>, tensor<8x16xf32>) outs(%e3 : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.mulf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  %e4 = tensor.empty() : tensor<1x2x8x16xf32>
  %y = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%xc, %rs : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>) outs(%e4 : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.addf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  return %y : tensor<1x2x8x16xf32>
}

// -----

// Rotate-half with tables given as arguments: nothing says cos[i] equals
// cos[i + 8], so the pairs' angles are not known to match. Left alone.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#tab = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
// CHECK-LABEL: func.func @unknown_tables
// CHECK-NOT: kiln.rotary_embedding
// CHECK-NOT: kiln.raised
// CHECK: return
func.func @unknown_tables(%x: tensor<1x2x8x16xf32>, %cos: tensor<8x16xf32>, %sin: tensor<8x16xf32>) -> tensor<1x2x8x16xf32> {
  %c0 = arith.constant 0 : index
  %c8 = arith.constant 8 : index
  %c15 = arith.constant 15 : index
  %e = tensor.empty() : tensor<1x2x8x16xf32>
  %xc = linalg.generic {indexing_maps = [#id, #tab, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%x, %cos : tensor<1x2x8x16xf32>, tensor<8x16xf32>) outs(%e : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.mulf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  %e2 = tensor.empty() : tensor<1x2x8x16xf32>
  %rot = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e2 : tensor<1x2x8x16xf32>) {
  ^bb0(%o: f32):
    %i1 = linalg.index 1 : index
    %i2 = linalg.index 2 : index
    %i3 = linalg.index 3 : index
    %hi = arith.addi %i3, %c8 : index
    %hi1 = arith.minsi %hi, %c15 : index
    %v1 = tensor.extract %x[%c0, %i1, %i2, %hi1] : tensor<1x2x8x16xf32>
    %n1 = arith.negf %v1 : f32
    %lo = arith.subi %i3, %c8 : index
    %lo1 = arith.maxsi %lo, %c0 : index
    %v0 = tensor.extract %x[%c0, %i1, %i2, %lo1] : tensor<1x2x8x16xf32>
    %first = arith.cmpi slt, %i3, %c8 : index
    %v = arith.select %first, %n1, %v0 : f32
    linalg.yield %v : f32
  } -> tensor<1x2x8x16xf32>
  %e3 = tensor.empty() : tensor<1x2x8x16xf32>
  %rs = linalg.generic {indexing_maps = [#id, #tab, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%rot, %sin : tensor<1x2x8x16xf32>, tensor<8x16xf32>) outs(%e3 : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.mulf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  %e4 = tensor.empty() : tensor<1x2x8x16xf32>
  %y = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%xc, %rs : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>) outs(%e4 : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.addf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  return %y : tensor<1x2x8x16xf32>
}

// -----

// The same rotation, tables read per head ([2, 8, 16], one per head): not
// the [B, S] angles of a rotary embedding. Left alone.

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#tab = affine_map<(d0, d1, d2, d3) -> (d1, d2, d3)>
#id3 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @per_head
// CHECK-NOT: kiln.rotary_embedding
// CHECK: return
func.func @per_head(%x: tensor<1x2x8x16xf32>, %f: tensor<2x8x8xf32>) -> tensor<1x2x8x16xf32> {
  %c0 = arith.constant 0 : index
  %c8 = arith.constant 8 : index
  %c15 = arith.constant 15 : index
  %et = tensor.empty() : tensor<2x8x16xf32>
  %emb = linalg.generic {indexing_maps = [#id3], iterator_types = ["parallel", "parallel", "parallel"]} outs(%et : tensor<2x8x16xf32>) {
  ^bb0(%o: f32):
    %i0 = linalg.index 0 : index
    %i1 = linalg.index 1 : index
    %i2 = linalg.index 2 : index
    %j = arith.remui %i2, %c8 : index
    %v = tensor.extract %f[%i0, %i1, %j] : tensor<2x8x8xf32>
    linalg.yield %v : f32
  } -> tensor<2x8x16xf32>
  %cos = linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]} ins(%emb : tensor<2x8x16xf32>) outs(%et : tensor<2x8x16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %m = math.cos %a : f32
    linalg.yield %m : f32
  } -> tensor<2x8x16xf32>
  %sin = linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]} ins(%emb : tensor<2x8x16xf32>) outs(%et : tensor<2x8x16xf32>) {
  ^bb0(%a: f32, %o: f32):
    %m = math.sin %a : f32
    linalg.yield %m : f32
  } -> tensor<2x8x16xf32>
  %e = tensor.empty() : tensor<1x2x8x16xf32>
  %xc = linalg.generic {indexing_maps = [#id, #tab, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%x, %cos : tensor<1x2x8x16xf32>, tensor<2x8x16xf32>) outs(%e : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.mulf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  %e2 = tensor.empty() : tensor<1x2x8x16xf32>
  %rot = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%e2 : tensor<1x2x8x16xf32>) {
  ^bb0(%o: f32):
    %i1 = linalg.index 1 : index
    %i2 = linalg.index 2 : index
    %i3 = linalg.index 3 : index
    %hi = arith.addi %i3, %c8 : index
    %hi1 = arith.minsi %hi, %c15 : index
    %v1 = tensor.extract %x[%c0, %i1, %i2, %hi1] : tensor<1x2x8x16xf32>
    %n1 = arith.negf %v1 : f32
    %lo = arith.subi %i3, %c8 : index
    %lo1 = arith.maxsi %lo, %c0 : index
    %v0 = tensor.extract %x[%c0, %i1, %i2, %lo1] : tensor<1x2x8x16xf32>
    %first = arith.cmpi slt, %i3, %c8 : index
    %v = arith.select %first, %n1, %v0 : f32
    linalg.yield %v : f32
  } -> tensor<1x2x8x16xf32>
  %e3 = tensor.empty() : tensor<1x2x8x16xf32>
  %rs = linalg.generic {indexing_maps = [#id, #tab, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%rot, %sin : tensor<1x2x8x16xf32>, tensor<2x8x16xf32>) outs(%e3 : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.mulf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  %e4 = tensor.empty() : tensor<1x2x8x16xf32>
  %y = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%xc, %rs : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>) outs(%e4 : tensor<1x2x8x16xf32>) {
  ^bb0(%a: f32, %c: f32, %o: f32):
    %m = arith.addf %a, %c : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  return %y : tensor<1x2x8x16xf32>
}
