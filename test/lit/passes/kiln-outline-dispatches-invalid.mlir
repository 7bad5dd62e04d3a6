// RUN: kiln-opt %s --kiln-outline-dispatches --verify-diagnostics

func.func @dynamic(%x: tensor<?xf32>) -> tensor<?xf32> {
  // expected-error @+1 {{cannot outline a dispatch with dynamic shape 'tensor<?xf32>'; specialize the model's symbolic dims with --dim}}
  %r = kiln.dispatch(%x) : (tensor<?xf32>) -> tensor<?xf32> {
  ^bb0(%a: tensor<?xf32>):
    kiln.yield %a : tensor<?xf32>
  }
  return %r : tensor<?xf32>
}
