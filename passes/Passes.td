//===- Passes.td - Kiln's graph-, dispatch- and kernel-level passes -*- tablegen -*-===//
#ifndef KILN_PASSES
#define KILN_PASSES

include "mlir/Pass/PassBase.td"

def KilnLowerGraphToLinalg : Pass<"kiln-lower-graph-to-linalg", "mlir::func::FuncOp"> {
  let summary = "lower kiln graph ops without a dedicated kernel strategy to linalg";
  let description = [{
    Rewrites `kiln.matmul` into `linalg.matmul` / `linalg.batch_matmul` when
    the batch dimensions line up (collapsing them with reshapes, which are
    views), and into a `linalg.generic` contraction with broadcasting indexing
    maps otherwise; rewrites `kiln.softmax` into `linalg.softmax`; replaces
    the transformer ops (`kiln.gelu`, `kiln.layer_norm`, `kiln.rms_norm`,
    `kiln.rotary_embedding`) by their decompositions
    (dialects/kiln/Decompositions.cpp). `kiln.attention` stays whole: it
    becomes its own dispatch, and `kiln-decompose-attention` is its
    fallback inside the kernel. A `kiln.matmul` with an `acc_type` sums in
    that type (the init of the contraction) and rounds the result to the
    element type after.

    With `keep-norms` (the cuda target), `kiln.layer_norm` and
    `kiln.rms_norm` over the last dim with static shapes stay whole: each
    becomes its own dispatch, which the `row-fused` strategy runs as one
    kernel (decomposed inside it by `kiln-decompose-aggregates`).

    Before:
    ```mlir
    %y = kiln.matmul %x, %w : tensor<2x8x16xf32>, tensor<16x4xf32> -> tensor<2x8x4xf32>
    ```
    After:
    ```mlir
    %c = tensor.collapse_shape %x [[0, 1], [2]] : tensor<2x8x16xf32> into tensor<16x16xf32>
    %z = linalg.fill ins(%zero : f32) outs(%e : tensor<16x4xf32>) -> tensor<16x4xf32>
    %m = linalg.matmul ins(%c, %w : ...) outs(%z : tensor<16x4xf32>) -> tensor<16x4xf32>
    %y = tensor.expand_shape %m [[0, 1], [2]] output_shape [2, 8, 4] : ...
    ```
  }];
  let options = [
    Option<"keepNorms", "keep-norms", "bool", /*default=*/"false",
           "Keep last-dim layer and RMS norms with static shapes whole">
  ];
  let dependentDialects = ["mlir::linalg::LinalgDialect",
                           "mlir::tensor::TensorDialect",
                           "mlir::arith::ArithDialect",
                           "mlir::math::MathDialect"];
}

def KilnConvertPrecision : Pass<"kiln-convert-precision", "mlir::ModuleOp"> {
  let summary = "run contractions on f16 or bf16 operands (kiln compile --precision)";
  let description = [{
    Every f32 `kiln.matmul` becomes a matmul of f16 or bf16 operands that
    accumulates in f32 (`acc_type = f32`), as tensor cores do, rounding its
    result to the narrow type once; an elementwise extension
    gives its users f32 again, so softmax, normalization statistics and
    everything else still compute in f32, and the model's inputs and outputs
    keep their types. Weights are converted here, once: a constant operand
    (a `dense_resource` weight, a dense attribute, or a `linalg.transpose`
    of one, which `kiln-fold-constant-transposes` folds later) becomes a
    constant of the narrow type, rounded to nearest even, under a resource
    named after the old one with a `.bf16` / `.f16` suffix; activations get
    an elementwise conversion that fusion puts in their producer's kernel.
    Contractions of other types (f16 or bf16 models, f64, integers) are left
    as they are, and so are contractions over fewer than 16 elements (no sum
    for a tensor core to speed up; rotary embeddings' outer product of
    positions and frequencies, whose angles need f32 at long positions). An
    f32 `kiln.attention` (head size 16 or more) takes narrowed query, key,
    value and bias with `softmax_type = f32`: its products sum in f32 and
    its scores and softmax stay f32, only the probabilities are rounded for
    the second product (what flash attention does in registers); its result
    is extended back to f32 like a matmul's.

    Before (`precision=bf16`):
    ```mlir
    %w = arith.constant dense_resource<fc.weight> : tensor<64x10xf32>
    %y = kiln.matmul %x, %w : tensor<8x64xf32>, tensor<64x10xf32> -> tensor<8x10xf32>
    ```
    After:
    ```mlir
    %w = arith.constant dense_resource<fc.weight.bf16> : tensor<64x10xbf16>
    %xn = linalg.generic ... arith.truncf ... -> tensor<8x64xbf16>
    %p = kiln.matmul %xn, %w {acc_type = f32} : tensor<8x64xbf16>, tensor<64x10xbf16> -> tensor<8x10xbf16>
    %y = linalg.generic ... arith.extf ... -> tensor<8x10xf32>
    ```
  }];
  let options = [
    Option<"precision", "precision", "std::string", "\"bf16\"",
           "the operand type of contractions: fp16 or bf16">
  ];
  let dependentDialects = ["mlir::linalg::LinalgDialect",
                           "mlir::tensor::TensorDialect",
                           "mlir::arith::ArithDialect"];
}

def KilnLowerBf16MmaSync : Pass<"kiln-lower-bf16-mma-sync"> {
  let summary = "bf16 nvgpu.mma.sync -> nvvm.mma.sync (MLIR 22's conversion lacks it)";
  let description = [{
    MLIR 22's `convert-nvgpu-to-nvvm` fails on bf16 `nvgpu.mma.sync`. This
    pass rewrites m16n8k16 bf16 ones with f32 accumulators into
    `nvvm.mma.sync` with bf16 multiplicand types: each fragment register
    (`vector<2xbf16>`) bitcast to i32, the accumulator's four f32 elements
    extracted and the result struct's put back into a `vector<2x2xf32>`.
    It runs first in the GPU binary pipeline; the kernel IR the simulator
    runs keeps `nvgpu.mma.sync`.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect", "mlir::NVVM::NVVMDialect",
                           "mlir::vector::VectorDialect"];
}

def KilnLowerWarpgroupFragments : Pass<"kiln-lower-warpgroup-fragments"> {
  let summary = "wgmma accumulators read and written as registers -> the NVVM struct's elements";
  let description = [{
    A flash kernel reads a `!nvgpu.warpgroup.accumulator`'s registers (and
    writes them back) through `unrealized_conversion_cast` to and from its
    f32 values per thread, in the D fragment's order; nvgpu has no op for
    it. Right before `convert-nvgpu-to-nvvm`, which makes an accumulator of
    M x N an LLVM struct of M/64 structs of N/2 f32, this pass rewrites each
    such cast into `llvm.extractvalue` / `llvm.insertvalue` on that struct
    behind a cast to the struct type, which the conversion and
    `reconcile-unrealized-casts` fold. The kernel IR the simulator runs
    keeps the casts.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect"];
}

def KilnTransposeUnalignedWeights : Pass<"kiln-transpose-unaligned-weights", "mlir::func::FuncOp"> {
  let summary = "store matmul weights [N, K] where a GPU GEMM strategy reads them along K (cuda)";
  let description = [{
    A `linalg.matmul(A, W)` whose W is a constant [K, N] becomes a
    contraction reading `linalg.transpose(W)` ([N, K]) with the map
    (m, n, k) -> (n, k) when
    - W is f16/bf16 with N not a multiple of 8 and K a multiple of 8
      (GPT-2's lm_head, 768 x 50257), so that the tensor-core GEMM can copy
      W in 16-byte chunks along K; or
    - the product has at most 16 rows (M: the loops the output reads and W
      does not) and K is a multiple of a 16-byte chunk (f16, bf16 or f32),
      so that gemm-small-m streams each column of W along K.
    `kiln-fold-constant-transposes`, run after it, stores the transposed
    bytes. A W that a generic computes from its indices alone (the decoding
    of MatMulNBits' 4-bit weights, whose packed bytes run along K) is
    computed [N, K] instead, whatever M (its K a multiple of 8): the same
    body with its two indices swapped, so that a chunk along K shares its
    packed bytes. Part of the cuda target's dispatch pipeline.
  }];
  let dependentDialects = ["mlir::linalg::LinalgDialect",
                           "mlir::tensor::TensorDialect"];
}

def KilnFuseWeightDecode : Pass<"kiln-fuse-weight-decode", "mlir::func::FuncOp"> {
  let summary = "move the decoding of packed weights into the GEMM that reads them";
  let description = [{
    Runs on dispatch IR after kiln-select-strategies. A dispatch that only
    decodes weights (`isWeightDecode`: one all-parallel generic over
    constants, such as the dequantization of a com.microsoft MatMulNBits
    weight, `W[k][n] = (q - zero) * scale` from 4-bit integers) and whose
    result one dispatch of the listed strategies reads once, as an operand
    of its contraction, becomes part of that dispatch (at its place, with
    its configuration). The strategy then decodes the weight where it reads
    it: `cpu-gemm` per column panel (kiln-cpu-tile-and-vectorize fuses the
    decoding into the panel loop, into a panel-sized buffer that stays in
    cache), `gemm-small-m` in registers, element by element, as it streams
    the packed bytes. The decoded weight never goes to memory.
  }];
  let options = [
    ListOption<"strategies", "strategies", "std::string",
               "the strategies that decode an operand where they read it">,
  ];
  let dependentDialects = ["kiln::KilnDialect", "mlir::linalg::LinalgDialect"];
}

def KilnCpuPackWeights : Pass<"kiln-cpu-pack-weights", "mlir::ModuleOp"> {
  let summary = "store constant GEMM weights in the column panels the CPU GEMM reads (cpu)";
  let description = [{
    A contraction reading a constant W[K, N] as (k, n), n the innermost dim
    of its output and N a multiple of `panel-columns` (at least two
    panels), becomes one over W'[N / P, K, P] = transpose(reshape(W)) with
    the n loop split into (panel, column), its output reshaped [.., N / P,
    P] and collapsed back after it. The CPU GEMM's column panels are then
    contiguous slices of the weight, read in place instead of copied at
    every call. W' is a new constant (a resource `<key>.panels<P>`), made
    once per weight however many functions (prefill, decode) read it. Part
    of the cpu target's dispatch pipeline.
  }];
  let options = [
    Option<"panelColumns", "panel-columns", "int64_t", "16",
           "columns per panel (the CPU's register block width)">,
  ];
  let dependentDialects = ["mlir::linalg::LinalgDialect",
                           "mlir::tensor::TensorDialect"];
}

def KilnFoldConstantTransposes : Pass<"kiln-fold-constant-transposes", "mlir::func::FuncOp"> {
  let summary = "transpose constant weights at compile time";
  let description = [{
    Exporters write `Linear` layers as `Gemm(transB=1)` or as `MatMul` of a
    `Transpose`d weight, which would otherwise transpose every weight on
    every run. This pass replaces a `linalg.transpose` of a constant (a
    `dense_resource` weight or a dense attribute) with a constant holding
    the transposed bytes. A new resource is named after the old one with a
    `.T` suffix; the original disappears with its last use.

    Before:
    ```mlir
    %w = arith.constant dense_resource<fc.weight> : tensor<10x128xf32>
    %e = tensor.empty() : tensor<128x10xf32>
    %t = linalg.transpose ins(%w : tensor<10x128xf32>) outs(%e : tensor<128x10xf32>) permutation = [1, 0]
    ```
    After:
    ```mlir
    %t = arith.constant dense_resource<fc.weight.T> : tensor<128x10xf32>
    ```
  }];
  let dependentDialects = ["mlir::arith::ArithDialect"];
}

def KilnFormDispatches : Pass<"kiln-form-dispatches", "mlir::func::FuncOp"> {
  let summary = "wrap every kernel's worth of work into a kiln.dispatch region";
  let description = [{
    Every compute op (a linalg op, `linalg.softmax`, `kiln.attention`, or
    any other op that is neither a constant, a `tensor.empty` nor a
    reshape) becomes the root of one `kiln.dispatch`, whose `strategy`
    names the kind of kernel the root calls for (`"gemm"`,
    `"elementwise"`, `"reduction"`, `"attention-fallback"`, `"generic"`). Producers that cost nothing to recompute are cloned
    into the region: `tensor.empty`, `linalg.fill` of a scalar, and small
    constants (at most `max-inline-constant-elements` elements, or splats).
    Large constants (weights) and reshapes stay outside: weights become
    dispatch operands, and reshapes of contiguous tensors are views the
    launch program resolves without a kernel. The kernel strategy is left
    to kiln-select-strategies, which needs the target.

    Before:
    ```mlir
    %e = tensor.empty() : tensor<8xf32>
    %r = linalg.generic {...} ins(%x : tensor<8xf32>) outs(%e : tensor<8xf32>) {...}
    ```
    After:
    ```mlir
    %r = kiln.dispatch(%x) : (tensor<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: tensor<8xf32>):
      %e = tensor.empty() : tensor<8xf32>
      %g = linalg.generic {...} ins(%a : tensor<8xf32>) outs(%e : tensor<8xf32>) {...}
      kiln.yield %g : tensor<8xf32>
    }
    ```
  }];
  let options = [
    Option<"maxInlineConstantElements", "max-inline-constant-elements",
           "int64_t", /*default=*/"64",
           "Constants with at most this many elements are cloned into dispatches">
  ];
  let dependentDialects = ["kiln::KilnDialect"];
}

def KilnOutlineDispatches : Pass<"kiln-outline-dispatches", "mlir::ModuleOp"> {
  let summary = "outline each kiln.dispatch into a kernel function on buffers";
  let description = [{
    For every `kiln.dispatch` in every function, creates a kernel function
    `@<function>_dispatch_<n>` in the nested `module @kernels` (created on
    first use; codegen compiles that module whole) that takes one memref per
    dispatch input and one per result (destination-passing style), then one
    `index` per symbolic dim of those buffers, and marks it `kiln.kernel`
    (with the dispatch's strategy configuration as `kiln.config`).
    (kiln-kernel-bare-abi later turns memrefs with symbolic dims into base
    pointers viewed at their shape from those sizes.)
    Inputs enter the tensor world through `bufferization.to_tensor restrict`
    (read-only); results leave it through
    `bufferization.materialize_in_destination`, so that empty-tensor
    elimination makes the kernel compute straight into its output buffer.
    The dispatch op stays where it was and records the kernel's name in its
    `kernel` attribute (`@kernels::@main_dispatch_0`); the launch program is
    built from it.

    After:
    ```mlir
    module @kernels {
    func.func @main_dispatch_0(%arg0: memref<8xf32>, %arg1: memref<8xf32>) attributes {kiln.kernel} {
      %x = bufferization.to_tensor %arg0 restrict : memref<8xf32> to tensor<8xf32>
      ...
      bufferization.materialize_in_destination %r in restrict writable %arg1 : (tensor<8xf32>, memref<8xf32>) -> ()
      return
    }
    }
    ```
  }];
  let dependentDialects = ["mlir::func::FuncDialect",
                           "mlir::bufferization::BufferizationDialect",
                           "mlir::memref::MemRefDialect"];
}

def KilnDecomposeAggregates : Pass<"kiln-decompose-aggregates", "mlir::func::FuncOp"> {
  let summary = "decompose aggregate linalg ops (softmax) in kernels into generics";
  let description = [{
    Ops implementing `AggregatedOpInterface` (today `linalg.softmax`) become
    the `linalg.generic`s they stand for (max, exp-sum, divide) in kernel
    functions, so that the tiling and mapping strategies only see
    structured ops; so do the `kiln.layer_norm` and `kiln.rms_norm` that a
    target kept whole (`kiln-lower-graph-to-linalg` with `keep-norms`),
    whose generics the `row-fused` strategy then runs as one kernel.
    Functions without `kiln.kernel` are left alone.
  }];
  let dependentDialects = ["mlir::linalg::LinalgDialect",
                           "mlir::tensor::TensorDialect",
                           "mlir::arith::ArithDialect",
                           "mlir::math::MathDialect"];
}

def KilnRaiseActivations : Pass<"kiln-raise-activations", "mlir::func::FuncOp"> {
  let summary = "decomposed GELU (erf and tanh forms) and SiLU into kiln ops";
  let description = [{
    Finds regions of elementwise generics that compute one tensor from one
    input `x` and uniform constants, evaluates each as a scalar function of
    x at sample points over both tails and the knee (in doubles, the bodies
    interpreted), and replaces it by `kiln.gelu` (erf form),
    `kiln.gelu {tanh_approximation}` or `kiln.silu` when it is that function
    within a few units in the last place of the type it computes in. Any
    factor order, any split into nodes, casts in between: the numbers
    judge, not the spelling. A region whose intermediates are read
    elsewhere, or that computes anything else, is left alone. The function
    records the counts in `kiln.raised` (`gelu`, `silu`).

    Before (BERT's erf GELU, one generic per node):
    ```mlir
    %d = linalg.generic ... ins(%x, %c1_41) { arith.divf } -> tensor<8x3072xf32>
    %e = linalg.generic ... ins(%d) { math.erf } -> tensor<8x3072xf32>
    %a = linalg.generic ... ins(%e, %c1) { arith.addf } -> tensor<8x3072xf32>
    %m = linalg.generic ... ins(%x, %a) { arith.mulf } -> tensor<8x3072xf32>
    %y = linalg.generic ... ins(%m, %c0_5) { arith.mulf } -> tensor<8x3072xf32>
    ```
    After:
    ```mlir
    %y = kiln.gelu %x : tensor<8x3072xf32>
    ```
  }];
  let dependentDialects = ["kiln::KilnDialect"];
}

def KilnRaiseNorms : Pass<"kiln-raise-norms", "mlir::func::FuncOp"> {
  let summary = "decomposed LayerNorm and RMSNorm into kiln.layer_norm and kiln.rms_norm";
  let description = [{
    Finds normalizations over the last dim as exporters write them: a sum
    over the last dim (of x * x, or of d * d where d = x - mean(x)), a
    per-row chain from that sum to a factor, the row multiplied (or
    divided) by the factor, then optionally a cast, a per-column scale and,
    for the layer norm, a per-column bias. The per-row chains are judged by
    their values (passes/Raising.h): the mean must be sum / D, the factor
    1 / sqrt(sum / D + eps) (or, for a division, sqrt(sum / D + eps)),
    which also gives epsilon. Gemma's `(1 + w)` is a per-column scale like
    any other. A chain that differs, or whose intermediates are read
    elsewhere, is left alone. The function records the counts in
    `kiln.raised` (`layer_norm`, `rms_norm`).

    After (LLaMA's Pow, ReduceMean, Add, Sqrt, Div, Mul, Mul):
    ```mlir
    %y = kiln.rms_norm %x, %w {axis = -1 : i64, epsilon = 1.0e-06 : f32}
        : tensor<1x8x64xf32>, tensor<64xf32>
    ```
  }];
  let dependentDialects = ["kiln::KilnDialect"];
}

def KilnRaiseRotary : Pass<"kiln-raise-rotary", "mlir::func::FuncOp"> {
  let summary = "decomposed rotary embeddings into kiln.rotary_embedding";
  let description = [{
    Finds `x * cos + rotate(x) * sin` over [B, H, S, D] heads as exporters
    write it (Slice, Neg and Concat as index generics or extract_slices;
    cos and sin tables gathered from a cache or computed from positions)
    by tracing each element of a head exactly (passes/ElementTrace.h): the
    first 2R elements must pair up by halves or interleaved, each
    `x[d] cos - x[partner] sin` for a pair's first element and `+` for its
    second, the tables read per batch and position (not per head), both
    elements of a pair at the same angle; the rest of the head passes
    through (partial rotary). It becomes one `kiln.rotary_embedding` whose
    [B, S, R] cos and sin are gathered from the tables. Anything that
    differs is left alone. The function records the count in
    `kiln.raised` (`rotary_embedding`).

    After (LLaMA's rotate-half RoPE of q, 4 heads of 16):
    ```mlir
    %cos = linalg.generic ... ins(%table) -> tensor<1x8x8xf32>
    %sin = linalg.generic ... ins(%table_0) -> tensor<1x8x8xf32>
    %q = kiln.rotary_embedding %x, %cos, %sin
        : tensor<1x4x8x16xf32>, tensor<1x8x8xf32>
    ```
  }];
  let dependentDialects = ["kiln::KilnDialect"];
}

def KilnRaiseAttention : Pass<"kiln-raise-attention", "mlir::func::FuncOp"> {
  let summary = "decomposed attention from exports into kiln.attention";
  let description = [{
    Finds scaled dot-product attention as exporters write it (the scores
    contraction of q and a transposed k, scaled by constants, masked by
    additive terms or a Where against a very negative fill, a softmax over
    the keys, the contraction with v) and replaces the chain by one
    `kiln.attention`: constant scales fold into `scale`, a mask the graph
    computes from constants that is the causal pattern becomes
    `causal_offset`, other masks become `bias`, a transposed k is
    transposed back (folding transposes), and K and V repeated over query
    heads (grouped-query attention) are read before the repetition. Masks
    and scales are recognized by value: a constant-only subgraph is
    evaluated (passes/ConstantEval.cpp). A chain that differs in any step,
    or whose intermediate values are used elsewhere, is left alone. The
    function records how many it raised as `kiln.raised = {attention = N}`.

    Before:
    ```mlir
    %s = kiln.matmul %q, %kt : tensor<1x4x8x16xf32>, tensor<1x4x16x8xf32> -> tensor<1x4x8x8xf32>
    %m = linalg.generic ... ins(%s, %mask) { arith.addf } -> tensor<1x4x8x8xf32>
    %p = kiln.softmax %m {axis = 3 : i64} : tensor<1x4x8x8xf32>
    %o = kiln.matmul %p, %v : tensor<1x4x8x8xf32>, tensor<1x4x8x16xf32> -> tensor<1x4x8x16xf32>
    ```
    After (a causal mask):
    ```mlir
    %o = kiln.attention %q, %k, %v {causal_offset = 0 : i64, scale = 1.0 : f64, ...}
    ```
  }];
  let options = [
    Option<"halfOnly", "half-only", "bool", /*default=*/"false",
           "raise only chains of f16 or bf16 scores (a target whose "
           "attention kernel takes no f32 operands)">,
    Option<"symbolicDims", "symbolic-dims", "bool", /*default=*/"false",
           "also raise chains with symbolic batch, query or key counts (4-D, "
           "static heads and head sizes; masks stay biases: one additive "
           "term), for a target whose attention kernel takes them">,
    Option<"symbolicMinHead", "symbolic-min-head", "int64_t",
           /*default=*/"0",
           "with symbolic-dims: the smallest head size (q·k and v) of a "
           "symbolic chain the target's kernel takes">,
    Option<"symbolicMaxHead", "symbolic-max-head", "int64_t",
           /*default=*/"0",
           "with symbolic-dims: the largest head size (q·k and v) of a "
           "symbolic chain the target's kernel takes (0: any)">,
    Option<"symbolicHeadMultiple", "symbolic-head-multiple", "int64_t",
           /*default=*/"1",
           "with symbolic-dims: head sizes of symbolic chains must be "
           "multiples of this">
  ];
  let dependentDialects = ["mlir::linalg::LinalgDialect",
                           "mlir::tensor::TensorDialect",
                           "mlir::arith::ArithDialect"];
}

def KilnCpuFlashAttention : Pass<"kiln-cpu-flash-attention", "mlir::func::FuncOp"> {
  let summary = "attention in CPU kernels as one tiled loop nest with an online softmax";
  let description = [{
    The `cpu-flash-attention` strategy. In kernel functions (`kiln.kernel`)
    whose `kiln.config` names it, still on tensors, each `kiln.attention`
    becomes loops over (batch, query head, query row) and, inside, over
    blocks of `key_block` keys (default 8): the block's scores are one
    vector (with 8 keys and a head in whole 8-lane chunks, each key's
    products summed into 8 lanes by FMAs and the keys' lanes summed across
    by a tree of shuffles; otherwise a D-wide product and a horizontal sum
    per key), capped, biased
    and masked (keys past the end, or past `i + causal_offset`: the loop
    stops at the last visible block), and folded into a running max, sum
    and Dv-wide accumulator (online softmax); the row is divided by the sum
    (0 for a row with every key masked) and written with one
    `vector.transfer_write`. No [S, L] buffer exists. Grouped-query heads
    read their K/V head in place; batch, query and key counts may be
    symbolic. f16/bf16 operands are widened as they are read and the
    arithmetic is f32. Runs first in the CPU kernel pipeline.

    Before:
    ```mlir
    func.func @main_dispatch_0(...) attributes {kiln.kernel,
        kiln.config = {strategy = "cpu-flash-attention"}} {
      %o = kiln.attention %q, %k, %v {causal_offset = 0 : i64, scale = 0.125 : f64}
          : tensor<1x4x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x8xf32> -> tensor<1x4x?x8xf32>
    ```

    After: `scf.for` over batch, heads and rows around an `scf.for` over key
    blocks carrying (max, sum, vector<Dv>) and a `vector.transfer_write`
    of the row.
  }];
  let dependentDialects = ["mlir::scf::SCFDialect",
                           "mlir::vector::VectorDialect",
                           "mlir::math::MathDialect",
                           "mlir::tensor::TensorDialect",
                           "mlir::arith::ArithDialect"];
}

def KilnDecomposeAttention : Pass<"kiln-decompose-attention", "mlir::func::FuncOp"> {
  let summary = "attention's fallback strategy: kiln.attention in kernels into linalg";
  let description = [{
    `kiln.attention` stays one op through dispatch formation and is the root
    of its own dispatch (strategy `"attention-fallback"`). In kernel
    functions (`kiln.kernel`), still on tensors, this pass replaces it by
    its decomposition (dialects/kiln/Decompositions.cpp: K and V repeated
    over the query heads, q and k scaled by sqrt(scale) each, the scores
    contraction, softcap, bias and causal mask, a softmax that gives 0 for
    fully masked rows, the contraction with V), then runs on that kernel
    the stages the graph pipeline ran on the decomposition when it
    happened there (canonicalize, `kiln-fuse-elementwise`, canonicalize,
    CSE), so the kernel holds the same linalg ops, with the same numerics,
    that the graph-level lowering gave as separate dispatches. Runs first in the CPU and GPU kernel pipelines. Attention with
    symbolic dims is an error. Functions without `kiln.kernel` are left
    alone.

    Before:
    ```mlir
    func.func @main_dispatch_0(...) attributes {kiln.kernel, kiln.strategy = "attention-fallback"} {
      %o = kiln.attention %q, %k, %v {causal_offset = 0 : i64, scale = 0.125 : f64}
          : tensor<1x4x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32> -> tensor<1x4x3x8xf32>
    ```
    After:
    ```mlir
      %kr = linalg.generic {...} ins(...) outs(...)   // K repeated and scaled
      %s = linalg.generic {... "reduction"]} ins(%qs, %kr ...)   // q k^T
      ...                                          // mask, max, exp, sum
      %o = linalg.generic {... "reduction"]} ins(%p, %vr ...)   // p v
    ```
  }];
  let dependentDialects = ["mlir::linalg::LinalgDialect",
                           "mlir::tensor::TensorDialect",
                           "mlir::arith::ArithDialect",
                           "mlir::math::MathDialect",
                           "mlir::affine::AffineDialect"];
}

def KilnCpuTileAndVectorize : Pass<"kiln-cpu-tile-and-vectorize", "mlir::func::FuncOp"> {
  let summary = "tile linalg ops of a CPU kernel to register-sized tiles and vectorize them";
  let description = [{
    Runs on kernel functions (marked `kiln.kernel`) while they are still on
    tensors, after `kiln-decompose-aggregates`. Contractions (matmul, batch
    matmul, and generics with one reduction loop whose operands are all
    projected permutations) are tiled in two levels. First into column
    panels `n-tile` wide (batch loops by 1; an N extent with no
    multiple-of-8 divisor takes full-width panels with the remainder
    peeled). Then, when more than one row block reads a panel, the panel's
    rhs is copied into a contiguous buffer (packing: one pass over memory
    instead of a strided walk per row block), and the panel is tiled into
    `m-tile` x `n-tile` register blocks with the reduction tiled by 1 and
    vectorized into `vector.contract`; the accumulator read/write pair is
    later hoisted out of the reduction loop, so the block stays in
    registers. Other linalg ops are tiled to 1 on all but the innermost
    loop, which is tiled to the largest divisor of its extent that is at
    most `vector-width`, then vectorized. Tile sizes divide the (static)
    extents, so no masking is needed. An op that the
    vectorizer rejects is left alone and lowered to scalar loops later.
  }];
  let options = [
    Option<"mTile", "m-tile", "int64_t", /*default=*/"6", "Rows of the matmul register block">,
    Option<"nTile", "n-tile", "int64_t", /*default=*/"16", "Columns of the matmul register block">,
    Option<"vectorWidth", "vector-width", "int64_t", /*default=*/"16",
           "Largest innermost tile for elementwise and reduction ops">
  ];
  let dependentDialects = ["mlir::scf::SCFDialect",
                           "mlir::vector::VectorDialect",
                           "mlir::tensor::TensorDialect",
                           "mlir::linalg::LinalgDialect"];
}

def KilnCpuLowerVectors : Pass<"kiln-cpu-lower-vectors", "mlir::func::FuncOp"> {
  let summary = "lower high-level vector ops to what the LLVM conversion accepts";
  let description = [{
    Lowers `vector.contract` into outer products (one FMA per row of the
    register block), `vector.multi_reduction` into inner-parallel
    reductions, transfers into plain loads and stores, and broadcasts,
    transposes and shape casts into their LLVM-friendly forms. Runs after
    bufferization and after the accumulator transfers are hoisted.
  }];
  let dependentDialects = ["mlir::vector::VectorDialect",
                           "mlir::scf::SCFDialect",
                           "mlir::memref::MemRefDialect",
                           "mlir::math::MathDialect",
                           "mlir::arith::ArithDialect"];
}

def KilnExpandMath : Pass<"kiln-expand-math"> {
  let summary = "math functions as polynomials (no libm or libdevice calls)";
  let description = [{
    Rewrites exp, tanh, erf, log and friends into the polynomial
    approximations of the math dialect, on scalars and vectors. GPU kernels
    then need no libdevice, and CPU kernels stay vectorized. Runs on any op
    (a func.func, a gpu.module).
  }];
  let dependentDialects = ["mlir::math::MathDialect", "mlir::arith::ArithDialect",
                           "mlir::vector::VectorDialect"];
}

def KilnFuseElementwise : Pass<"kiln-fuse-elementwise"> {
  let summary = "Elementwise fusion that never recomputes a producer";
  let description = [{
    Upstream's linalg elementwise fusion (with its reshape propagation,
    canonicalization and constant folding), except that a producer is fused
    into a consumer only when the consumer reads each produced element once:
    the operand's indexing map is a permutation of the consumer's loops. A
    GELU feeding a broadcasting MatMul stays a kernel of its own instead of
    being evaluated once per multiply-add; a prologue feeding a row
    reduction, or a chain of elementwise ops, still fuses. A
    `linalg.transpose` (data movement, no arithmetic) folds into every
    `linalg.generic` that reads it, through the composed indexing map: a
    contraction reads the transposed operand in place, and `q @ k^T` has no
    kernel or buffer for `k^T`. A transpose or a cheap gather (an
    all-parallel generic without inputs, at most 8 scalar ops and one
    `tensor.extract`) that only `tensor.extract` reads in other generics
    (gathers: slices, concatenations) is computed where it is read, so RoPE's rotate-half
    (transpose, two half slices, one negated, the concatenation, the
    cos/sin products) is one generic.
  }];
  let dependentDialects = ["mlir::linalg::LinalgDialect",
                           "mlir::affine::AffineDialect",
                           "mlir::tensor::TensorDialect"];
}

def KilnNarrowProducers : Pass<"kiln-narrow-producers"> {
  let summary = "a value every reader rounds to a narrower type is produced rounded";
  let description = [{
    When every reader of an elementwise `linalg.generic`'s result (all
    parallel, identity output map) is a `linalg.generic` that rounds each
    element it reads (`arith.truncf` of the input's block argument, or of a
    `tensor.extract` of the result) to one narrower float type, the producer
    rounds before it yields and its result is the narrow tensor; the readers
    read the narrow elements and their `truncf` disappear. Each element is
    rounded once, as before, so the numbers do not change; what changes is
    that the value crosses memory at the narrow width, and that readers
    which only move data (GPT-2's split of the fused QKV projection into
    the narrow q, k and v of its attention) become data movement that a
    consumer can read in place.

    Before:
    ```mlir
    %r = linalg.generic ... -> tensor<8x192xf32>   // bias add
    %q = linalg.generic ... {
      %e = tensor.extract %r[%i, %j] : tensor<8x192xf32>
      %t = arith.truncf %e : f32 to bf16
      linalg.yield %t : bf16 }
    ```
    After:
    ```mlir
    %r = linalg.generic ... { ... arith.truncf ... } -> tensor<8x192xbf16>
    %q = linalg.generic ... {
      %e = tensor.extract %r[%i, %j] : tensor<8x192xbf16>
      linalg.yield %e : bf16 }
    ```
  }];
  let dependentDialects = ["mlir::arith::ArithDialect",
                           "mlir::tensor::TensorDialect"];
}

def KilnCpuOutlineTasks : Pass<"kiln-cpu-outline-tasks", "mlir::ModuleOp"> {
  let summary = "parallel loops at the top of CPU kernels become task functions";
  let description = [{
    Each `scf.for` marked `kiln.parallel` (a tile loop of a parallel dim)
    that sits at the top of a CPU kernel (`kiln.kernel`) and holds enough
    work becomes a private function `<kernel>_task<i>(%begin, %end,
    captured...)` that runs iterations [begin, end) of it, and the loop a
    call of it over every iteration. Captured memrefs travel as their base
    pointer, offset and dynamic sizes and strides and are viewed again in
    the task; constants are recomputed there. The task carries
    `kiln.task_grain`, the fewest iterations worth a thread (from a count of
    its operations). The kernel gains a last argument, the runtime's context
    (`!llvm.ptr`), and `kiln.cpu_context`; kiln-cpu-lower-task-calls hands
    each call to the context's `parallel_for` after the LLVM conversion.

    Then, with every loop left running its iterations in order, a buffer
    of static shape that a loop's iterations each allocate and free (a
    panel of decoded weights) is allocated once before the outermost such
    loop of its function (a task's own range loop included: one buffer per
    thread) and freed after it.
  }];
  let dependentDialects = ["mlir::memref::MemRefDialect",
                           "mlir::arith::ArithDialect",
                           "mlir::scf::SCFDialect",
                           "mlir::func::FuncDialect",
                           "mlir::LLVM::LLVMDialect"];
}

def KilnCpuLowerTaskCalls : Pass<"kiln-cpu-lower-task-calls", "mlir::ModuleOp"> {
  let summary = "calls of CPU task functions go through the runtime's parallel_for";
  let description = [{
    Runs on the LLVM dialect, after the CPU kernels are converted. Each call
    of a task function (`kiln.task_grain`, from kiln-cpu-outline-tasks) in a
    kernel that takes the runtime's context becomes: its captured values
    stored into a stack struct, and `ctx->parallel_for(ctx, @<task>_run,
    &struct, end - begin, grain)`, where `<task>_run(data, begin, end)`
    loads them back and calls the task. The context's first field is
    `parallel_for` (runtime/src/thread_pool.h); the kernel is marked
    `passthrough = ["kiln-cpu-context"]` so that its entry wrapper passes
    the context.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect"];
}

def KilnKernelBareAbi : Pass<"kiln-kernel-bare-abi", "mlir::func::FuncOp"> {
  let summary = "kernel buffers with symbolic dims become base pointers viewed at their shape";
  let description = [{
    An outlined kernel (`kiln.kernel`) takes one memref per buffer, then one
    `index` per symbolic dim of those buffers, in order. Each memref argument
    with symbolic dims becomes a rank-0 memref (its base pointer; bare-pointer
    calling convention) and is viewed at its row-major shape with
    `memref.reinterpret_cast` from its sizes. The CPU pipeline runs this
    after vector hoisting (which a view in front of the accumulator would
    block), the GPU pipeline first.

    Before: `func.func @k(%x: memref<?x8xf32>, %n: index)`
    After:  `func.func @k(%x: memref<f32>, %n: index)` with
    `%v = memref.reinterpret_cast %x to offset: [0], sizes: [%n, 8], strides: [8, 1]`
  }];
  let dependentDialects = ["mlir::memref::MemRefDialect",
                           "mlir::arith::ArithDialect"];
}

def KilnGpuSinkViews : Pass<"kiln-gpu-sink-views", "mlir::func::FuncOp"> {
  let summary = "rebuild memref views with symbolic dims inside the GPU launches that read them";
  let description = [{
    A buffer with symbolic dims reaches a kernel function as a rank-0 memref
    (its base pointer) and is viewed at its shape with
    `memref.reinterpret_cast` (see kiln-outline-dispatches); reshapes of it
    are views too. A `gpu.launch` that captured such a view would become a
    kernel taking a memref descriptor, which the bare-pointer calling
    convention cannot pass. This pass clones the chain of views (of memrefs
    with dynamic shapes) into each launch that uses it, so the launch
    captures the base pointer and the index sizes instead: kernels take one
    pointer per buffer and one integer per size, on every target. Other
    scalars computed on the host side from sizes (a mean's element count as
    a float) are recomputed inside the launch from the sizes.
  }];
  let dependentDialects = ["mlir::memref::MemRefDialect",
                           "mlir::arith::ArithDialect"];
}

def KilnGpuOrderKernelArgs : Pass<"kiln-gpu-order-kernel-args", "mlir::ModuleOp"> {
  let summary = "put an outlined GPU kernel's buffer arguments before its scalars";
  let description = [{
    Runs after `gpu-kernel-outlining`, which orders a kernel's arguments by
    first use. The launch program passes a launch's buffers first and then
    its sizes (int64), so this pass permutes each kernel's arguments (and
    the operands of every `gpu.launch_func` of it) to memrefs first, then
    the other arguments, each group in its original order.

    Before: `gpu.func @k(%a: memref<f32>, %n: index, %b: memref<f32>)`
    After:  `gpu.func @k(%a: memref<f32>, %b: memref<f32>, %n: index)`
  }];
}

def KilnGpuHopperAbi : Pass<"kiln-gpu-hopper-abi", "mlir::ModuleOp"> {
  let summary = "large shared memory and TMA descriptors as the runtime passes them";
  let description = [{
    Runs on the kernel module (host functions with `gpu.launch_func` and
    their `gpu.module`s) before the NVVM lowering, after the simulator's
    kernel IR has been taken:

    - a kernel whose workgroup buffers take more than the 48 KiB of static
      shared memory, or that swizzles them (TMA loads, wgmma descriptors:
      the swizzle is defined on addresses), gets them as views of
      `gpu.dynamic_shared_memory`
      instead, each 1024-byte aligned (the base rounded up at run time, the
      layout the simulator models), and its launches ask for the bytes
      (`dynamic_shared_memory_size`, which the artifact records);
    - a `!nvgpu.tensormap.descriptor` kernel argument becomes an
      `!llvm.ptr` (the device address of the 128-byte descriptor the
      runtime encodes) cast back to the descriptor type, which
      convert-nvgpu-to-nvvm resolves.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect", "mlir::arith::ArithDialect",
                           "mlir::memref::MemRefDialect"];
}

#endif // KILN_PASSES
