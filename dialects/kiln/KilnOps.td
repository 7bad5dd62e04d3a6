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
    this op.

    Products are summed in the element type, or in `acc_type` when given: a
    float type that holds every value of the (float) element type, so that
    f16 and bf16 operands can accumulate in f32 as tensor cores do. The sum
    is rounded to the element type once, at the end.

    Example:

    ```mlir
    %y = kiln.matmul %x, %w : tensor<2x16x64xf32>, tensor<64x128xf32>
                                -> tensor<2x16x128xf32>
    %z = kiln.matmul %a, %b {acc_type = f32}
        : tensor<16x64xf16>, tensor<64x32xf16> -> tensor<16x32xf16>
    ```
  }];
  let arguments = (ins Kiln_NumericTensor:$lhs, Kiln_NumericTensor:$rhs,
                       OptionalAttr<TypeAttr>:$acc_type);
  let results = (outs Kiln_NumericTensor:$result);
  let builders = [
    // Accumulation in the element type.
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$lhs,
                   "::mlir::Value":$rhs), [{
      build($_builder, $_state, result, lhs, rhs, ::mlir::TypeAttr());
    }]>
  ];
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The type products are summed in: `acc_type`, else the element type.
    ::mlir::Type getAccumulatorType() {
      if (std::optional<::mlir::Type> acc = getAccType())
        return *acc;
      return getType().getElementType();
    }
  }];
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
// Transformer ops
//
// What ONNX's transformer ops (LayerNormalization, Gelu, RMSNormalization,
// RotaryEmbedding, Attention) mean, whole, so that a kernel strategy can
// take one as a unit (a fused norm, a flash-attention kernel). Each has a
// decomposition into linalg (dialects/kiln/Decompositions.cpp), which
// `kiln-lower-graph-to-linalg` applies to the norms, GELU and rotary
// embedding; attention stays whole into its own dispatch, and
// `kiln-decompose-attention` applies its decomposition inside the kernel
// when no strategy takes it whole.
//===----------------------------------------------------------------------===//

def Kiln_GeluOp : Kiln_Op<"gelu", [Pure, SameOperandsAndResultType]> {
  let summary = "Gaussian error linear unit";
  let description = [{
    `0.5 x (1 + erf(x / sqrt(2)))`, or with `tanh_approximation`
    `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`: ONNX `Gelu` (20)
    with `approximate = "none"` or `"tanh"`.

    ```mlir
    %y = kiln.gelu %x {tanh_approximation} : tensor<8x3072xf32>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, UnitAttr:$tanh_approximation);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Kiln_SiluOp : Kiln_Op<"silu", [Pure, SameOperandsAndResultType]> {
  let summary = "sigmoid linear unit (swish)";
  let description = [{
    `x * sigmoid(x)`, which LLaMA-family MLPs gate with; exporters write it
    as Sigmoid and Mul, and `kiln-raise-activations` raises it.

    ```mlir
    %y = kiln.silu %x : tensor<8x11008xf16>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Kiln_LayerNormOp : Kiln_Op<"layer_norm", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "layer normalization over the dims from `axis` on";
  let description = [{
    `(x - mean) / sqrt(var + epsilon) * scale + bias`, the mean and the
    (biased) variance taken over dims `axis`..rank-1 of `input`: ONNX
    `LayerNormalization` (17) with stash_type 1, whose statistics are
    computed in f32 for f16/bf16 inputs. `scale` and the optional `bias` are
    broadcast (aligned on the right) to the normalized dims.

    ```mlir
    %y = kiln.layer_norm %x, %gamma, %beta {axis = -1 : i64, epsilon = 1.0e-05 : f32}
        : tensor<128x768xf32>, tensor<768xf32>, tensor<768xf32>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$scale,
                       Optional<Kiln_FloatTensor>:$bias, I64Attr:$axis,
                       F32Attr:$epsilon);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $scale (`,` $bias^)? attr-dict `:` type($input) `,` type($scale)
    (`,` type($bias)^)?
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getNormalizedAxis() {
      int64_t axis = getAxis();
      return axis < 0 ? axis + getInput().getType().getRank() : axis;
    }
  }];
}

def Kiln_RmsNormOp : Kiln_Op<"rms_norm", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "root-mean-square normalization over the dims from `axis` on";
  let description = [{
    `x / sqrt(mean(x^2) + epsilon) * scale`, the mean over dims
    `axis`..rank-1, computed in f32 (f64 for f64 inputs): ONNX
    `RMSNormalization` (23). `scale` broadcasts to the normalized dims.

    ```mlir
    %y = kiln.rms_norm %x, %w {axis = -1 : i64, epsilon = 1.0e-06 : f32}
        : tensor<16x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$scale,
                       I64Attr:$axis, F32Attr:$epsilon);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $scale attr-dict `:` type($input) `,` type($scale)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getNormalizedAxis() {
      int64_t axis = getAxis();
      return axis < 0 ? axis + getInput().getType().getRank() : axis;
    }
  }];
}

def Kiln_RotaryEmbeddingOp : Kiln_Op<"rotary_embedding", [Pure,
    AllTypesMatch<["input", "result"]>, AllTypesMatch<["cos", "sin"]>]> {
  let summary = "rotary position embedding of [batch, heads, seq, head] inputs";
  let description = [{
    Rotates the first `2 * R` elements of every head vector of `input`
    (`[B, H, S, D]`) by the angles whose cosines and sines `cos` and `sin`
    (`[B, S, R]`) hold for each batch and position; elements from `2 * R` on
    pass through. Pairs are (i, i + R) (the halves), or (2i, 2i + 1) with
    `interleaved`:
    `out_a = x_a cos_i - x_b sin_i`, `out_b = x_b cos_i + x_a sin_i`.
    ONNX `RotaryEmbedding` (23) after its importer has gathered the caches
    by position id and moved the heads in front of the sequence.

    ```mlir
    %y = kiln.rotary_embedding %x, %cos, %sin : tensor<1x4x8x16xf32>, tensor<1x8x8xf32>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$cos,
                       Kiln_FloatTensor:$sin, UnitAttr:$interleaved);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $cos `,` $sin attr-dict `:` type($input) `,` type($cos)
  }];
  let hasVerifier = 1;
}

def Kiln_AttentionOp : Kiln_Op<"attention", [Pure]> {
  let summary = "scaled dot-product attention with grouped KV heads";
  let description = [{
    `softmax(scale * q k^T [capped] + bias [causal]) v` per batch and query
    head, for `query` `[B, Hq, S, D]`, `key` `[B, Hkv, L, D]` and `value`
    `[B, Hkv, L, Dv]`; query head `h` reads KV head `h / (Hq / Hkv)`
    (grouped-query attention; Hkv divides Hq). The result is
    `[B, Hq, S, Dv]`.

    - `scale` multiplies the scores; the decomposition scales q and k by
      `sqrt(scale)` each, as ONNX's reference does.
    - `softcap` > 0 caps the scores: `softcap * tanh(scores / softcap)`.
    - `bias` (optional, broadcast to `[B, Hq, S, L]`) is added; `-inf`
      masks a key out.
    - `causal_offset` (optional) masks key `j` for query `i` when
      `j > i + causal_offset` (0: upper-left aligned; the past length with
      a KV cache). With `causal_from_end` the keys in front of the queries
      count too: `j > i + causal_offset + (L - S)` (bottom-right aligned:
      a past of symbolic length before the queries).
    - the softmax runs in `softmax_type` when given (else the element type)
      and gives 0, not NaN, for a row whose keys are all masked.

    ONNX `Attention` (23) after its importer has split heads, concatenated
    the past KV and turned boolean or short masks into `bias`.

    The op stays whole through the graph pipeline and is the root of a
    dispatch of its own (strategy `"attention-fallback"`), so that a kernel
    strategy can take it as a unit. The fallback, `kiln-decompose-attention`
    at the start of the kernel pipelines, replaces it by the linalg above
    (two batched contractions around the masked softmax) inside that kernel.

    ```mlir
    %o = kiln.attention %q, %k, %v {scale = 0.125 : f64, causal_offset = 0 : i64}
        : tensor<1x4x8x64xf32>, tensor<1x2x8x64xf32>, tensor<1x2x8x64xf32>
        -> tensor<1x4x8x64xf32>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$query, Kiln_FloatTensor:$key,
                       Kiln_FloatTensor:$value,
                       Optional<Kiln_FloatTensor>:$bias, F64Attr:$scale,
                       DefaultValuedAttr<F64Attr, "0.0">:$softcap,
                       OptionalAttr<I64Attr>:$causal_offset,
                       OptionalAttr<TypeAttr>:$softmax_type,
                       UnitAttr:$causal_from_end);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`,` $bias^)? attr-dict `:` type($query) `,`
    type($key) `,` type($value) (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
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
    `config` attribute, set by `kiln-select-strategies` from the target's
    facts and the dispatch's shapes, names the kernel strategy chosen for it
    (`strategy`, for example `"gemm-simt"`, `"row-reduce"`, `"elementwise"`,
    `"generic"`, `"cpu-gemm"`) and the numbers the strategy builds it with
    (tile sizes, threads, vector width); the strategies implement what it
    says. Composite strategies hold their parts' configurations as nested
    dictionaries.

    Example:

    ```mlir
    %r = kiln.dispatch(%x, %w) {config = {strategy = "gemm-simt",
        tile = array<i64: 64, 64, 16>, threads = array<i64: 16, 16>,
        register_block = array<i64: 4, 4>}}
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
                       OptionalAttr<DictionaryAttr>:$config);
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
