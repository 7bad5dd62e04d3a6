// RUN: kiln-opt %s --kiln-expand-math | FileCheck %s

// COM: exp, tanh and erf become polynomials on vectors and scalars alike;
// COM: sqrt has a hardware instruction and stays.
// CHECK-LABEL: func.func @math
// CHECK-NOT: math.exp
// CHECK-NOT: math.tanh
// CHECK-NOT: math.erf
// CHECK: math.fma
// CHECK: math.sqrt
func.func @math(%v: vector<8xf32>, %s: f32) -> (vector<8xf32>, f32, f32, f32) {
  %e = math.exp %v : vector<8xf32>
  %t = math.tanh %s : f32
  %r = math.erf %s : f32
  %q = math.sqrt %s : f32
  return %e, %t, %r, %q : vector<8xf32>, f32, f32, f32
}
