//===- Passes.h - Kiln's passes and pipelines -------------------*- C++ -*-===//
#ifndef KILN_PASSES_PASSES_H
#define KILN_PASSES_PASSES_H

#include "dialects/kiln/KilnDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

#include <functional>

namespace kiln {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// The attribute that marks an outlined kernel function.
inline constexpr llvm::StringLiteral kKernelAttrName = "kiln.kernel";
/// Marks a CPU kernel's loop whose iterations are independent (a tile loop
/// of a parallel dim): kiln-cpu-outline-tasks runs such a loop at the top of
/// a kernel as tasks on the runtime's threads.
inline constexpr llvm::StringLiteral kParallelLoopAttrName = "kiln.parallel";
/// The name of the module that holds the outlined kernels.
inline constexpr llvm::StringLiteral kKernelModuleName = "kernels";
/// On a module: kiln-raise-attention leaves it alone (`kiln compile
/// --raise-attention off`).
inline constexpr llvm::StringLiteral kNoRaiseAttentionAttr =
    "kiln.no_raise_attention";

/// Whether the `cpu-flash-attention` strategy (kiln-cpu-flash-attention)
/// takes `op`: a kiln.attention of [B, H, S, D] operands whose head counts
/// and head sizes are static (batch, query and key counts may be symbolic).
bool cpuFlashAttentionHandles(mlir::Operation *op);

/// The constant `value` (dense or a resource blob) of `sourceType`, its dims
/// permuted (result dim i is source dim permutation[i]) into `resultType`;
/// a resource gets the key of the source plus `keySuffix`. Null for other
/// kinds of constants.
mlir::TypedAttr permuteConstant(mlir::Attribute value,
                                mlir::RankedTensorType sourceType,
                                llvm::ArrayRef<int64_t> permutation,
                                mlir::RankedTensorType resultType,
                                llvm::StringRef keySuffix);

/// Dispatches merged after selection (passes/DispatchFusion.cpp): the
/// GPU strategies' fused epilogues, rows and attention layouts, and
/// kiln-fuse-weight-decode on both targets.
/// The strategy a dispatch's configuration names ("" without one).
llvm::StringRef strategyOf(DispatchOp dispatch);
/// A dispatch whose body is `first`'s then `second`'s, `second`'s reads of
/// `first`'s results taking the values `first` computes. It yields
/// `second`'s results, then `first`'s results that `keep` says others
/// still read. Built before `at`, with `config`; returns it.
DispatchOp mergeDispatches(DispatchOp first, DispatchOp second,
                           mlir::Operation *at, llvm::ArrayRef<bool> keep,
                           mlir::DictionaryAttr config);
/// `second` absorbs `first`, whose results only `second` reads: their
/// merged dispatch (with `config`, where `second` was) takes `second`'s
/// uses, and both are erased; returns it.
DispatchOp fuseDispatches(DispatchOp first, DispatchOp second,
                          mlir::DictionaryAttr config);
/// Whether `dispatch` only decodes weights: one all-parallel generic with
/// static loops that writes a fresh tensor (its old values unread) from
/// constants alone (every input of the dispatch is an `arith.constant`:
/// packed integers, scales, zero points), with a scalar body that may
/// read them at computed indices (`tensor.extract`, `linalg.index`). A
/// com.microsoft MatMulNBits weight is one.
bool isWeightDecode(DispatchOp dispatch);
/// Whether the contraction operand `operand` is decoded where it is read:
/// on tensors, a dispatch argument whose value is the one use of a
/// weight-decode dispatch's result (kiln-fuse-weight-decode will move the
/// decoding into the reader's dispatch); on buffers, a temporary that one
/// all-parallel generic (the decoding, returned) writes earlier in the same
/// block and that nothing else but deallocations uses.
mlir::linalg::GenericOp decodedOperandProducer(mlir::OpOperand *operand);
bool isDecodedOperand(mlir::OpOperand *operand);
/// Graph IR -> optimized graph IR on linalg: lowering of the kiln ops that
/// have no kernel strategy yet, canonicalization and elementwise fusion.
/// `keepNorms`: last-dim layer and RMS norms stay whole (a target with a
/// kernel strategy for them). `raiseAttention`: exporters' decomposed
/// attention becomes kiln.attention first (kiln-raise-attention), for a
/// target that runs it well whole; `symbolicAttention`: also where its
/// batch, query or key counts are symbolic (a target whose attention
/// kernel takes them).
/// `raiseAttention`: kiln-raise-attention's options, or nothing for a
/// target that keeps the exporters' attention chains.
void buildGraphPipeline(
    mlir::OpPassManager &pm, bool keepNorms = false,
    std::optional<KilnRaiseAttentionOptions> raiseAttention =
        KilnRaiseAttentionOptions{});

/// Graph IR -> dispatch IR: the graph pipeline, then dispatch formation.
/// `beforeDispatch` adds a target's own graph passes after the graph
/// pipeline, before dispatch formation.
void buildDispatchPipeline(
    mlir::OpPassManager &pm,
    const std::function<void(mlir::OpPassManager &)> &beforeDispatch = {},
    bool keepNorms = false,
    std::optional<KilnRaiseAttentionOptions> raiseAttention =
        KilnRaiseAttentionOptions{});

/// Outlined kernel functions (kiln-outline-dispatches, entry functions
/// split off) -> CPU kernel IR: attention's fallback decomposition, tiling
/// and vectorization on tensors, bufferization, and vector lowering. Stops
/// before LLVM.
void buildCpuKernelPipeline(mlir::OpPassManager &pm);

/// Kernels from tensors to their buffers (outputs written in place,
/// temporaries freed), shared by the CPU and GPU kernel pipelines. With
/// `keepWholeOps`, ops that do not bufferize (a `kiln.attention` a GPU
/// strategy takes whole after bufferization) stay on tensors, between
/// `bufferization.to_tensor` of their operands' buffers and a
/// `bufferization.to_buffer` of their result.
void addKernelBufferization(mlir::OpPassManager &pm, bool keepWholeOps = false);

/// Kernel IR -> LLVM dialect for the CPU.
void buildCpuToLLVMPipeline(mlir::OpPassManager &pm);

/// GPU kernel IR -> gpu.binary holding PTX for every architecture in
/// `chips` (e.g. {"sm_80", "sm_90a"}), in PTX ISA `ptxIsa` (x10; 0: each
/// architecture's default from its facts).
void buildGpuToBinaryPipeline(mlir::OpPassManager &pm,
                              llvm::ArrayRef<std::string> chips,
                              const std::string &cudaPath,
                              unsigned ptxIsa = 0);

/// Registers the named pipelines above with the pass registry
/// (kiln-graph-pipeline, kiln-dispatch-pipeline, kiln-cpu-kernel-pipeline,
/// kiln-cpu-to-llvm-pipeline).
void registerPipelines();

} // namespace kiln

#endif // KILN_PASSES_PASSES_H
