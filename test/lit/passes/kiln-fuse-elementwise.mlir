// RUN: kiln-opt %s --split-input-file --kiln-fuse-elementwise | FileCheck %s

// COM: A transpose folds into the contraction that reads it (k^T of
// COM: attention scores): the product reads k in place through the
// COM: composed map, and the transpose is gone.
// CHECK-DAG: #[[$Q:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-DAG: #[[$K:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2, d3)>
// CHECK-LABEL: func.func @transpose_into_contraction
// CHECK-NOT: linalg.transpose
// CHECK: linalg.generic {indexing_maps = [#[[$Q]], #[[$K]], #{{.*}}]{{.*}} ins(%arg0, %arg1 : tensor<8x1x64xf32>, tensor<8x37x64xf32>)
#q = affine_map<(b, m, n, k) -> (b, m, k)>
#kt = affine_map<(b, m, n, k) -> (b, k, n)>
#o = affine_map<(b, m, n, k) -> (b, m, n)>
func.func @transpose_into_contraction(%q: tensor<8x1x64xf32>, %k: tensor<8x37x64xf32>) -> tensor<8x1x37xf32> {
  %e = tensor.empty() : tensor<8x64x37xf32>
  %t = linalg.transpose ins(%k : tensor<8x37x64xf32>) outs(%e : tensor<8x64x37xf32>) permutation = [0, 2, 1]
  %zero = arith.constant 0.0 : f32
  %o = tensor.empty() : tensor<8x1x37xf32>
  %f = linalg.fill ins(%zero : f32) outs(%o : tensor<8x1x37xf32>) -> tensor<8x1x37xf32>
  %r = linalg.generic {indexing_maps = [#q, #kt, #o], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %t : tensor<8x1x64xf32>, tensor<8x64x37xf32>) outs(%f : tensor<8x1x37xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  } -> tensor<8x1x37xf32>
  return %r : tensor<8x1x37xf32>
}

// -----

// COM: A transpose read by two generics folds into both (3-D permutation
// COM: [1, 2, 0]: result dim i is input dim perm[i]).
// CHECK-DAG: #[[$T:.*]] = affine_map<(d0, d1, d2) -> (d2, d0, d1)>
// CHECK-LABEL: func.func @transpose_two_users
// CHECK-NOT: linalg.transpose
// CHECK: linalg.generic {indexing_maps = [#[[$T]], #{{.*}}]{{.*}} ins(%arg0 : tensor<4x2x3xf32>)
// CHECK: linalg.generic {indexing_maps = [#[[$T]], #{{.*}}]{{.*}} ins(%arg0 : tensor<4x2x3xf32>)
#id = affine_map<(a, b, c) -> (a, b, c)>
func.func @transpose_two_users(%x: tensor<4x2x3xf32>) -> (tensor<2x3x4xf32>, tensor<2x3x4xf32>) {
  %e = tensor.empty() : tensor<2x3x4xf32>
  %t = linalg.transpose ins(%x : tensor<4x2x3xf32>) outs(%e : tensor<2x3x4xf32>) permutation = [1, 2, 0]
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%t : tensor<2x3x4xf32>) outs(%e : tensor<2x3x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<2x3x4xf32>
  %b = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%t : tensor<2x3x4xf32>) outs(%e : tensor<2x3x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = math.exp %in : f32
    linalg.yield %n : f32
  } -> tensor<2x3x4xf32>
  return %a, %b : tensor<2x3x4xf32>, tensor<2x3x4xf32>
}

// -----

// COM: A GELU-like producer feeding a broadcasting contraction is not fused
// COM: (it would be evaluated once per multiply-add); a chain of
// COM: elementwise ops fuses into one generic.
// CHECK-LABEL: func.func @no_recompute
// CHECK: %[[ACT:.*]] = linalg.generic {{.*}} ins(%arg0 : tensor<4x16xf32>)
// CHECK: math.tanh
// CHECK: arith.addf
// CHECK-NOT: linalg.generic {{.*}} ins(%[[ACT]] : tensor<4x16xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[ACT]], %arg1 : tensor<4x16xf32>, tensor<16x8xf32>)
#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (k, n)>
#y = affine_map<(m, n, k) -> (m, n)>
#e2 = affine_map<(m, k) -> (m, k)>
func.func @no_recompute(%x: tensor<4x16xf32>, %w: tensor<16x8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x16xf32>
  %t = linalg.generic {indexing_maps = [#e2, #e2], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<4x16xf32>) outs(%e : tensor<4x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %v = math.tanh %in : f32
    linalg.yield %v : f32
  } -> tensor<4x16xf32>
  %u = linalg.generic {indexing_maps = [#e2, #e2], iterator_types = ["parallel", "parallel"]}
      ins(%t : tensor<4x16xf32>) outs(%e : tensor<4x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %v = arith.addf %in, %in : f32
    linalg.yield %v : f32
  } -> tensor<4x16xf32>
  %zero = arith.constant 0.0 : f32
  %o = tensor.empty() : tensor<4x8xf32>
  %f = linalg.fill ins(%zero : f32) outs(%o : tensor<4x8xf32>) -> tensor<4x8xf32>
  %r = linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%u, %w : tensor<4x16xf32>, tensor<16x8xf32>) outs(%f : tensor<4x8xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  } -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}

// -----

// COM: RoPE's rotate-half as an exporter writes it: q transposed, its two
// COM: halves sliced (the second negated), concatenated by a gather, times
// COM: sin, plus q times cos. The slices and the transpose are computed
// COM: where the concatenation reads them: one generic, reading q in place
// COM: (extracts at the transposed, offset indices) and no other tensor.
// CHECK-LABEL: func.func @rotate_half
// CHECK-NOT: linalg.transpose
// CHECK: %[[R:.*]] = linalg.generic
// CHECK-DAG: tensor.extract %arg0[%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}] : tensor<1x8x2x16xf32>
// CHECK-DAG: arith.negf
// CHECK: linalg.yield
// CHECK-NOT: linalg.generic
// CHECK: return %[[R]]
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#bc = affine_map<(d0, d1, d2, d3) -> (0, 0, d2, d3)>
func.func @rotate_half(%q: tensor<1x8x2x16xf32>, %sin: tensor<1x1x8x16xf32>) -> tensor<1x2x8x16xf32> {
  %c0 = arith.constant 0 : index
  %c7 = arith.constant 7 : index
  %c8 = arith.constant 8 : index
  %e = tensor.empty() : tensor<1x2x8x16xf32>
  %t = linalg.transpose ins(%q : tensor<1x8x2x16xf32>) outs(%e : tensor<1x2x8x16xf32>) permutation = [0, 2, 1, 3]
  %eh = tensor.empty() : tensor<1x2x8x8xf32>
  %x1 = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%eh : tensor<1x2x8x8xf32>) {
  ^bb0(%out: f32):
    %h = linalg.index 1 : index
    %s = linalg.index 2 : index
    %d = linalg.index 3 : index
    %v = tensor.extract %t[%c0, %h, %s, %d] : tensor<1x2x8x16xf32>
    linalg.yield %v : f32
  } -> tensor<1x2x8x8xf32>
  %x2 = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%eh : tensor<1x2x8x8xf32>) {
  ^bb0(%out: f32):
    %h = linalg.index 1 : index
    %s = linalg.index 2 : index
    %d = linalg.index 3 : index
    %dd = arith.addi %d, %c8 : index
    %v = tensor.extract %t[%c0, %h, %s, %dd] : tensor<1x2x8x16xf32>
    %n = arith.negf %v : f32
    linalg.yield %n : f32
  } -> tensor<1x2x8x8xf32>
  %r = linalg.generic {indexing_maps = [#bc, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%sin : tensor<1x1x8x16xf32>) outs(%e : tensor<1x2x8x16xf32>) {
  ^bb0(%sn: f32, %out: f32):
    %h = linalg.index 1 : index
    %s = linalg.index 2 : index
    %d = linalg.index 3 : index
    %lo = arith.minsi %d, %c7 : index
    %hi0 = arith.subi %d, %c8 : index
    %hi1 = arith.maxsi %hi0, %c0 : index
    %hi = arith.minsi %hi1, %c7 : index
    %a = tensor.extract %x2[%c0, %h, %s, %lo] : tensor<1x2x8x8xf32>
    %b = tensor.extract %x1[%c0, %h, %s, %hi] : tensor<1x2x8x8xf32>
    %first = arith.cmpi slt, %d, %c8 : index
    %v = arith.select %first, %a, %b : f32
    %m = arith.mulf %v, %sn : f32
    linalg.yield %m : f32
  } -> tensor<1x2x8x16xf32>
  return %r : tensor<1x2x8x16xf32>
}

// -----

// COM: A gathered producer that something else reads whole stays (it is
// COM: computed once, for that reader), and so do its gathers.
// CHECK-LABEL: func.func @gathered_and_read
// CHECK: %[[P:.*]] = linalg.generic
// CHECK: math.exp
// CHECK: linalg.generic
// CHECK: tensor.extract %[[P]]
#id1 = affine_map<(d0) -> (d0)>
func.func @gathered_and_read(%x: tensor<16xf32>) -> (tensor<16xf32>, tensor<8xf32>) {
  %c8 = arith.constant 8 : index
  %e = tensor.empty() : tensor<16xf32>
  %p = linalg.generic {indexing_maps = [#id1, #id1], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %v = math.exp %in : f32
    linalg.yield %v : f32
  } -> tensor<16xf32>
  %e8 = tensor.empty() : tensor<8xf32>
  %g = linalg.generic {indexing_maps = [#id1], iterator_types = ["parallel"]} outs(%e8 : tensor<8xf32>) {
  ^bb0(%out: f32):
    %i = linalg.index 0 : index
    %j = arith.addi %i, %c8 : index
    %v = tensor.extract %p[%j] : tensor<16xf32>
    linalg.yield %v : f32
  } -> tensor<8xf32>
  return %p, %g : tensor<16xf32>, tensor<8xf32>
}
