//===- KilnOps.td - the kiln dialect ----------------------------*- tablegen -*-===//
//
// Graph-level ops carry transformer-level semantics that upstream dialects
// spell only as long decompositions (an ONNX MatMul with broadcasting batch
// dims, a softmax along one axis). Keeping them whole lets the raising passes
// (attention, norms) match on a few ops instead of on linalg.generic bodies,
// and lets the kernel strategies pick a schedule per op. Dispatch-level ops
// (kiln.dispatch) delimit what becomes one kernel.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_OPS
#define KILN_OPS

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Kiln_Dialect : Dialect {
  let name = "kiln";
  let cppNamespace = "::kiln";
  let summary = "Transformer-level graph ops and kernel dispatch regions";
  let description = [{
    The `kiln` dialect holds the ops of Kiln's graph IR that have no direct
    upstream equivalent with the semantics an importer needs, and the
    `kiln.dispatch` region that marks one kernel in the dispatch IR.
    Elementwise work stays in `linalg`/`arith`/`math`.
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

class Kiln_Op<string mnemonic, list<Trait> traits = []>
    : Op<Kiln_Dialect, mnemonic, traits>;

def Kiln_FloatTensor : RankedTensorOf<[AnyFloat]>;
def Kiln_NumericTensor : RankedTensorOf<[AnyFloat, AnySignlessInteger]>;

//===----------------------------------------------------------------------===//
// Graph ops
//===----------------------------------------------------------------------===//

def Kiln_MatmulOp : Kiln_Op<"matmul", [Pure]> {
  let summary = "matrix product with broadcasting batch dimensions";
  let description = [{
    Computes `result[..., m, n] = sum_k lhs[..., m, k] * rhs[..., k, n]` as
    ONNX `MatMul` and `numpy.matmul` define it for operands of rank >= 2:
    the leading (batch) dimensions broadcast against each other
    (right-aligned; a dimension of 1 stretches), the last two are the matrix
    dimensions. Importers reshape rank-1 operands to rank 2 before building
    this op. Accumulation happens in the element type.

    Example:

    ```mlir
    %y = kiln.matmul %x, %w : tensor<2x16x64xf32>, tensor<64x128xf32>
                                -> tensor<2x16x128xf32>
    ```
  }];
  let arguments = (ins Kiln_NumericTensor:$lhs, Kiln_NumericTensor:$rhs);
  let results = (outs Kiln_NumericTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_SoftmaxOp : Kiln_Op<"softmax", [Pure, SameOperandsAndResultType]> {
  let summary = "softmax along one axis";
  let description = [{
    Computes `exp(x - max(x)) / sum(exp(x - max(x)))` along `axis`, which
    counts from the front when non-negative and from the back when negative.
    This is ONNX `Softmax` from opset 13 on; older opsets' flatten-to-2-D
    semantics are expressed by the importer with reshapes around this op.

    Example:

    ```mlir
    %p = kiln.softmax %scores {axis = -1 : i64} : tensor<4x16x16xf32>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, I64Attr:$axis);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The axis as a non-negative dimension index.
    int64_t getNormalizedAxis() {
      int64_t axis = getAxis();
      return axis < 0 ? axis + getInput().getType().getRank() : axis;
    }
  }];
}

//===----------------------------------------------------------------------===//
// Dispatch ops
//===----------------------------------------------------------------------===//

def Kiln_DispatchOp : Kiln_Op<"dispatch", [
    IsolatedFromAbove,
    SingleBlock,
    RecursiveMemoryEffects]> {
  let summary = "a region that becomes one kernel";
  let description = [{
    Everything inside a `kiln.dispatch` is compiled into one kernel (one GPU
    launch, or one host function). The region is isolated from above: every
    tensor it reads is an operand, which the region sees as the block
    argument at the same position; small constants are cloned inside. The
    `kiln.yield` terminator returns the tensors the kernel writes. The
    `strategy` attribute, when present, names the kernel strategy chosen for
    it (for example `"gemm"`, `"elementwise"`, `"reduction"`).

    Example:

    ```mlir
    %r = kiln.dispatch(%x, %w) {strategy = "gemm"}
        : (tensor<16x64xf32>, tensor<64x32xf32>) -> tensor<16x32xf32> {
    ^bb0(%a: tensor<16x64xf32>, %b: tensor<64x32xf32>):
      %e = tensor.empty() : tensor<16x32xf32>
      %zero = arith.constant 0.0 : f32
      %f = linalg.fill ins(%zero : f32) outs(%e : tensor<16x32xf32>) -> tensor<16x32xf32>
      %m = linalg.matmul ins(%a, %b : tensor<16x64xf32>, tensor<64x32xf32>)
                         outs(%f : tensor<16x32xf32>) -> tensor<16x32xf32>
      kiln.yield %m : tensor<16x32xf32>
    }
    ```
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs,
                       OptionalAttr<StrAttr>:$strategy);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    `(` $inputs `)` attr-dict `:` functional-type($inputs, $results) $body
  }];
  let hasVerifier = 1;
}

def Kiln_YieldOp : Kiln_Op<"yield", [
    Pure, ReturnLike, Terminator, HasParent<"DispatchOp">]> {
  let summary = "returns the tensors a kiln.dispatch produces";
  let description = [{
    Terminates the body of a `kiln.dispatch`. Its operands become the
    dispatch's results, in order and with the same types.

    Example:

    ```mlir
    kiln.yield %a, %b : tensor<8xf32>, tensor<8xf32>
    ```
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
}

#endif // KILN_OPS
