// RUN: kiln-opt %s --split-input-file --kiln-form-dispatches --verify-diagnostics

// COM: Only tensors cross dispatch boundaries; a captured scalar that is
// COM: not a constant is reported instead of producing invalid IR.
func.func @captured_scalar(%x: tensor<8xf32>, %s: f32) -> tensor<8xf32> {
  %e = tensor.empty() : tensor<8xf32>
  // expected-error @+1 {{uses the scalar value of type 'f32' defined outside it; only tensors and constants can cross a dispatch boundary}}
  %g = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%x : tensor<8xf32>) outs(%e : tensor<8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %t = arith.mulf %a, %s : f32
    linalg.yield %t : f32
  } -> tensor<8xf32>
  return %g : tensor<8xf32>
}
