//===- Strategies.td - GPU kernel strategies and their selection -*- tablegen -*-===//
//
// One pass per kernel strategy. Each applies to the kernel functions whose
// `kiln.config` (chosen by kiln-select-strategies) names it, with the
// numbers that configuration gives; nothing else decides.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_GPU_STRATEGIES
#define KILN_GPU_STRATEGIES

include "mlir/Pass/PassBase.td"

def KilnGpuGemm : Pass<"kiln-gpu-gemm", "mlir::func::FuncOp"> {
  let summary = "GPU GEMM strategy (gemm-simt): shared-memory tiles, register blocks";
  let description = [{
    Runs on bufferized kernel functions whose `kiln.config` selects
    `gemm-simt` (or names it as a part of a composite strategy), with the
    configuration's `tile` (M, N, K), `threads` (x, y) and `register_block`
    (rows, columns); the numbers below are the default configuration. Every
    contraction (a linalg op with
    two inputs whose loops split into batch, M, N and K roles, e.g.
    `linalg.matmul`, `linalg.batch_matmul`, and broadcasting generics) with
    static loop ranges becomes a `gpu.launch`: one 256-thread block per
    64x64 output tile (grid z over the batch), the K loop in steps of 16
    with both operand slices staged in shared memory between barriers
    (coalesced loads along each operand's innermost dimension, zero-filled
    past the edges), and a strided 4x4 register block per thread computed
    by cloning the contraction's body. Several M, N or K loops are
    linearized. A `linalg.fill` of the output by a constant right before the
    contraction becomes the accumulators' initial value.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect"];
}

def KilnGpuGemmMmaSync : Pass<"kiln-gpu-gemm-mma-sync", "mlir::func::FuncOp"> {
  let summary = "GPU GEMM strategy (gemm-mma-sync): tensor cores through mma.sync, a cp.async ring";
  let description = [{
    Runs on bufferized kernel functions whose `kiln.config` selects
    `gemm-mma-sync`, with the configuration's `tile` (BM, BN, BK), `warps`
    (WM, WN) and `stages`. A contraction of f16 or bf16 operands summed in
    f32 becomes a `gpu.launch` of 32*WM*WN threads per BMxBN output tile:
    BK-deep slices of both operands go global -> shared through an S-stage
    ring of `nvgpu.device_async_copy` (16-byte chunks, zero-filled past the
    edges) with a commit group per slice, in each operand's own orientation
    with XOR-swizzled 16-byte chunks; `nvgpu.ldmatrix` (transposed where
    needed) feeds `nvgpu.mma.sync` m16n8k16 with f32 accumulators held in
    registers; the epilogue stores them, guarded at the edges.
    GemmMmaSync.cpp has the details.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::affine::AffineDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::vector::VectorDialect", "mlir::nvgpu::NVGPUDialect",
                           "mlir::LLVM::LLVMDialect"];
}

def KilnGpuFlashAttention : Pass<"kiln-gpu-flash-attention", "mlir::func::FuncOp"> {
  let summary = "GPU attention strategy (flash-attention-mma-sync): one kernel, online softmax, mma.sync";
  let description = [{
    Runs on kernel functions whose `kiln.config` selects
    `flash-attention-mma-sync`, with the configuration's `tile` (BM query
    rows, BN keys) and `stages`, right after bufferization, which leaves
    the op whole on tensors of its operands' buffers (kiln-decompose-
    attention skips these kernels). A
    `kiln.attention` of f16 or bf16 operands becomes one `gpu.launch` of
    BM/16 warps per BM query rows of a (batch, head): Q in registers, K and
    V tiles through an S-stage ring of `nvgpu.device_async_copy`, Q Kᵀ and
    P V on `nvgpu.mma.sync` m16n8k16 with f32 accumulators, the scale,
    softcap, bias and causal mask applied in registers and the softmax
    computed online (running max and sum in f32); KV tiles above the
    causal diagonal are skipped. The result is written where the kernel
    materializes it. FlashAttention.cpp has the details.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::vector::VectorDialect", "mlir::nvgpu::NVGPUDialect",
                           "mlir::math::MathDialect",
                           "mlir::bufferization::BufferizationDialect"];
}

def KilnGpuFlashAttentionWgmma : Pass<"kiln-gpu-flash-attention-wgmma", "mlir::func::FuncOp"> {
  let summary = "GPU attention strategy for sm_90a (flash-attention-wgmma): TMA, mbarriers and wgmma";
  let description = [{
    Runs on kernel functions whose `kiln.config` selects
    `flash-attention-wgmma`, with the configuration's `tile` (64 or 128
    query rows, a warpgroup per 64; 64 keys) and `stages`, right after
    bufferization. A `kiln.attention` of f16 or bf16 operands (static
    head counts; batch, query and key counts static or symbolic) becomes
    one `gpu.launch`: thread 0 loads the Q tile and an
    S-stage ring of K and V tiles with `nvgpu.tma.async.load` (mbarriers
    with transaction counts, 128-byte swizzle, tensor maps over the
    operands' buffers or the strided views they are read through);
    S = Q Kᵀ and O += P V run on `nvgpu.warpgroup.mma` with f32
    accumulators; the scale, softcap, bias, causal mask and online softmax
    run on the accumulators' registers (`unrealized_conversion_cast` to
    f32 values, see kiln-lower-warpgroup-fragments); P goes through shared
    memory. FlashWgmma.cpp has the details.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::vector::VectorDialect", "mlir::nvgpu::NVGPUDialect",
                           "mlir::NVVM::NVVMDialect", "mlir::math::MathDialect",
                           "mlir::bufferization::BufferizationDialect"];
}

def KilnGpuGemmWgmma : Pass<"kiln-gpu-gemm-wgmma", "mlir::func::FuncOp"> {
  let summary = "GPU GEMM strategy for sm_90a (gemm-wgmma): TMA, mbarriers and wgmma";
  let description = [{
    Runs on bufferized kernel functions whose `kiln.config` selects
    `gemm-wgmma`, with the configuration's `tile` (128, 128, 64),
    `stages` and `blocks` (the persistent grid). A contraction
    A[batch.., m, k] * B[k, n] (or B[n, k]) of f16 or bf16 operands
    summed in f32,
    row-major, becomes a warp-specialized `gpu.launch` of three
    warpgroups that walk the 128x128 output tiles: a producer (thread 0
    loads 64-deep slices of A and B with `nvgpu.tma.async.load` into an
    S-stage ring, each stage behind a `full` and an `empty` mbarrier) and
    two consumers (`nvgpu.warpgroup.mma` over 64 rows each, accumulating
    in registers, releasing stages, then the epilogue and the fused
    elementwise consumer from the registers). GemmWgmma.cpp has the
    details.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::vector::VectorDialect",
                           "mlir::nvgpu::NVGPUDialect", "mlir::NVVM::NVVMDialect"];
}

def KilnGpuGemmSmallM : Pass<"kiln-gpu-gemm-small-m", "mlir::func::FuncOp"> {
  let summary = "GPU GEMM strategy for M <= 16 (gemm-small-m): stream the weights in 16-byte chunks";
  let description = [{
    Runs on bufferized kernel functions whose `kiln.config` selects
    `gemm-small-m`, with the configuration's `warps` (per block) and
    `columns` (per warp). A contraction with at most 16 rows whose inputs
    are both K-innermost (the cuda target stores small-M weights [N, K])
    becomes a `gpu.launch` in which each warp computes `columns` output
    columns: its lanes walk K in 16-byte vector loads of B (512 contiguous
    bytes per warp and column, every byte read once) and of A's rows,
    accumulate in f32 registers, sum across lanes with an xor-shuffle
    butterfly, and lane m stores row m, through the fused epilogue when
    there is one. GemmSmallM.cpp has the details.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::affine::AffineDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::vector::VectorDialect"];
}

def KilnGpuCollapseContractionLoops : Pass<"kiln-gpu-collapse-contraction-loops", "mlir::func::FuncOp"> {
  let summary = "fold a contraction's consecutive reduction loops into one K";
  let description = [{
    Runs on graph IR before dispatch formation (cuda). A multiply-accumulate
    generic whose reduction loops are consecutive and read by every operand
    as one contiguous run of dims (a reshape that elementwise fusion pushed
    into it: the output projection over (head, head dim) after attention)
    becomes the same contraction over one loop, its operands viewed through
    collapse_shape, which the tensor-core GEMM strategies take.
  }];
  let dependentDialects = ["mlir::tensor::TensorDialect"];
}

def KilnGpuFuseAttentionLayouts : Pass<"kiln-gpu-fuse-attention-layouts", "mlir::ModuleOp"> {
  let summary = "move the data movement around a flash attention into its dispatch";
  let description = [{
    Runs on dispatch IR after kiln-select-strategies. A dispatch whose
    strategy is a flash attention absorbs the dispatches that only move
    data into its operands (one `linalg.transpose`, or one generic yielding
    an input element or a `tensor.extract` at indices computed from the
    loop indices) when it is their only reader, transitively, and the
    dispatch that only permutes its result when that is the result's only
    reader: GPT-2's split of the QKV projection into heads and the merge of
    the heads after attention cost no kernels. The flash strategy reads and
    writes them as strided views. FuseAttentionLayouts.cpp has the details.
  }];
  let dependentDialects = ["mlir::affine::AffineDialect"];
}

def KilnGpuFuseRows : Pass<"kiln-gpu-fuse-rows", "mlir::ModuleOp"> {
  let summary = "move elementwise producers and consumers into row-fused dispatches";
  let description = [{
    Runs on dispatch IR after kiln-select-strategies. A row-fused dispatch
    (a layer norm, an RMS norm, a softmax) absorbs the elementwise
    dispatches that produce its inputs (a residual add; a scale and mask),
    yielding the produced value as an extra result when others read it,
    and the elementwise dispatch that is the only reader of a result (the
    cast to the GEMMs' operand type): one kernel with the row on chip
    instead of three. A row-reduce dispatch over the last dim whose
    per-row result goes through per-row elementwise steps to one step over
    the whole rows (an exporter's decomposed RMSNorm: sum of squares,
    mean + eps and 1/sqrt, the row scaled) becomes one row-fused dispatch
    first. FuseRows.cpp has the details.
  }];
}

def KilnGpuFuseEpilogues : Pass<"kiln-gpu-fuse-epilogues", "mlir::func::FuncOp"> {
  let summary = "move a GEMM's elementwise consumer into the GEMM's dispatch (a fused epilogue)";
  let description = [{
    Runs on dispatch IR after kiln-select-strategies. A dispatch whose
    strategy applies epilogues in registers (`gemm-mma-sync`,
    `gemm-small-m`) and whose one
    result has one user, a dispatch holding a single elementwise generic
    that reads it with the identity map (bias, GELU, SiLU, residual add,
    scale, cast: `epilogueAccepts`), becomes one dispatch with both bodies,
    at the consumer's place, with the GEMM's configuration. The strategy
    then evaluates the generic's body on the accumulators before the store,
    so the f32 product never goes to memory.
  }];
  let dependentDialects = ["kiln::KilnDialect", "mlir::linalg::LinalgDialect"];
}

def KilnGpuElementwise : Pass<"kiln-gpu-elementwise", "mlir::func::FuncOp"> {
  let summary = "GPU elementwise strategy: vector_width elements per thread, vector accesses";
  let description = [{
    Runs on bufferized kernel functions whose `kiln.config` selects
    `elementwise` (or names it as a part), with the configuration's
    `vector_width` and `threads`; the numbers below are the default
    configuration. An all-parallel `linalg.generic`
    with static loop ranges, an identity-mapped output with the identity
    layout, and an innermost extent that is a multiple of 4 becomes a
    `gpu.launch` in which every thread computes 4 consecutive elements
    along the innermost loop: operands indexed contiguously by that loop
    are read with one aligned `vector.load` of 4 elements, operands
    broadcast along it with one scalar load, other operands element by
    element; the body is cloned per element and the results leave in one
    aligned `vector.store`. Boolean (i1) operands and other generics are
    left for the generic strategy.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::vector::VectorDialect"];
}

def KilnGpuRowReduce : Pass<"kiln-gpu-row-reduce", "mlir::func::FuncOp"> {
  let summary = "GPU row-reduction strategy: one warp per row, warp shuffles";
  let description = [{
    Runs on bufferized kernel functions whose `kiln.config` selects
    `row-reduce` (or names it as a part), with the configuration's `warp`
    and `rows_per_block`; the numbers below are the default configuration. A `linalg.generic` whose last loop
    is its only reduction (the output indexed by the parallel loops in
    order), whose body yields `combine(out, f(inputs))` with `combine` one of
    add, mul, max, min, becomes a `gpu.launch` with one warp per output row
    (8 rows per 256-thread block): each lane folds every 32nd element of the
    row (the prologue `f` fused in, loads coalesced across the warp), the
    warp combines the 32 partials with an xor-shuffle butterfly, and lane 0
    folds in the output's initial value and stores it. Generics that do not
    match are left for the generic strategy.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect"];
}

def KilnGpuRowFused : Pass<"kiln-gpu-row-fused", "mlir::func::FuncOp"> {
  let summary = "GPU row-fused strategy: a kernel of row-wise steps as one launch, the row on chip";
  let description = [{
    Runs on bufferized kernel functions whose `kiln.config` selects
    `row-fused`, with its `warps_per_row` and `rows_per_block` (selection:
    1 warp per row up to 1024 elements, doubling until a thread holds at
    most 32; 256-thread blocks). The kernel's generics must all work on the
    rows of one [R, D] space: reductions over the last loop (D) with an f32
    add, mul, max or min combiner, elementwise steps over whole rows (the
    last loop is D), and steps on per-row values; fills, temporaries and
    views besides. A layer or RMS norm kept whole by the cuda target
    decomposes into such a kernel. They become one `gpu.launch`: thread t
    of a row holds elements t + i * 32 * warps_per_row; each body is cloned
    per element held (or once per row); temporaries stay in registers; the
    kernel's inputs are loaded where read and its outputs stored where
    written (guarded at the row's end and the last block's rows); a
    reduction folds per thread, combines a warp with an xor-shuffle
    butterfly and the warps of a row through shared memory after a
    barrier, and every thread gets the row's value. A kernel with anything
    else is left to the generic mapping.

    Before (bufferized RMS norm, rows of 64):
    ```mlir
    linalg.fill ins(%zero : f32) outs(%sum : memref<8x1xf32>)
    linalg.generic {... ["parallel", "reduction"]} ins(%x : memref<8x64xf32>) outs(%sum ...)
    linalg.generic {... ["parallel", "parallel"]} ins(%x, %sum, %w ...) outs(%y : memref<8x64xf32>)
    ```
    After: one `gpu.launch` of 256 threads, 2 loads of x per thread, one
    butterfly of 5 `gpu.shuffle xor`, 2 guarded stores of y per thread.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect", "mlir::memref::MemRefDialect"];
}

def KilnGpuMapToThreads : Pass<"kiln-gpu-map-to-threads", "mlir::func::FuncOp"> {
  let summary = "generic GPU fallback: map every parallel loop nest onto blocks and threads";
  let description = [{
    Runs on bufferized kernel functions (marked `kiln.kernel`) whose linalg
    ops became `scf.parallel` nests: the kernels whose `kiln.config` selects
    `generic`, and whatever the other strategies left in theirs. The
    threads per block come from the `generic` configuration (the kernel's
    own, or the `generic` part of a composite one), else `block-size`. Each top-level `scf.parallel` becomes
    one `gpu.launch`: its iteration space is linearized, `block-size`
    threads per block (fewer for small static spaces, rounded up to a warp)
    and as many blocks as needed. Bounds that depend on symbolic dims are
    computed on the host side of the kernel function, so the grid size is a
    launch operand and the trip count a kernel argument; each thread
    delinearizes its global id into the loop's induction variables and runs
    the body under an `id < count` guard. Reduction loops inside the body
    stay sequential per thread. Straight-line work left outside any loop
    (rank-0 ops, copies) runs in a single-thread launch, so the host side of
    a kernel function holds only allocations, views and launches.

    This is the strategy every dispatch can take; the elementwise,
    row-reduction and GEMM strategies replace it where they apply.

    After (for a 2x1000 elementwise loop nest):
    ```mlir
    gpu.launch blocks(%bx, %by, %bz) in (%gx = %c8, ...) threads(%tx, %ty, %tz) in (%nx = %c256, ...) {
      %id = ... %bx * 256 + %tx
      scf.if (%id < 2000) { %i = %id / 1000; %j = %id % 1000; ...body... }
      gpu.terminator
    }
    ```
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", /*default=*/"256",
           "Threads per block for the fallback mapping">
  ];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::scf::SCFDialect",
                           "mlir::arith::ArithDialect"];
}

def KilnGpuRecordLaunchConfigs : Pass<"kiln-gpu-record-launch-configs", "mlir::func::FuncOp"> {
  let summary = "record each gpu.launch's strategy configuration on its kernel function";
  let description = [{
    Runs right before kernel outlining: the `kiln.config` each strategy put
    on the `gpu.launch` ops it built is collected, in order, into the
    kernel function's `kiln.launch_configs` array, so that the artifact can
    say per GPU kernel which strategy built it and with which numbers.
    Launches without one (none are left by the strategies) get `generic`.
  }];
}

#endif // KILN_GPU_STRATEGIES
