// RUN: kiln-opt %s --split-input-file --kiln-cpu-flash-attention --canonicalize --cse | FileCheck %s

// COM: Grouped-query heads (4 query heads over 2 KV heads), symbolic query
// COM: and key counts, a causal offset of 2, blocks of 4 keys: loops over
// COM: heads and rows carry the output; the row's key loop ends at the
// COM: last key it sees (min(i + 3, L)); each key is a D-wide product and
// COM: a reassociable sum; keys past the end are masked to -inf; the
// COM: online softmax rescales the sum and the Dv-wide accumulator; the
// COM: row is divided by the sum (0 without keys) and written once.
// CHECK-LABEL: func.func @gqa_causal
// CHECK-NOT: kiln.attention
// CHECK-DAG: %[[SCALE:.*]] = arith.constant dense<1.250000e-01> : vector<8xf32>
// CHECK-DAG: %[[IOTA:.*]] = arith.constant dense<[0, 1, 2, 3]> : vector<4xindex>
// CHECK-DAG: %[[S:.*]] = tensor.dim %arg0, %c2
// CHECK-DAG: %[[L:.*]] = tensor.dim %arg1, %c2
// CHECK: %[[INIT:.*]] = tensor.empty(%[[S]]) : tensor<1x4x?x16xf32>
// CHECK: scf.for %[[H:.*]] = %c0 to %c4 step %c1 iter_args(%{{.*}} = %[[INIT]])
// CHECK: scf.for %[[I:.*]] = %c0 to %[[S]] step %c1 iter_args(%[[OUT:.*]] =
// CHECK: %[[KVH:.*]] = arith.divui %[[H]], %c2
// CHECK: %[[Q:.*]] = vector.transfer_read %arg0[%c0, %[[H]], %[[I]], %c0]
// CHECK: %[[QS:.*]] = arith.mulf %[[Q]], %[[SCALE]]
// CHECK: %[[LIM:.*]] = arith.addi %[[I]], %c3
// CHECK: %[[LIM0:.*]] = arith.maxsi %[[LIM]], %c0
// CHECK: %[[END:.*]] = arith.minsi %[[LIM0]], %[[L]]
// CHECK: %[[R:.*]]:3 = scf.for %[[J0:.*]] = %c0 to %[[END]] step %c4 iter_args(%[[M:.*]] = %{{.*}}, %[[SUM:.*]] = %{{.*}}, %[[ACC:.*]] = %{{.*}}) -> (f32, f32, vector<16xf32>)
// CHECK: %[[K0:.*]] = vector.transfer_read %arg1[%c0, %[[KVH]], %{{.*}}, %c0]
// CHECK: %[[P0:.*]] = arith.mulf %[[QS]], %[[K0]] : vector<8xf32>
// CHECK: vector.reduction <add>, %[[P0]] fastmath<reassoc> : vector<8xf32> into f32
// CHECK-COUNT-3: vector.reduction <add>, %{{.*}} fastmath<reassoc> : vector<8xf32> into f32
// CHECK: %[[SV:.*]] = vector.from_elements {{.*}} : vector<4xf32>
// CHECK: arith.cmpi slt
// CHECK: %[[MASKED:.*]] = arith.select %{{.*}}, %[[SV]], %{{.*}} : vector<4xi1>, vector<4xf32>
// CHECK: %[[BMAX:.*]] = vector.reduction <maxnumf>, %[[MASKED]] fastmath<nnan>
// CHECK: %[[NMAX:.*]] = arith.maxnumf %[[M]], %[[BMAX]] fastmath<nnan>
// CHECK: %[[RESC:.*]] = math.exp %{{.*}} : f32
// CHECK: %[[P:.*]] = math.exp %{{.*}} : vector<4xf32>
// CHECK: vector.reduction <add>, %[[P]] fastmath<reassoc> : vector<4xf32> into f32
// CHECK: %[[V0:.*]] = vector.transfer_read %arg2[%c0, %[[KVH]], %{{.*}}, %c0]
// CHECK: %[[PV0:.*]] = arith.mulf %{{.*}}, %[[V0]] : vector<16xf32>
// CHECK-COUNT-3: vector.fma %{{.*}} : vector<16xf32>
// CHECK: %[[NACC:.*]] = vector.fma %[[ACC]], %{{.*}} : vector<16xf32>
// CHECK: scf.yield %[[NMAX]], %{{.*}}, %[[NACC]] : f32, f32, vector<16xf32>
// CHECK: arith.cmpf oeq, %[[R]]#1
// CHECK: %[[ROW:.*]] = arith.mulf %[[R]]#2
// CHECK: vector.transfer_write %[[ROW]], %[[OUT]][%c0, %[[H]], %[[I]], %c0] {in_bounds = [true]}
func.func @gqa_causal(%q: tensor<1x4x?x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x16xf32>) -> tensor<1x4x?x16xf32> attributes {kiln.kernel, kiln.config = {strategy = "cpu-flash-attention", key_block = 4 : i64}} {
  %o = kiln.attention %q, %k, %v {scale = 0.125 : f64, causal_offset = 2 : i64} : tensor<1x4x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x16xf32> -> tensor<1x4x?x16xf32>
  return %o : tensor<1x4x?x16xf32>
}

// -----

// COM: f16 operands with an [S, L] bias (broadcast over batch and heads)
// COM: and softcap, 8 keys per block (the default): reads are widened to
// COM: f32; each key's products are 8 lanes, and the 8 keys' lanes are
// COM: summed across by three levels of even/odd shuffles (7 adds) into
// COM: one vector of scores; the scores are capped (tanh) and biased, a
// COM: whole block's bias is one vector read and the last, partial one
// COM: reads clamped keys one by one; the row is rounded to f16 once.
// CHECK-LABEL: func.func @f16_bias_softcap
// CHECK: arith.extf %{{.*}} : vector<8xf16> to vector<8xf32>
// CHECK-COUNT-8: arith.mulf %{{.*}} : vector<8xf32>
// CHECK: vector.shuffle %{{.*}} [0, 2, 4, 6, 8, 10, 12, 14] : vector<8xf32>, vector<8xf32>
// CHECK: vector.shuffle %{{.*}} [1, 3, 5, 7, 9, 11, 13, 15] : vector<8xf32>, vector<8xf32>
// CHECK-COUNT-6: arith.addf %{{.*}} : vector<8xf32>
// CHECK: math.tanh %{{.*}} : vector<8xf32>
// CHECK: scf.if %{{.*}} -> (vector<8xf32>)
// CHECK: vector.transfer_read %arg3[%{{.*}}, %{{.*}}], %{{.*}} {in_bounds = [true]} : tensor<5x19xf16>, vector<8xf16>
// CHECK: } else {
// CHECK-COUNT-8: tensor.extract %arg3
// CHECK: arith.addf %{{.*}} : vector<8xf32>
// CHECK: arith.truncf %{{.*}} : vector<8xf32> to vector<8xf16>
// CHECK: vector.transfer_write
func.func @f16_bias_softcap(%q: tensor<2x2x5x8xf16>, %k: tensor<2x2x19x8xf16>, %v: tensor<2x2x19x8xf16>, %bias: tensor<5x19xf16>) -> tensor<2x2x5x8xf16> attributes {kiln.kernel, kiln.config = {strategy = "cpu-flash-attention"}} {
  %o = kiln.attention %q, %k, %v, %bias {scale = 0.35 : f64, softcap = 30.0 : f64, softmax_type = f32} : tensor<2x2x5x8xf16>, tensor<2x2x19x8xf16>, tensor<2x2x19x8xf16>, tensor<5x19xf16> -> tensor<2x2x5x8xf16>
  return %o : tensor<2x2x5x8xf16>
}

// -----

// COM: Another strategy's kernel is left alone.
// CHECK-LABEL: func.func @fallback
// CHECK: kiln.attention
func.func @fallback(%q: tensor<1x2x3x8xf32>, %k: tensor<1x2x3x8xf32>, %v: tensor<1x2x3x8xf32>) -> tensor<1x2x3x8xf32> attributes {kiln.kernel, kiln.config = {strategy = "cpu-attention-fallback"}} {
  %o = kiln.attention %q, %k, %v {scale = 0.125 : f64} : tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32> -> tensor<1x2x3x8xf32>
  return %o : tensor<1x2x3x8xf32>
}

// -----

// COM: 16 keys per block: two trees of 8 keys, joined into one vector of
// COM: 16 scores.
// CHECK-LABEL: func.func @two_trees
// CHECK-COUNT-14: vector.shuffle %{{.*}} : vector<8xf32>, vector<8xf32>
// CHECK: vector.shuffle %{{.*}} [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] : vector<8xf32>, vector<8xf32>
// CHECK: vector.reduction <maxnumf>, %{{.*}} : vector<16xf32> into f32
func.func @two_trees(%q: tensor<1x1x4x8xf32>, %k: tensor<1x1x40x8xf32>, %v: tensor<1x1x40x8xf32>) -> tensor<1x1x4x8xf32> attributes {kiln.kernel, kiln.config = {strategy = "cpu-flash-attention", key_block = 16 : i64}} {
  %o = kiln.attention %q, %k, %v {scale = 0.35 : f64} : tensor<1x1x4x8xf32>, tensor<1x1x40x8xf32>, tensor<1x1x40x8xf32> -> tensor<1x1x4x8xf32>
  return %o : tensor<1x1x4x8xf32>
}
