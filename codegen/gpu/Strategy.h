//===- Strategy.h - GPU kernel strategies: configs, selection, helpers -*- C++ -*-===//
//
// A kernel strategy turns the linalg ops of a bufferized kernel function
// into gpu.launch ops. Which strategy a dispatch gets, and with which
// numbers (tiles, threads, vector width), is decided once, by
// kiln-select-strategies from the target's facts and the dispatch's shapes,
// and recorded as the dispatch's `config` (the outlined kernel's
// `kiln.config`):
//
//   {strategy = "gemm-simt", tile = array<i64: 64, 64, 16>,
//    threads = array<i64: 16, 16>, register_block = array<i64: 4, 4>}
//
// A composite strategy names the configurations of its parts as nested
// dictionaries (a softmax is a row reduction with elementwise steps;
// attention-fallback is GEMMs, row reductions and elementwise steps):
//
//   {strategy = "row-reduce", warp = 32, rows_per_block = 8,
//    elementwise = {strategy = "elementwise", vector_width = 4, threads = 256}}
//
// Each strategy pass applies where the kernel's configuration names it
// (its own or a part's), with those numbers; the generic mapping takes
// whatever is left. Every launch a strategy builds carries the
// configuration it applied (`kiln.config` on the gpu.launch), which ends up
// in the artifact per GPU kernel.
//
// Adding a strategy: a file in this folder with its pass (Strategies.td),
// its `accepts` predicate below, a case in selectGpuStrategy
// (Select.cpp), and its place in buildGpuKernelPipeline (Pipeline.cpp).
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_GPU_STRATEGY_H
#define KILN_CODEGEN_GPU_STRATEGY_H

#include "passes/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/IR/BuiltinAttributes.h"

#include <array>

namespace kiln::targets {
struct GpuArchFacts;
} // namespace kiln::targets

namespace kiln {

#define GEN_PASS_DECL
#include "codegen/gpu/Strategies.h.inc"

#define GEN_PASS_REGISTRATION
#include "codegen/gpu/Strategies.h.inc"

/// The strategies' names, as `strategy` in a configuration says them.
inline constexpr llvm::StringLiteral kGemmSimt = "gemm-simt";
inline constexpr llvm::StringLiteral kGemmMmaSync = "gemm-mma-sync";
inline constexpr llvm::StringLiteral kGemmSmallM = "gemm-small-m";
inline constexpr llvm::StringLiteral kGemmWgmma = "gemm-wgmma";
inline constexpr llvm::StringLiteral kRowReduce = "row-reduce";
inline constexpr llvm::StringLiteral kRowFused = "row-fused";
inline constexpr llvm::StringLiteral kElementwise = "elementwise";
inline constexpr llvm::StringLiteral kGeneric = "generic";
inline constexpr llvm::StringLiteral kAttentionFallback = "attention-fallback";
inline constexpr llvm::StringLiteral kFlashAttentionMmaSync =
    "flash-attention-mma-sync";
inline constexpr llvm::StringLiteral kFlashAttentionWgmma =
    "flash-attention-wgmma";

/// The kernel function attribute with the dispatch's configuration, and
/// the launch attribute with the configuration a strategy applied.
inline constexpr llvm::StringLiteral kConfigAttrName = "kiln.config";
/// The kernel function attribute listing its launches' configurations.
inline constexpr llvm::StringLiteral kLaunchConfigsAttrName =
    "kiln.launch_configs";

/// Typed reads of a configuration; a missing or ill-typed key is an error
/// on `op` that names the strategy and the key.
class StrategyConfig {
public:
  StrategyConfig(mlir::DictionaryAttr dict, mlir::Operation *op)
      : dict(dict), op(op) {}
  llvm::StringRef strategy() const;
  mlir::FailureOr<int64_t> getInt(llvm::StringRef key) const;
  /// An `array<i64>` of exactly `size` positive values.
  mlir::FailureOr<llvm::SmallVector<int64_t>> getInts(llvm::StringRef key,
                                                      size_t size) const;
  mlir::DictionaryAttr attr() const { return dict; }
  /// An error about this configuration.
  mlir::InFlightDiagnostic error() const;

private:
  mlir::DictionaryAttr dict;
  mlir::Operation *op;
};

/// The configuration strategy `name` applies in `kernel`: the kernel's own
/// when it selects `name`, the part named `name` of a composite one, or
/// null when `name` has no business in this kernel.
mlir::DictionaryAttr configFor(mlir::func::FuncOp kernel, llvm::StringRef name);

/// The end every strategy pass shares: for each op of type OpT in a kernel
/// function that `name` applies to, `rewrite(op, config)` returns true
/// when it built launches for the op, false when the op is not its kind
/// (left for the next strategy), failure after an error (a configuration
/// the strategy cannot build).
template <typename OpT, typename Fn>
mlir::LogicalResult applyStrategy(mlir::func::FuncOp func,
                                  llvm::StringRef name, Fn rewrite) {
  if (!func->hasAttr(kKernelAttrName))
    return mlir::success();
  mlir::DictionaryAttr dict = configFor(func, name);
  if (!dict)
    return mlir::success();
  llvm::SmallVector<OpT> ops;
  func.walk([&](OpT op) { ops.push_back(op); });
  for (OpT op : ops) {
    mlir::FailureOr<bool> rewritten =
        rewrite(op, StrategyConfig(dict, func));
    if (mlir::failed(rewritten))
      return mlir::failure();
  }
  return mlir::success();
}

//===----------------------------------------------------------------------===//
// What each strategy takes. Selection asks these on the dispatch's root
// (tensors); the strategies ask them again on buffers, where they also
// check layouts.
//===----------------------------------------------------------------------===//

/// A contraction with static loops, dim-or-constant maps, a scalar body,
/// no i1 operands, and M and N extents above 1 (a matrix-vector product
/// is a row reduction's work).
bool gemmSimtAccepts(mlir::linalg::LinalgOp op);
/// A contraction of f16 x f16 or bf16 x bf16 summed in f32, with one M, N
/// and K loop, static loops but M (which may be symbolic: its extent is
/// then ShapedType::kDynamic), M > 16, N >= 8, K >= 16, each operand's
/// innermost dimension one of its two matrix loops, and layouts that allow
/// aligned 16-byte chunks along it: its M, N, batch count (a broadcast
/// batch counts as batch) and K; nothing when the op does not fit.
std::optional<std::array<int64_t, 4>>
gemmMmaSyncShape(mlir::linalg::LinalgOp op);
/// A contraction C[batch.., m, n] = A[batch.., m, k] * B[k, n] of f16 x f16
/// or bf16 x bf16 summed in f32, static, with K and N multiples of 8 (TMA's
/// 16-byte strides): its M (the batch folded in), N and K; nothing when
/// the op does not fit (the buffers must also be row-major).
std::optional<std::array<int64_t, 3>>
gemmWgmmaShape(mlir::linalg::LinalgOp op);
/// A contraction with at most 16 rows (M, several loops linearized), one
/// N loop, one K loop that is both inputs' innermost dimension with 16-byte
/// chunks along it, f16, bf16 or f32 operands summed in f32, static loops:
/// its M, N and batch count; nothing when the op does not fit.
std::optional<std::array<int64_t, 3>>
gemmSmallMShape(mlir::linalg::LinalgOp op);
/// A generic whose last loop is its only reduction, with an f32 add, mul,
/// max or min combiner and a scalar body.
bool rowReduceAccepts(mlir::linalg::LinalgOp op);
/// An all-parallel generic with static loops, an innermost extent that is
/// a multiple of `vectorWidth`, an identity-mapped output and no i1.
bool elementwiseAccepts(mlir::linalg::LinalgOp op, int64_t vectorWidth);
/// An elementwise generic a GEMM strategy can apply to its accumulators
/// before the store (a fused epilogue): all-parallel (loops may be
/// symbolic), one output
/// with the identity map whose old value it does not read, a scalar body,
/// maps of dims or constant 0, and `acc` read once, with the identity map.
bool epilogueAccepts(mlir::linalg::GenericOp consumer, mlir::Value acc);

//===----------------------------------------------------------------------===//
// What the GEMM strategies share (GemmCommon.cpp).
//===----------------------------------------------------------------------===//

/// The innermost loop an operand's map walks, if its last result is a loop.
std::optional<unsigned> innermostLoop(mlir::AffineMap map);
/// Whether an operand of this type can be read in aligned chunks of
/// `elements` along its innermost dimension: unit innermost stride, the
/// other strides and the offset multiples of `elements` (buffers
/// themselves are at least 64-byte aligned). Tensors have the identity
/// layout.
bool chunkable(mlir::Type type, int64_t elements);
/// Whether the body is `out + ext(a) * ext(b)` (in either order; the
/// extensions optional).
bool isMultiplyAccumulate(mlir::linalg::LinalgOp op);
/// The elementwise generic that kiln-gpu-fuse-epilogues put after the
/// contraction `op` in its kernel: `op`'s output is a temporary that only
/// `op` (and a fill of it right before), this generic and deallocations
/// use. Null when there is none.
mlir::linalg::GenericOp fusedEpilogue(mlir::linalg::LinalgOp op);
/// Whether two adjacent elements of `buffer` along the loop `inner` can
/// move as one aligned vector: `map`'s innermost result is that loop, the
/// innermost stride is 1, and the other strides and the offset are even.
bool pairable(mlir::Value buffer, mlir::AffineMap map, unsigned inner);
/// Whether `buffer` is a memref with static strides and offset whose
/// innermost dimension is the loop `inner` (`map`'s last result) at unit
/// stride; gives the strides and the offset (in elements).
bool staticRowLayout(mlir::Value buffer, mlir::AffineMap map, unsigned inner,
                     llvm::SmallVectorImpl<int64_t> &strides,
                     int64_t &offset);
/// The epilogue's results for the accumulators `accs` (one, or two
/// adjacent along the output's last dim) at `loops` (the epilogue's loops,
/// which are the output's dims, of the first): its other operands loaded
/// (a pair as one vector where pairable), its body cloned once per value.
llvm::SmallVector<mlir::Value>
applyEpilogue(mlir::OpBuilder &b, mlir::Location loc,
              mlir::linalg::GenericOp epilogue, mlir::Value temporary,
              llvm::ArrayRef<mlir::Value> loops,
              llvm::ArrayRef<mlir::Value> accs);
/// The element of a decoded operand (`decodedOperandProducer`, on
/// buffers) at `indices`: the decoding's inputs loaded there, its body
/// cloned with its loop indices taking `indices`.
mlir::Value evaluateDecoded(mlir::OpBuilder &b, mlir::Location loc,
                            mlir::linalg::GenericOp decode,
                            llvm::ArrayRef<mlir::Value> indices);
/// The affine form of index arithmetic by constants (add, sub, and mul,
/// divui, remui by a positive constant) over the op's non-constant operands
/// as dims, or nothing.
std::optional<mlir::AffineExpr> affineIndexArithmetic(mlir::Operation &op);
/// `base + offset` for a `base` known to be a multiple of `multiple`,
/// written `(base floordiv multiple) * multiple + offset` so that affine
/// simplification sees the alignment (the elements of a chunk).
mlir::Value alignedIndex(mlir::OpBuilder &b, mlir::Location loc,
                         mlir::Value base, int64_t multiple, int64_t offset);
/// Erases a decoding that was evaluated where its result was read, its
/// temporary and the temporary's deallocations.
void eraseDecoded(mlir::linalg::GenericOp decode);
/// Erases an applied epilogue, the temporary and its deallocations.
void eraseFusedEpilogue(mlir::linalg::GenericOp epilogue,
                        mlir::Value temporary);
/// The row-fused configuration for rows of `length`: warps per row until a
/// lane holds at most 32 elements, rows per block to fill `blockThreads`.
mlir::DictionaryAttr rowFusedConfig(mlir::Builder &b, int64_t length,
                                    int64_t warpSize, int64_t blockThreads);
/// The one generic of a single-result dispatch whose body is otherwise
/// what dispatch formation clones (no other linalg op, no regions), and
/// whose result the dispatch yields; null otherwise. With `allowFills`, the
/// body may also fill the generic's init with a scalar.
mlir::linalg::GenericOp soleGenericOf(DispatchOp dispatch,
                                      bool allowFills = false);
/// The epilogues a GEMM strategy applied in registers, with the
/// temporaries they read.
using FusedEpilogues =
    llvm::SmallVector<std::pair<mlir::linalg::GenericOp, mlir::Value>>;
/// applyStrategy for the GEMM strategies: `rewrite` may apply the
/// contraction's epilogue and record it in its FusedEpilogues; such an
/// epilogue is then not offered to `rewrite`, and once every op of the
/// kernel has been seen it is erased with its temporary.
mlir::LogicalResult applyGemmStrategy(
    mlir::func::FuncOp func, llvm::StringRef name,
    llvm::function_ref<mlir::FailureOr<bool>(
        mlir::linalg::LinalgOp, const StrategyConfig &, FusedEpilogues &)>
        rewrite);

/// A reduction body `yield combine(acc, contribution)` whose combiner is
/// one float add, mul, max or min and whose accumulator feeds only it.
struct Combiner {
  mlir::Operation *op = nullptr;
  mlir::Value contribution; // the operand that is not the accumulator
};
std::optional<Combiner> matchCombiner(mlir::linalg::GenericOp op);
/// The combiner's identity (0, 1, -inf, +inf) of float type `type`.
mlir::Value identityOf(mlir::OpBuilder &b, mlir::Location loc,
                       mlir::Operation *combine, mlir::Type type);
/// `combine`'s kind applied to `a` and `c`.
mlir::Value combineWith(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::Operation *combine, mlir::Value a,
                        mlir::Value c);

/// The sizes of a `kiln.attention` that flash-attention-mma-sync takes:
/// f16 or bf16 operands (softmax in f32), static head counts, heads of at
/// most 128 elements in multiples of 8. The batch, query and key counts
/// may be symbolic (ShapedType::kDynamic here; the kernel reads them from
/// its size parameters).
struct FlashShape {
  int64_t batch, heads, queries, headQK, kvHeads, keys, headV;
  bool symbolic() const {
    return mlir::ShapedType::isDynamic(batch) ||
           mlir::ShapedType::isDynamic(queries) ||
           mlir::ShapedType::isDynamic(keys);
  }
};
std::optional<FlashShape> flashAttentionShape(mlir::Operation *root);
/// The shared memory its tiles take: Q (bm rows) and `stages` stages of K
/// and V (bn rows each), heads padded to multiples of 16.
int64_t flashAttentionSharedBytes(const FlashShape &shape, int64_t bm,
                                  int64_t bn, int64_t stages);
/// Whether flash-attention-wgmma takes it: heads of at most 128 elements
/// (padded to 64 or 128 in shared memory); the counts may be symbolic.
bool flashWgmmaAccepts(const FlashShape &shape);

/// The configuration for a dispatch whose root is `root`, for the
/// architectures whose common facts are `facts`.
mlir::DictionaryAttr selectGpuStrategy(mlir::Operation *root,
                                       const targets::GpuArchFacts &facts);

//===----------------------------------------------------------------------===//
// Code every strategy writes.
//===----------------------------------------------------------------------===//

mlir::Value constantIndex(mlir::OpBuilder &b, mlir::Location loc, int64_t v);

/// The indices into an operand indexed by `map` for one value per loop
/// (null for loops the operand does not use); results of `map` are loop
/// dims or constants.
llvm::SmallVector<mlir::Value> indicesFor(mlir::OpBuilder &b,
                                          mlir::Location loc,
                                          mlir::AffineMap map,
                                          llvm::ArrayRef<mlir::Value> loops);

/// Splits a linear index over a row-major space of `extents` into one
/// index per dimension ((linear / stride_i) % extent_i). `linear` must be
/// below the product of the extents (callers guard it), so the outermost
/// index takes no remainder and unit strides no division.
llvm::SmallVector<mlir::Value> delinearize(mlir::OpBuilder &b,
                                           mlir::Location loc,
                                           mlir::Value linear,
                                           llvm::ArrayRef<int64_t> extents);

/// Whether every op of the body is a scalar arith or math op (the body is
/// cloned into the kernel per element or per register).
bool hasScalarBody(mlir::linalg::LinalgOp op);

/// A gpu.launch of `grid` blocks of `block` threads, tagged with the
/// configuration that built it; `body` is a builder at the end of its
/// region, before which the caller adds a gpu.terminator when done.
struct Launch {
  mlir::gpu::LaunchOp op;
  mlir::OpBuilder body;
};
Launch createLaunch(mlir::OpBuilder &b, mlir::Location loc,
                    std::array<mlir::Value, 3> grid,
                    std::array<int64_t, 3> block, const StrategyConfig &config);

/// `scf.if (value < bound)` with no else; returns the then-builder.
mlir::OpBuilder guardBelow(mlir::OpBuilder &b, mlir::Location loc,
                           mlir::Value value, mlir::Value bound);

/// The GPU kernel pipeline: outlined kernels -> kernel IR with gpu.launch
/// ops, outlined into gpu.modules (the level `--emit kernel-mlir` shows).
void buildGpuKernelPipeline(mlir::OpPassManager &pm);

/// Registers `kiln-gpu-kernel-pipeline` (the passes register with
/// registerKilnGpuPasses()).
void registerGpuKernelPipeline();

} // namespace kiln

#endif // KILN_CODEGEN_GPU_STRATEGY_H
