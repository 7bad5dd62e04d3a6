//===- FlashCommon.cpp - what the flash attention strategies share -------===//
#include "codegen/gpu/FlashCommon.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>

using namespace mlir;

namespace kiln {

FailureOr<FlashBuffers> flashBuffersOf(AttentionOp op, StringRef strategy) {
  auto bufferOf = [](Value tensor) -> Value {
    if (auto toTensor = tensor.getDefiningOp<bufferization::ToTensorOp>())
      return toTensor.getBuffer();
    return Value();
  };
  FlashBuffers buffers;
  buffers.q = bufferOf(op.getQuery());
  buffers.k = bufferOf(op.getKey());
  buffers.v = bufferOf(op.getValue());
  buffers.bias = op.getBias() ? bufferOf(op.getBias()) : Value();
  if (op->hasOneUse())
    buffers.resultBuffer =
        dyn_cast<bufferization::ToBufferOp>(*op->getUsers().begin());
  if (buffers.resultBuffer && buffers.resultBuffer->hasOneUse())
    buffers.resultStep = *buffers.resultBuffer->getUsers().begin();
  if (!buffers.q || !buffers.k || !buffers.v ||
      (op.getBias() && !buffers.bias) || !buffers.resultStep)
    return op.emitError()
           << strategy
           << " expects the bufferized kernel: operands read from buffers, "
              "the result stored to one";
  return buffers;
}

/// The generic that computes `buffer` when its elements can be evaluated
/// where a tile is loaded (computesElements, reading only through
/// tensor.extract/memref.load: a rotary embedding or a gather):
/// `buffer` is a temporary that only it writes and only `reader` (the
/// attention's operand) reads; null otherwise.
linalg::GenericOp computedOperand(Value buffer, Operation *reader) {
  if (!buffer.getDefiningOp<memref::AllocOp>() || !reader->hasOneUse())
    return nullptr;
  linalg::GenericOp generic;
  for (Operation *user : buffer.getUsers()) {
    if (user == reader || isa<memref::DeallocOp>(user))
      continue;
    auto g = dyn_cast<linalg::GenericOp>(user);
    if (generic || !g || g.getNumDpsInits() != 1 || g.getNumDpsInputs() ||
        g.getDpsInitOperand(0)->get() != buffer || !computesElements(g) ||
        g.getNumLoops() != 4 || g->getBlock() != reader->getBlock() ||
        !g->isBeforeInBlock(reader) ||
        llvm::any_of(g.getDpsInputs(), [&](Value input) {
          return input == buffer;
        }))
      return nullptr;
    generic = g;
  }
  if (!generic)
    return nullptr;
  // Evaluated at the launch instead of where it stands: nothing between
  // may write what it reads.
  llvm::SmallPtrSet<Value, 8> reads(generic.getDpsInputs().begin(),
                                    generic.getDpsInputs().end());
  generic.getBody()->walk([&](memref::LoadOp load) {
    reads.insert(load.getMemRef());
  });
  for (Operation *op = generic->getNextNode(); op && op != reader;
       op = op->getNextNode()) {
    auto effects = dyn_cast<MemoryEffectOpInterface>(op);
    if (!effects) {
      if (op->getNumRegions())
        return nullptr;  // effects unknown
      continue;
    }
    SmallVector<MemoryEffects::EffectInstance> list;
    effects.getEffects(list);
    for (const auto &effect : list)
      if (isa<MemoryEffects::Write>(effect.getEffect()) &&
          (!effect.getValue() || reads.contains(effect.getValue())))
        return nullptr;
  }
  return generic;
}

Value evaluateOrZero(OpBuilder &b, Location loc, linalg::GenericOp computed,
                     Value inside, ArrayRef<Value> indices, Type element) {
  auto value = scf::IfOp::create(b, loc, TypeRange{element}, inside,
                                 /*withElseRegion=*/true);
  OpBuilder tb = value.getThenBodyBuilder();
  scf::YieldOp::create(tb, loc, evaluateDecoded(tb, loc, computed, indices));
  OpBuilder eb = value.getElseBodyBuilder();
  scf::YieldOp::create(
      eb, loc,
      arith::ConstantOp::create(eb, loc, eb.getZeroAttr(element)).getResult());
  return value.getResult(0);
}

void resolveFlashViews(AttentionOp op, OpBuilder &b, FlashBuffers &buffers,
                       Value batchCount, Value queryCount, int64_t chunk) {
  Location loc = op.getLoc();
  // Operands that data movement inside the kernel wrote into temporaries
  // (the head split of a QKV projection: gathers and transposes) are read
  // in place, as strided views of the kernel's buffers, when their rows
  // can still be read in chunks. Otherwise the steps stay, as kernels of
  // their own.
  for (Value operand : {op.getQuery(), op.getKey(), op.getValue()}) {
    Movement own;
    auto toTensor = operand.getDefiningOp<bufferization::ToTensorOp>();
    std::optional<StridedView> view =
        sourceView(toTensor.getBuffer(), toTensor, own);
    if (!view || own.steps.empty() || !view->alignedTo(chunk)) {
      buffers.views.push_back(std::nullopt);
      continue;
    }
    buffers.views.push_back(view);
    buffers.movement.steps.insert_range(own.steps);
    buffers.movement.temporaries.insert_range(own.temporaries);
  }
  bufferization::ToBufferOp resultBuffer = buffers.resultBuffer;
  Operation *resultStep = buffers.resultStep;
  if (auto copy = dyn_cast<memref::CopyOp>(resultStep);
      copy && copy.getSource() == resultBuffer.getResult()) {
    buffers.out = copy.getTarget();
    return;
  }
  // Pairs of elements are stored as one 4-byte word.
  if ((buffers.outView = targetView(resultStep, resultBuffer.getResult())) &&
      buffers.outView->alignedTo(2))
    return;
  // The result goes to a temporary that the step then reads.
  buffers.outView.reset();
  auto resultType = cast<ShapedType>(op.getResult().getType());
  SmallVector<Value> sizes;
  if (resultType.isDynamicDim(0))
    sizes.push_back(batchCount);
  if (resultType.isDynamicDim(2))
    sizes.push_back(queryCount);
  buffers.out = memref::AllocOp::create(
      b, loc,
      MemRefType::get(resultType.getShape(), resultType.getElementType()),
      sizes);
  OpBuilder after(resultStep->getBlock()->getTerminator());
  memref::DeallocOp::create(after, loc, buffers.out);
  resultBuffer.getResult().replaceAllUsesWith(
      memref::CastOp::create(b, loc, resultBuffer.getType(), buffers.out));
  buffers.resultStep = nullptr;
}

LogicalResult applyFlashStrategy(
    func::FuncOp func, StringRef strategy,
    function_ref<LogicalResult(AttentionOp, const StrategyConfig &)> rewrite) {
  return applyStrategy<AttentionOp>(
      func, strategy,
      [&](AttentionOp op, const StrategyConfig &config) -> FailureOr<bool> {
        if (failed(rewrite(op, config)))
          return failure();
        return true;
      });
}

void eraseFlashAttention(AttentionOp op, FlashBuffers &buffers) {
  if (buffers.resultStep)
    buffers.resultStep->erase();
  buffers.resultBuffer.erase();
  llvm::SetVector<Operation *> inputs;
  for (Value operand : op->getOperands())
    inputs.insert(operand.getDefiningOp());
  op.erase();
  for (Operation *input : inputs)
    if (input->use_empty())
      input->erase();
  buffers.movement.erase();
}

Value applyScoreTerms(Ix &ix, const ScoreTerms &terms, Value x, Value rowHead,
                      Value query, Value key) {
  OpBuilder &b = ix.b;
  Location loc = ix.loc;
  auto f32c = [&](double value) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value))
        .getResult();
  };
  x = arith::MulFOp::create(b, loc, x, f32c(terms.scale));
  if (terms.softcap > 0) {
    Value cap = f32c(terms.softcap);
    x = arith::MulFOp::create(
        b, loc,
        math::TanhOp::create(b, loc, arith::DivFOp::create(b, loc, x, cap)),
        cap);
  }
  Value keep = ix.ltV(key, terms.keyCount);
  if (terms.bias) {
    auto biasType = cast<MemRefType>(terms.bias.getType());
    Value full[4] = {terms.batch, rowHead, query,
                     ix.select(keep, key, ix.c(0))};
    SmallVector<Value> indices;
    for (int64_t d = 0; d < biasType.getRank(); ++d) {
      int64_t fullDim = 4 - biasType.getRank() + d;
      indices.push_back(biasType.getDimSize(d) == 1 ? ix.c(0) : full[fullDim]);
    }
    Value term = memref::LoadOp::create(b, loc, terms.bias, indices);
    x = arith::AddFOp::create(
        b, loc, x, arith::ExtFOp::create(b, loc, b.getF32Type(), term));
  }
  if (terms.causal)
    keep = ix.andI(keep, arith::CmpIOp::create(b, loc,
                                               arith::CmpIPredicate::sle, key,
                                               ix.add(query,
                                                      terms.causalShift)));
  return arith::SelectOp::create(b, loc, keep, x, terms.negInf);
}

namespace {
template <typename CombineOp>
Value acrossRow(OpBuilder &b, Location loc, Value value) {
  constexpr int64_t kWarp = 32;
  Value width = arith::ConstantIntOp::create(b, loc, kWarp, 32);
  for (int64_t offset : {1, 2}) {
    Value step = arith::ConstantIntOp::create(b, loc, offset, 32);
    value = CombineOp::create(b, loc, value,
                              gpu::ShuffleOp::create(b, loc, value, step, width,
                                                     gpu::ShuffleMode::XOR)
                                  .getShuffleResult());
  }
  return value;
}
} // namespace

Value rowMaximum(OpBuilder &b, Location loc, Value value) {
  return acrossRow<arith::MaximumFOp>(b, loc, value);
}

Value rowSum(OpBuilder &b, Location loc, Value value) {
  return acrossRow<arith::AddFOp>(b, loc, value);
}

RowSoftmax onlineSoftmax(OpBuilder &b, Location loc, MutableArrayRef<Value> s,
                         Value oldMax, Value oldSum, Value negInf) {
  Value mx = s.front();
  for (Value x : s.drop_front())
    mx = arith::MaximumFOp::create(b, loc, mx, x);
  mx = rowMaximum(b, loc, mx);
  RowSoftmax row;
  row.max = arith::MaximumFOp::create(b, loc, oldMax, mx);
  Value unseen = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ,
                                       row.max, negInf);
  Value base = arith::SelectOp::create(
      b, loc, unseen,
      arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0)), row.max);
  row.correction = math::ExpOp::create(
      b, loc, arith::SubFOp::create(b, loc, oldMax, base));
  Value sum = arith::MulFOp::create(b, loc, oldSum, row.correction);
  for (Value &x : s) {
    x = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, x, base));
    sum = arith::AddFOp::create(b, loc, sum, x);
  }
  row.sum = sum;
  return row;
}

Value inverseOrZero(OpBuilder &b, Location loc, Value sum) {
  auto f32c = [&](double value) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value))
        .getResult();
  };
  Value empty =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, sum, f32c(0.0));
  return arith::SelectOp::create(
      b, loc, empty, f32c(0.0),
      arith::DivFOp::create(b, loc, f32c(1.0), sum));
}

Value causalTileEnd(Ix &ix, Value lastVisible, int64_t bn, Value tiles) {
  Value positive = arith::MaxSIOp::create(ix.b, ix.loc, lastVisible, ix.c(0));
  return arith::MinUIOp::create(ix.b, ix.loc,
                                ix.div(ix.add(positive, bn - 1), bn), tiles);
}

} // namespace kiln
