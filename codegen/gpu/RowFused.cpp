//===- RowFused.cpp - a kernel of row-wise steps as one launch ------------===//
//
// The strategy for kernels whose linalg ops all work on the rows of one
// [R, D] space: reductions over the last dim (D) into one value per row,
// elementwise steps over whole rows, and steps on the per-row values. A
// layer norm decomposes into five such generics (sum, mean, centered
// squares summed, inverse deviation, the normalized row), an RMS norm into
// two; run as separate kernels they re-read the row from memory each time.
// Here they are one launch, with the row on chip:
//
// - `warps_per_row` warps own a row and `rows_per_block` rows share a
//   block. Thread t of a row holds elements j = t + i * 32 * warps_per_row
//   (i < ceil(D / (32 * warps_per_row)), at most 32 with the selection's
//   numbers), so each load and store of a warp covers consecutive
//   elements;
// - each generic's body is cloned once per element a thread holds (or once
//   per row for the per-row steps). Values of the kernel's temporaries stay
//   in registers, per element or per row; the kernel's inputs are loaded
//   where a step reads them, its outputs stored where a step writes them;
// - a reduction folds its contributions into one partial per thread, an
//   xor-shuffle butterfly combines a warp's, and with several warps per row
//   the warps' partials meet in shared memory after a barrier; every thread
//   of the row then holds the row's value, combined with the output's
//   initial value (the fill before the reduction).
//
// The rows may be symbolic (a sequence length; D static): the row count
// and each step's row extents are read from the kernel's buffers before
// the launch, the grid is computed from them, and buffers are matched to
// the row space by their extents but for 1s instead of their sizes.
//
// A kernel with anything else (a contraction, a step over another space, a
// temporary read in another layout) is left to the generic mapping.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/IR/IRMapping.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUROWFUSED
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr int64_t kWarp = 32;
/// Elements per thread beyond which the rows would not stay in registers.
constexpr int64_t kMaxPerThread = 64;

Value rootOf(Value value) {
  while (Operation *def = value.getDefiningOp()) {
    if (!isa<memref::ExpandShapeOp, memref::CollapseShapeOp>(def))
      break;
    value = def->getOperand(0);
  }
  return value;
}

/// The product of `values`; ShapedType::kDynamic when one is symbolic.
int64_t product(ArrayRef<int64_t> values) {
  int64_t p = 1;
  for (int64_t v : values) {
    if (ShapedType::isDynamic(v))
      return ShapedType::kDynamic;
    p *= v;
  }
  return p;
}

/// Whether `root` is one of the kernel's arguments (itself, or the view of
/// symbolic shape the kernel ABI makes of it).
bool isKernelBuffer(Value root) {
  if (auto cast = root.getDefiningOp<memref::ReinterpretCastOp>())
    root = cast.getSource();
  return isa<BlockArgument>(root);
}

/// `values` without its 1s.
SmallVector<int64_t> nonUnit(ArrayRef<int64_t> values) {
  SmallVector<int64_t> result;
  for (int64_t v : values)
    if (v != 1)
      result.push_back(v);
  return result;
}

/// One generic of the kernel and its loops' roles.
struct Step {
  mutable linalg::GenericOp op; // (op handles are values)
  bool full = false;            // its last loop is the row's D loop
  SmallVector<unsigned> rowLoops; // the other loops (all, for a row step)
  SmallVector<int64_t> rowExtents;
  /// With symbolic rows: the row loops' extents at run time (read before
  /// the launch).
  SmallVector<Value> rowExtentValues;
  std::optional<Combiner> combiner; // for a reduction over D
};

/// What the kernel's buffers hold in registers: one value per element a
/// thread owns (a whole-row buffer) or one per row.
struct Held {
  bool full = false;
  SmallVector<Value> values;
};

class RowFusedBuilder {
public:
  RowFusedBuilder(func::FuncOp func, const StrategyConfig &config)
      : func(func), config(config) {}

  /// True when the kernel was built, false when it is not this strategy's
  /// kind, failure after a configuration error.
  FailureOr<bool> run() {
    if (!analyze())
      return false;
    FailureOr<int64_t> warps = config.getInt("warps_per_row");
    FailureOr<int64_t> rowsPerBlock = config.getInt("rows_per_block");
    if (failed(warps) || failed(rowsPerBlock))
      return failure();
    if (*warps < 1 || *warps > 32 || !llvm::isPowerOf2_64(*warps) ||
        *rowsPerBlock < 1 || kWarp * *warps * *rowsPerBlock > 1024)
      return config.error() << "'warps_per_row' must be a power of 2 up to "
                               "32 and a block at most 1024 threads";
    this->warps = *warps;
    this->rowsPerBlock = *rowsPerBlock;
    perRow = kWarp * *warps;
    slots = llvm::divideCeil(length, perRow);
    if (slots > kMaxPerThread)
      return false;
    if (!build())
      return false;
    // The steps, fills, temporaries and views the launch replaced.
    SmallVector<Operation *> replaced;
    for (Operation &op : func.getBody().front().without_terminator())
      if (isa<linalg::GenericOp, linalg::FillOp, memref::DeallocOp,
              memref::AllocOp, memref::ExpandShapeOp,
              memref::CollapseShapeOp, memref::DimOp>(op))
        replaced.push_back(&op);
    for (Operation *op : llvm::reverse(replaced))
      if (op->use_empty())
        op->erase();
    return true;
  }

private:
  /// The steps and the row space, or false when the kernel is not made of
  /// row-wise steps.
  bool analyze() {
    for (Operation &op : func.getBody().front().without_terminator()) {
      if (auto generic = dyn_cast<linalg::GenericOp>(op)) {
        if (!generic.hasPureBufferSemantics() ||
            generic.getNumDpsInits() != 1 || !hasScalarBody(generic))
          return false;
        for (AffineMap map : generic.getIndexingMapsArray())
          for (AffineExpr e : map.getResults()) {
            auto c = dyn_cast<AffineConstantExpr>(e);
            if (!isa<AffineDimExpr>(e) && !(c && c.getValue() == 0))
              return false;
          }
        steps.push_back(Step{generic});
        continue;
      }
      // memref.dim: the symbolic rows' sizes (of temporaries, too).
      // memref.reinterpret_cast: an argument of symbolic shape as the
      // kernel ABI passes it (a pointer and its sizes).
      if (isa<linalg::FillOp, memref::DeallocOp, memref::ExpandShapeOp,
              memref::CollapseShapeOp, memref::GetGlobalOp, memref::DimOp,
              memref::ReinterpretCastOp>(op))
        continue;
      if (isa<memref::AllocOp>(op))
        continue;
      // Scalars (constants, index math) may stay outside the launch.
      if (isPure(&op) && llvm::none_of(op.getResultTypes(),
                                       llvm::IsaPred<ShapedType>) &&
          llvm::none_of(op.getOperandTypes(), llvm::IsaPred<ShapedType>))
        continue;
      return false;
    }
    // The row space comes from the reductions over the last loop.
    for (Step &step : steps) {
      unsigned reductions = step.op.getNumReductionLoops();
      if (reductions == 0)
        continue;
      auto iterators = step.op.getIteratorTypesArray();
      if (reductions != 1 ||
          iterators.back() != utils::IteratorType::reduction)
        return false;
      SmallVector<int64_t> ranges = step.op.getStaticLoopRanges();
      int64_t d = ranges.back();
      ArrayRef<int64_t> rowRanges = ArrayRef<int64_t>(ranges).drop_back();
      if (ShapedType::isDynamic(d) ||
          (length && (length != d || !sameRows(rowRanges))))
        return false;
      length = d;
      rows = product(rowRanges);
      rowShape = nonUnit(rowRanges);
    }
    if (length <= 1 || (!symbolicRows() && rows < 1))
      return false;
    for (Step &step : steps) {
      SmallVector<int64_t> ranges = step.op.getStaticLoopRanges();
      unsigned n = ranges.size();
      if (n && ranges.back() == length &&
          sameRows(ArrayRef<int64_t>(ranges).drop_back())) {
        step.full = true;
        for (unsigned d = 0; d + 1 < n; ++d)
          step.rowLoops.push_back(d);
      } else if (sameRows(ranges) && step.op.getNumReductionLoops() == 0) {
        for (unsigned d = 0; d < n; ++d)
          step.rowLoops.push_back(d);
      } else {
        return false;
      }
      for (unsigned d : step.rowLoops)
        step.rowExtents.push_back(ranges[d]);
      if (step.op.getNumReductionLoops()) {
        step.combiner = matchCombiner(step.op);
        AffineMap out =
            step.op.getMatchingIndexingMap(step.op.getDpsInitOperand(0));
        if (!step.combiner || out.isFunctionOfDim(n - 1) ||
            !getElementTypeOrSelf(step.op.getDpsInits()[0].getType()).isF32())
          return false;
      } else if (step.full &&
                 !step.op.getMatchingIndexingMap(step.op.getDpsInitOperand(0))
                      .isFunctionOfDim(n - 1)) {
        return false; // an elementwise step writing a per-row value
      }
    }
    return true;
  }

  /// Whether `operand` is read or written as a row buffer (full: [R, D]
  /// with D innermost) in the row-major order of the rows: dropping its
  /// unit dims, its map names the step's row loops of extent > 1 in order
  /// (and then the D loop), and the buffer holds exactly that many
  /// elements.
  bool inRowOrder(const Step &step, OpOperand *operand, bool full) {
    auto type = dyn_cast<MemRefType>(operand->get().getType());
    auto rootType = dyn_cast<MemRefType>(rootOf(operand->get()).getType());
    if (!type || !rootType || !type.getLayout().isIdentity() ||
        !rootType.getLayout().isIdentity() ||
        (!symbolicRows() && !rootType.hasStaticShape()))
      return false;
    AffineMap map = step.op.getMatchingIndexingMap(operand);
    SmallVector<unsigned> named;
    for (auto [i, e] : llvm::enumerate(map.getResults())) {
      if (type.getDimSize(i) == 1)
        continue;
      auto dim = dyn_cast<AffineDimExpr>(e);
      if (!dim)
        return false;
      named.push_back(dim.getPosition());
    }
    SmallVector<unsigned> expected;
    for (auto [d, extent] : llvm::zip(step.rowLoops, step.rowExtents))
      if (extent != 1)  // symbolic extents included
        expected.push_back(d);
    if (full)
      expected.push_back(step.op.getNumLoops() - 1);
    return named == expected && holdsRows(rootType, full);
  }

  /// The loop values of `step` for this thread's row and (full steps)
  /// element slot `slot`.
  SmallVector<Value> loopsAt(OpBuilder &b, const Step &step,
                             std::optional<int64_t> slot) {
    Location loc = step.op.getLoc();
    SmallVector<Value> loops(step.op.getNumLoops());
    SmallVector<Value> rowValues;
    if (symbolicRows()) {
      rowValues.resize(step.rowExtentValues.size());
      Value rest = safeRow;
      for (size_t d = rowValues.size(); d-- > 1;) {
        rowValues[d] =
            arith::RemUIOp::create(b, loc, rest, step.rowExtentValues[d]);
        rest = arith::DivUIOp::create(b, loc, rest, step.rowExtentValues[d]);
      }
      if (!rowValues.empty())
        rowValues[0] = rest;
    } else {
      rowValues = delinearize(b, loc, safeRow, step.rowExtents);
    }
    for (auto [d, v] : llvm::zip(step.rowLoops, rowValues))
      loops[d] = v;
    if (step.full)
      loops.back() = safeColumn[*slot];
    return loops;
  }

  /// The value `operand` gives the body at `slot` (null for per-row
  /// reads): the register copy of a buffer the kernel wrote, else a load
  /// of the input. Null when the kernel cannot get it.
  Value read(OpBuilder &b, const Step &step, OpOperand *operand,
             std::optional<int64_t> slot) {
    Value root = rootOf(operand->get());
    AffineMap map = step.op.getMatchingIndexingMap(operand);
    bool readsD = step.full && map.isFunctionOfDim(step.op.getNumLoops() - 1);
    if (auto it = held.find(root); it != held.end()) {
      if (it->second.full != readsD || !inRowOrder(step, operand, readsD))
        return nullptr;
      return readsD ? it->second.values[*slot] : it->second.values.front();
    }
    if (root.getDefiningOp<memref::AllocOp>())
      return nullptr; // a temporary read before it is written
    return memref::LoadOp::create(
        b, step.op.getLoc(), operand->get(),
        indicesFor(b, step.op.getLoc(), map,
                   loopsAt(b, step, readsD ? slot : std::optional<int64_t>(0))));
  }

  /// The body's value at `slot` (or per row), up to `stopAt` (a
  /// reduction's combiner: then its contribution).
  Value evaluate(OpBuilder &b, const Step &step, std::optional<int64_t> slot,
                 Operation *stopAt) {
    Block *body = step.op.getBody();
    IRMapping mapping;
    for (OpOperand *input : step.op.getDpsInputOperands()) {
      BlockArgument arg = body->getArgument(input->getOperandNumber());
      if (arg.use_empty())
        continue;
      Value value = read(b, step, input, slot);
      if (!value)
        return nullptr;
      mapping.map(arg, value);
    }
    BlockArgument acc = body->getArguments().back();
    if (!stopAt && !acc.use_empty()) {
      Value value = read(b, step, step.op.getDpsInitOperand(0), slot);
      if (!value)
        return nullptr;
      mapping.map(acc, value);
    }
    for (Operation &op : body->without_terminator()) {
      if (&op == stopAt)
        return mapping.lookupOrDefault(step.combiner->contribution);
      b.clone(op, mapping);
    }
    return mapping.lookupOrDefault(body->getTerminator()->getOperand(0));
  }

  /// Records what `operand` (a step's output or a fill's) now holds, and
  /// stores it when it is one of the kernel's buffers.
  bool write(OpBuilder &b, const Step &step, OpOperand *operand, bool full,
             ArrayRef<Value> values) {
    Value root = rootOf(operand->get());
    if (!inRowOrder(step, operand, full))
      return false;
    held[root] = Held{full, SmallVector<Value>(values)};
    if (!isKernelBuffer(root))
      return true;
    Location loc = step.op.getLoc();
    AffineMap map = step.op.getMatchingIndexingMap(operand);
    for (auto [i, value] : llvm::enumerate(values)) {
      Value mine = full ? arith::AndIOp::create(b, loc, rowValid, columnValid[i])
                        : arith::AndIOp::create(b, loc, rowValid, firstOfRow);
      OpBuilder then = scf::IfOp::create(b, loc, mine, false).getThenBodyBuilder();
      memref::StoreOp::create(
          then, loc, value, operand->get(),
          indicesFor(then, loc, map,
                     loopsAt(then, step, full ? std::optional<int64_t>(i)
                                              : std::optional<int64_t>(0))));
    }
    return true;
  }

  /// The row's combination of the contributions at every slot.
  Value reduce(OpBuilder &b, const Step &step, ArrayRef<Value> contributions) {
    Location loc = step.op.getLoc();
    Operation *combine = step.combiner->op;
    Type type = contributions.front().getType();
    Value identity = identityOf(b, loc, combine, type);
    Value partial;
    for (auto [i, contribution] : llvm::enumerate(contributions)) {
      Value c = contribution;
      if (!columnAlwaysValid[i])
        c = arith::SelectOp::create(b, loc, columnValid[i], c, identity);
      partial = partial ? combineWith(b, loc, combine, partial, c) : c;
    }
    Value width = arith::ConstantIntOp::create(b, loc, kWarp, 32);
    for (int64_t offset = kWarp / 2; offset >= 1; offset /= 2) {
      Value step = arith::ConstantIntOp::create(b, loc, offset, 32);
      partial = combineWith(
          b, loc, combine, partial,
          gpu::ShuffleOp::create(b, loc, partial, step, width,
                                 gpu::ShuffleMode::XOR)
              .getShuffleResult());
    }
    if (warps == 1)
      return partial;
    // The warps' partials meet in shared memory.
    auto space = gpu::AddressSpaceAttr::get(
        b.getContext(), gpu::GPUDialect::getWorkgroupAddressSpace());
    auto type2 = MemRefType::get({rowsPerBlock, warps}, type,
                                 MemRefLayoutAttrInterface(), space);
    Value shared = launch.addWorkgroupAttribution(type2, loc);
    Value laneZero = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq, lane, constantIndex(b, loc, 0));
    OpBuilder then =
        scf::IfOp::create(b, loc, laneZero, false).getThenBodyBuilder();
    memref::StoreOp::create(then, loc, partial, shared,
                            ValueRange{rowInBlock, warpInRow});
    gpu::BarrierOp::create(b, loc);
    Value total = memref::LoadOp::create(
        b, loc, shared, ValueRange{rowInBlock, constantIndex(b, loc, 0)});
    for (int64_t w = 1; w < warps; ++w)
      total = combineWith(
          b, loc, combine, total,
          memref::LoadOp::create(
              b, loc, shared, ValueRange{rowInBlock, constantIndex(b, loc, w)}));
    return total;
  }

  bool build() {
    Location loc = func.getLoc();
    OpBuilder b(func.getBody().front().getTerminator());
    // Symbolic rows: each step's row extents, and the row count, read from
    // the buffers before the launch; the grid is computed from them.
    Value rowCount = constantIndex(b, loc, symbolicRows() ? 1 : rows);
    if (symbolicRows()) {
      for (Step &step : steps) {
        Value count = constantIndex(b, loc, 1);
        for (auto [d, extent] : llvm::zip(step.rowLoops, step.rowExtents)) {
          Value v = ShapedType::isDynamic(extent) ? extentOf(b, step, d)
                                                  : constantIndex(b, loc, extent);
          if (!v)
            return false;
          step.rowExtentValues.push_back(v);
          count = arith::MulIOp::create(b, loc, count, v);
        }
        if (step.combiner)
          rowCount = count;
      }
    }
    Value blocks =
        symbolicRows()
            ? arith::CeilDivUIOp::create(b, loc, rowCount,
                                         constantIndex(b, loc, rowsPerBlock))
                  .getResult()
            : constantIndex(b, loc, llvm::divideCeil(rows, rowsPerBlock));
    Launch built = createLaunch(
        b, loc, {blocks, constantIndex(b, loc, 1), constantIndex(b, loc, 1)},
        {perRow * rowsPerBlock, 1, 1}, config);
    launch = built.op;
    OpBuilder &in = built.body;
    auto c = [&](int64_t v) { return constantIndex(in, loc, v); };
    Value tid = launch.getThreadIds().x;
    rowInBlock = arith::DivUIOp::create(in, loc, tid, c(perRow));
    Value t = arith::RemUIOp::create(in, loc, tid, c(perRow));
    lane = arith::RemUIOp::create(in, loc, tid, c(kWarp));
    warpInRow = arith::DivUIOp::create(in, loc, t, c(kWarp));
    Value row = arith::AddIOp::create(
        in, loc, arith::MulIOp::create(in, loc, launch.getBlockIds().x,
                                       c(rowsPerBlock)),
        rowInBlock);
    rowValid = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::ult, row,
                                     symbolicRows() ? rowCount : c(rows));
    safeRow = arith::SelectOp::create(in, loc, rowValid, row, c(0));
    firstOfRow =
        arith::CmpIOp::create(in, loc, arith::CmpIPredicate::eq, t, c(0));
    Value always = arith::ConstantIntOp::create(in, loc, 1, 1);
    for (int64_t i = 0; i < slots; ++i) {
      Value j = arith::AddIOp::create(in, loc, t, c(i * perRow));
      bool inside = (i + 1) * perRow <= length;
      Value valid = inside ? always
                           : arith::CmpIOp::create(
                                 in, loc, arith::CmpIPredicate::ult, j,
                                 c(length))
                                 .getResult();
      columnAlwaysValid.push_back(inside);
      columnValid.push_back(valid);
      safeColumn.push_back(inside ? j
                                  : arith::SelectOp::create(in, loc, valid, j,
                                                            c(0))
                                        .getResult());
    }

    bool ok = true;
    for (Operation &op : func.getBody().front().without_terminator()) {
      if (&op == launch.getOperation())
        break;
      if (auto fill = dyn_cast<linalg::FillOp>(op)) {
        ok = buildFill(in, fill);
      } else if (auto generic = dyn_cast<linalg::GenericOp>(op)) {
        const Step &step = *llvm::find_if(
            steps, [&](const Step &s) { return s.op == generic; });
        ok = buildStep(in, step);
      }
      if (!ok)
        break;
    }
    if (!ok) {
      launch.erase();
      return false;
    }
    gpu::TerminatorOp::create(in, loc);
    return true;
  }

  /// A fill: the value of every element (a temporary's registers), stored
  /// too when the buffer is one of the kernel's.
  bool buildFill(OpBuilder &b, linalg::FillOp fill) {
    Value buffer = fill.getOutputs().front();
    auto type = dyn_cast<MemRefType>(rootOf(buffer).getType());
    if (!type || (!symbolicRows() && !type.hasStaticShape()))
      return false;
    Value value = fill.getInputs().front();
    bool full = holdsRows(type, /*full=*/true);
    if (!full && !holdsRows(type, /*full=*/false))
      return false;
    Value root = rootOf(buffer);
    held[root] = Held{full, SmallVector<Value>(full ? slots : 1, value)};
    // A kernel buffer that is filled: its last writer stores it (fills of
    // outputs are followed by the step that computes them).
    return true;
  }

  bool buildStep(OpBuilder &b, const Step &step) {
    OpOperand *out = step.op.getDpsInitOperand(0);
    if (step.combiner) {
      SmallVector<Value> contributions;
      for (int64_t i = 0; i < slots; ++i) {
        Value c = evaluate(b, step, i, step.combiner->op);
        if (!c)
          return false;
        contributions.push_back(c);
      }
      Value total = reduce(b, step, contributions);
      Value initial = read(b, step, out, std::nullopt);
      if (!initial)
        return false;
      Value result =
          combineWith(b, step.op.getLoc(), step.combiner->op, initial, total);
      return write(b, step, out, /*full=*/false, {result});
    }
    SmallVector<Value> values;
    int64_t count = step.full ? slots : 1;
    for (int64_t i = 0; i < count; ++i) {
      Value v = evaluate(b, step, step.full ? std::optional<int64_t>(i)
                                            : std::nullopt,
                         nullptr);
      if (!v)
        return false;
      values.push_back(v);
    }
    return write(b, step, out, step.full, values);
  }

  /// Whether the row count is symbolic (a sequence length).
  bool symbolicRows() const { return ShapedType::isDynamic(rows); }
  /// Whether loop extents `ranges` span the row space: as many rows when
  /// static, the same extents but for 1s when symbolic.
  bool sameRows(ArrayRef<int64_t> ranges) const {
    if (!symbolicRows())
      return product(ranges) == rows;
    return nonUnit(ranges) == rowShape;
  }
  /// Whether a buffer of `type` holds the rows (and, `full`, their D
  /// elements) in row-major order, by size.
  bool holdsRows(MemRefType type, bool full) const {
    if (!symbolicRows())
      return type.hasStaticShape() &&
             type.getNumElements() == rows * (full ? length : 1);
    SmallVector<int64_t> expected(rowShape);
    if (full)
      expected.push_back(length);
    return nonUnit(type.getShape()) == expected;
  }
  /// The extent of `step`'s loop `d` at run time: the size of an operand
  /// dim that the loop walks. Null when none does.
  Value extentOf(OpBuilder &b, const Step &step, unsigned d) {
    // The kernel's own buffers first: a temporary measured here would
    // outlive the steps the launch replaces.
    for (bool argumentsOnly : {true, false})
      for (OpOperand &operand : step.op->getOpOperands()) {
        if (argumentsOnly && !isKernelBuffer(rootOf(operand.get())))
          continue;
        AffineMap map = step.op.getMatchingIndexingMap(&operand);
        for (auto [i, e] : llvm::enumerate(map.getResults()))
          if (auto dim = dyn_cast<AffineDimExpr>(e);
              dim && dim.getPosition() == d)
            return memref::DimOp::create(b, step.op.getLoc(), operand.get(),
                                         i);
      }
    return nullptr;
  }

  func::FuncOp func;
  const StrategyConfig &config;
  SmallVector<Step> steps;
  /// Rows and row length; rows is kDynamic when symbolic, with rowShape
  /// the row loops' extents but for 1s.
  int64_t rows = 0, length = 0;
  SmallVector<int64_t> rowShape;
  int64_t warps = 1, rowsPerBlock = 1, perRow = kWarp, slots = 0;
  DenseMap<Value, Held> held;
  gpu::LaunchOp launch;
  Value rowInBlock, lane, warpInRow, rowValid, safeRow, firstOfRow;
  SmallVector<Value> columnValid, safeColumn;
  SmallVector<bool> columnAlwaysValid;
};

struct KilnGpuRowFusedPass final
    : kiln::impl::KilnGpuRowFusedBase<KilnGpuRowFusedPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName))
      return;
    DictionaryAttr dict = configFor(func, kRowFused);
    if (!dict)
      return;
    StrategyConfig config(dict, func);
    if (failed(RowFusedBuilder(func, config).run()))
      signalPassFailure();
  }
};

} // namespace
