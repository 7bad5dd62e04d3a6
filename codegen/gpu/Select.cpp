//===- Select.cpp - which GPU kernel strategy a dispatch gets -------------===//
//
// The choice is made once, here, from the dispatch's root op (its shapes,
// types and loop structure) and the target architecture's facts; the
// strategies build what the configuration says. The default numbers are
// the ones the strategies were tuned with; they are derived from the facts
// where a fact bounds them (warp size, threads per block, shared memory).
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"
#include "codegen/targets/TargetFacts.h"
#include "dialects/kiln/Decompositions.h"
#include "dialects/kiln/KilnDialect.h"

using namespace mlir;

namespace kiln {
namespace {

class Selector {
public:
  Selector(MLIRContext *ctx, const targets::GpuArchFacts &facts)
      : b(ctx), facts(facts) {}

  DictionaryAttr select(Operation *root) {
    if (isa<AttentionOp>(root)) {
      if (facts.has(targets::MmaGeneration::Wgmma))
        if (std::optional<FlashShape> shape = flashAttentionShape(root))
          if (DictionaryAttr config = flashAttentionWgmma(*shape))
            return config;
      if (facts.has(targets::MmaGeneration::MmaSync))
        if (std::optional<FlashShape> shape = flashAttentionShape(root))
          if (DictionaryAttr config = flashAttention(*shape))
            return config;
      return attentionFallback();
    }
    if (isLastDimNorm(root))
      return rowFused(cast<ShapedType>(root->getResult(0).getType())
                          .getShape()
                          .back());
    if (auto softmax = dyn_cast<linalg::SoftmaxOp>(root)) {
      // Max and sum are row reductions, the rest elementwise steps: over
      // the last dim with static shapes, one kernel with the row on chip;
      // else a kernel per step.
      ShapedType type = softmax.getInputOperandType();
      if (!type.getElementType().isF32())
        return generic();
      if (type.hasStaticShape() &&
          softmax.getDimension() == uint64_t(type.getRank() - 1))
        return rowFused(type.getShape().back());
      return rowReduce(/*withElementwise=*/true);
    }
    auto op = dyn_cast<linalg::LinalgOp>(root);
    if (!op)
      return generic();
    if (auto shape = gemmSmallMShape(op))
      return gemmSmallM(*shape);
    if (facts.has(targets::MmaGeneration::Wgmma))
      if (auto shape = gemmWgmmaShape(op))
        if (DictionaryAttr config = gemmWgmma(*shape))
          return config;
    if (facts.has(targets::MmaGeneration::MmaSync))
      if (auto shape = gemmMmaSyncShape(op))
        if (DictionaryAttr config = gemmMmaSync(*shape))
          return config;
    if (gemmSimtAccepts(op))
      if (DictionaryAttr config = gemmSimt(op))
        return config;
    if (rowReduceAccepts(op))
      return rowReduce(/*withElementwise=*/false);
    if (elementwiseAccepts(op, vectorWidth()))
      return elementwise();
    return generic();
  }

private:
  NamedAttribute named(StringRef key, Attribute value) {
    return b.getNamedAttr(key, value);
  }
  NamedAttribute named(StringRef key, int64_t value) {
    return named(key, b.getI64IntegerAttr(value));
  }
  NamedAttribute named(StringRef key, ArrayRef<int64_t> values) {
    return named(key, b.getDenseI64ArrayAttr(values));
  }
  DictionaryAttr config(StringRef strategy, SmallVector<NamedAttribute> rest) {
    rest.push_back(named("strategy", b.getStringAttr(strategy)));
    return b.getDictionaryAttr(rest);
  }

  /// Threads per block for the strategies that use full blocks.
  int64_t blockThreads() const {
    return std::min<int64_t>(256, facts.maxThreadsPerBlock);
  }
  /// Elements per thread of the elementwise strategy (128 bits of f32).
  int64_t vectorWidth() const { return 4; }

  DictionaryAttr generic() {
    return config(kGeneric, {named("threads", blockThreads())});
  }
  DictionaryAttr elementwise() {
    return config(kElementwise, {named("vector_width", vectorWidth()),
                                 named("threads", blockThreads())});
  }
  DictionaryAttr rowReduce(bool withElementwise) {
    SmallVector<NamedAttribute> rest = {
        named("warp", int64_t(facts.warpSize)),
        named("rows_per_block", blockThreads() / facts.warpSize)};
    if (withElementwise)
      rest.push_back(named(kElementwise, elementwise()));
    return config(kRowReduce, rest);
  }
  /// 64x64x16 tiles, 16x16 threads with 4x4 register blocks.
  static constexpr int64_t kTile[] = {64, 64, 16};
  DictionaryAttr gemmSimtConfig() {
    return config(kGemmSimt,
                  {named("tile", ArrayRef<int64_t>(kTile)),
                   named("threads", ArrayRef<int64_t>{16, 16}),
                   named("register_block", ArrayRef<int64_t>{4, 4})});
  }
  /// The GEMM configuration when both operands' tiles fit the shared memory
  /// of a block; else nothing.
  DictionaryAttr gemmSimt(linalg::LinalgOp op) {
    int64_t bytes = 0;
    for (Value input : op.getDpsInputs())
      bytes += kTile[2] * kTile[0] *
               llvm::divideCeil(
                   getElementTypeOrSelf(input.getType()).getIntOrFloatBitWidth(),
                   8);
    if (bytes > facts.sharedBytesPerBlock || blockThreads() < 256)
      return nullptr;
    return gemmSimtConfig();
  }
  /// Tensor-core tiles: the largest square tile of 128, 64 or 32 whose
  /// blocks fill the SMs (at least one block each), else 32 (the most
  /// blocks); 2x2 warps (2x4 for 128) and 3 stages (the ring fits the 48
  /// KiB of static shared memory). Where even 32-tiles leave most SMs idle
  /// (fewer blocks than half the SMs: a few rows against a narrow
  /// projection) and K is long, split-K divides K among up to 16 blocks
  /// per tile, at least 4 slices each, so that the blocks cover the SMs,
  /// as long as its workspace traffic stays small next to the operands'.
  DictionaryAttr gemmMmaSync(std::array<int64_t, 4> shape) {
    auto [m, n, batch, k] = shape;
    int64_t tile = 32;
    // A symbolic M (a sequence length): the middle tile.
    if (ShapedType::isDynamic(m))
      tile = 64;
    for (int64_t candidate : {128, 64}) {
      if (ShapedType::isDynamic(m))
        break;
      int64_t blocks = llvm::divideCeil(m, candidate) *
                       llvm::divideCeil(n, candidate) * batch;
      if (blocks >= int64_t(facts.smCount)) {
        tile = candidate;
        break;
      }
    }
    constexpr int64_t kBk = 32, kStages = 3;
    int64_t bytes = kStages * 2 * tile * kBk * 2;
    if (bytes > facts.sharedBytesPerBlock || bytes > 48 * 1024)
      return nullptr;
    // 128x128 tiles over 2x4 warps (64x32 each): 2x2 warps of 64x64 hold
    // 128 accumulators per lane and need over 200 registers, which leaves
    // an SM 2 blocks of 4 warps.
    SmallVector<int64_t, 2> warps = {2, tile == 128 ? 4 : 2};
    SmallVector<NamedAttribute> entries = {
        named("tile", ArrayRef<int64_t>{tile, tile, kBk}),
        named("warps", ArrayRef<int64_t>(warps)), named("stages", kStages)};
    if (!ShapedType::isDynamic(m) && m * n * batch > 0) {
      int64_t blocks =
          llvm::divideCeil(m, tile) * llvm::divideCeil(n, tile) * batch;
      constexpr int64_t kMinSlices = 4, kMaxSplits = 16;
      // The workspace's f32 partials, written and read back (8 bytes per
      // split and output element), stay within a quarter of the operands'
      // 16-bit bytes: splitting a short K would move more than it saves.
      int64_t traffic = (m * k * batch + k * n) / (16 * m * n * batch);
      int64_t splits = std::min<int64_t>(
          {int64_t(llvm::divideCeil(int64_t(facts.smCount), blocks)),
           int64_t(llvm::divideCeil(k, kBk)) / kMinSlices, kMaxSplits,
           traffic});
      if (2 * blocks < int64_t(facts.smCount) && splits > 1)
        entries.push_back(named("split_k", splits));
    }
    return config(kGemmMmaSync, entries);
  }
  /// Hopper: 128x128x64 tiles (what the nvgpu lowering of wgmma takes),
  /// a producer and two consumer warpgroups, through a ring of as many
  /// 32 KiB stages as the shared memory holds (the epilogue needs none),
  /// up to 6; a persistent grid of one block per SM (the ring takes the
  /// shared memory), only where the tiles make at least one full wave and
  /// K has a few slices; smaller products go to mma.sync's smaller tiles,
  /// which fill the SMs. Symbolic rows are taken as a prefill's (a
  /// prompt of hundreds of tokens or more), given a full column tile.
  DictionaryAttr gemmWgmma(std::array<int64_t, 3> shape) {
    auto [m, n, k] = shape;
    constexpr int64_t kStageBytes = 32 * 1024, kAlignSlack = 2 * 1024;
    int64_t stages = std::min<int64_t>(
        6, (int64_t(facts.sharedBytesPerBlock) - kAlignSlack) / kStageBytes);
    bool enough =
        ShapedType::isDynamic(m)
            ? n >= 128
            : llvm::divideCeil(m, 128) * llvm::divideCeil(n, 128) >=
                  int64_t(facts.smCount);
    if (stages < 2 || !enough || k < 128)
      return nullptr;
    return config(kGemmWgmma,
                  {named("tile", ArrayRef<int64_t>{128, 128, 64}),
                   named("stages", stages),
                   named("blocks", int64_t(facts.smCount))});
  }
  /// Few rows: 4 warps per block; 2 columns per warp (two 16-byte loads of
  /// the weights in flight per lane) while the accumulators (rows x
  /// columns per lane) stay few, else 1.
  DictionaryAttr gemmSmallM(std::array<int64_t, 3> shape) {
    int64_t rows = shape[0];
    return config(kGemmSmallM, {named("warps", int64_t(4)),
                                named("columns", rows <= 4 ? 2 : 1)});
  }
  /// A row of `length` elements spread over the lanes of `warps_per_row`
  /// warps, at most 32 elements per lane (they stay in registers
  /// through the kernel): one warp for rows up to 1024 elements, more for
  /// longer ones; 256-thread blocks while a row takes fewer.
  DictionaryAttr rowFused(int64_t length) {
    return rowFusedConfig(b, length, facts.warpSize, blockThreads());
  }
  /// Flash attention: a warp per 16 query rows, 4 warps where the
  /// sequence has 64 rows (fewer for a short one: decode), and the largest
  /// key tile of 64, 32 or 16 whose two stages of K and V fit 96 KiB next
  /// to the Q tile (a head of 128 takes 64 keys in 80 KiB).
  DictionaryAttr flashAttention(const FlashShape &shape) {
    // Decode with grouped-query heads: the group's query heads are rows of
    // one tile, so each K/V tile is loaded once for all of them.
    // A symbolic query count takes 4 warps: any length may come.
    int64_t groups = shape.heads / shape.kvHeads;
    bool staticQueries = !ShapedType::isDynamic(shape.queries);
    bool pack = groups > 1 && staticQueries && shape.queries <= 16;
    int64_t rows = pack ? groups * shape.queries : shape.queries;
    int64_t warps = staticQueries ? std::clamp<int64_t>(
                                        llvm::divideCeil(rows, 16), 1, 4)
                                  : 4;
    int64_t bm = 16 * warps;
    constexpr int64_t kStages = 2;
    // Up to 96 KiB (two blocks per SM on the A100): past the 48 KiB of
    // static shared memory kiln-gpu-hopper-abi moves the tiles to dynamic
    // shared memory, 1 KiB aligned, which the runtime opts into.
    constexpr int64_t kAlignSlack = 1024;
    int64_t limit = std::min<int64_t>(96 * 1024, facts.sharedBytesPerBlock) -
                    kAlignSlack;
    for (int64_t bn : {64, 32, 16}) {
      if (flashAttentionSharedBytes(shape, bm, bn, kStages) > limit)
        continue;
      SmallVector<NamedAttribute> entries = {
          named("tile", ArrayRef<int64_t>{bm, bn}), named("stages", kStages)};
      if (pack)
        entries.push_back(named("pack_heads", int64_t(1)));
      if (int64_t splits = flashSplits(shape, pack, rows, bm, bn); splits > 1)
        entries.push_back(named("splits", splits));
      return config(kFlashAttentionMmaSync, entries);
    }
    return nullptr;
  }
  /// Hopper prefill (at least 64 queries, or a symbolic count; a static
  /// decode stays on mma.sync with split-KV): two warpgroups per block
  /// (128 query rows) while that still makes a block per SM, else one (and
  /// one for symbolic counts, which may be short); two stages of K and V
  /// (up to 112 KiB with a head of 128).
  DictionaryAttr flashAttentionWgmma(const FlashShape &shape) {
    if (!flashWgmmaAccepts(shape) ||
        (!ShapedType::isDynamic(shape.queries) && shape.queries < 64))
      return nullptr;
    int64_t bm = 64;
    if (!shape.symbolic() &&
        llvm::divideCeil(shape.queries, 128) * shape.heads * shape.batch >=
            int64_t(facts.smCount))
      bm = 128;
    return config(kFlashAttentionWgmma,
                  {named("tile", ArrayRef<int64_t>{bm, 64}),
                   named("stages", int64_t(2))});
  }
  /// Split-KV (decode: a few query rows against a long KV cache): when the
  /// (query tile, head, batch) blocks leave SMs idle, the key tiles are
  /// split among up to 16 blocks per row tile, two tiles or more each, so
  /// that the blocks cover the SMs; a combine launch merges the splits.
  int64_t flashSplits(const FlashShape &shape, bool pack, int64_t rows,
                      int64_t bm, int64_t bn) {
    // The split's workspace is sized by the batch and query counts at
    // compile time; a symbolic key count (decode over a cache's prefix)
    // is split at run time, whatever its length turns out to be (a split
    // that gets no key tile stores an empty part, which the combine
    // weighs 0).
    if (ShapedType::isDynamic(shape.batch) ||
        ShapedType::isDynamic(shape.queries))
      return 1;
    int64_t blocks = llvm::divideCeil(rows, bm) *
                     (pack ? shape.kvHeads : shape.heads) * shape.batch;
    if (blocks >= int64_t(facts.smCount))
      return 1;
    int64_t wanted = llvm::divideCeil(int64_t(facts.smCount), blocks);
    if (!ShapedType::isDynamic(shape.keys))
      wanted = std::min<int64_t>(wanted, llvm::divideCeil(shape.keys, bn) / 2);
    return std::clamp<int64_t>(wanted, 1, 16);
  }
  /// Attention's decomposition: GEMMs, row reductions, elementwise steps,
  /// each with its own part of the configuration.
  DictionaryAttr attentionFallback() {
    return config(kAttentionFallback,
                  {named(kGemmSimt, gemmSimtConfig()),
                   named(kRowReduce, rowReduce(/*withElementwise=*/false)),
                   named(kElementwise, elementwise()),
                   named(kGeneric, generic())});
  }

  Builder b;
  const targets::GpuArchFacts &facts;
};

} // namespace

DictionaryAttr selectGpuStrategy(Operation *root,
                                 const targets::GpuArchFacts &facts) {
  return Selector(root->getContext(), facts).select(root);
}

} // namespace kiln
