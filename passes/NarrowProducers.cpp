//===- NarrowProducers.cpp - store what every reader rounds, rounded ------===//
//
// Under --precision a GEMM's f32 result (its bias added in f32) is often
// read only to be rounded to bf16 or f16 again: GPT-2's fused QKV
// projection is split into q, k and v by three gathers, each rounding what
// it reads for the narrow attention. The rounding then happens after a
// round trip through memory at twice the width, and the gathers are
// arithmetic kernels instead of data movement that a consumer can read in
// place.
//
// When every reader of an elementwise generic's result rounds each element
// it reads (arith.truncf of the block argument, or of a tensor.extract of
// the result) to one narrower type, the generic rounds instead and yields
// the narrow tensor; the readers read it as it is. The numbers do not
// change: each element is rounded once, as before.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StructuredOpsUtils.h"

namespace kiln {
#define GEN_PASS_DEF_KILNNARROWPRODUCERS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// The type every use of `value` rounds it to (all uses are arith.truncf
/// to one type), or null.
Type roundedTo(Value value) {
  Type narrow;
  for (Operation *user : value.getUsers()) {
    auto trunc = dyn_cast<arith::TruncFOp>(user);
    if (!trunc || trunc.getRoundingmodeAttr() ||
        (narrow && trunc.getType() != narrow))
      return Type();
    narrow = trunc.getType();
  }
  return narrow;
}

/// How `reader` reads `value`: the values inside it that hold the elements
/// (block arguments of inputs, tensor.extract results), or failure when it
/// reads it any other way.
FailureOr<SmallVector<Value>> elementReads(Operation *reader, Value value) {
  auto generic = dyn_cast<linalg::GenericOp>(reader);
  if (!generic)
    return failure();
  SmallVector<Value> reads;
  for (OpOperand &operand : generic->getOpOperands()) {
    if (operand.get() != value)
      continue;
    if (!generic.isDpsInput(&operand))
      return failure();
    reads.push_back(generic.getMatchingBlockArgument(&operand));
  }
  WalkResult walk = generic.getRegion().walk([&](Operation *op) {
    for (Value operand : op->getOperands()) {
      if (operand != value)
        continue;
      auto extract = dyn_cast<tensor::ExtractOp>(op);
      if (!extract || extract.getTensor() != value)
        return WalkResult::interrupt();
      reads.push_back(extract.getResult());
    }
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  return reads;
}

struct KilnNarrowProducersPass final
    : kiln::impl::KilnNarrowProducersBase<KilnNarrowProducersPass> {
  void runOnOperation() override {
    SmallVector<linalg::GenericOp> producers;
    getOperation()->walk(
        [&](linalg::GenericOp generic) { producers.push_back(generic); });
    for (linalg::GenericOp producer : producers)
      narrow(producer);
  }

  void narrow(linalg::GenericOp producer) {
    if (producer.getNumDpsInits() != 1 || producer->getNumResults() != 1 ||
        !producer.hasPureTensorSemantics() ||
        producer.getNumParallelLoops() != producer.getNumLoops())
      return;
    OpOperand *init = producer.getDpsInitOperand(0);
    if (!producer.getMatchingIndexingMap(init).isIdentity() ||
        !producer.getMatchingBlockArgument(init).use_empty())
      return;
    Value result = producer->getResult(0);
    auto type = cast<RankedTensorType>(result.getType());
    if (!isa<FloatType>(type.getElementType()) || result.use_empty())
      return;
    // The result and its reshapes (views: they change with it).
    SmallVector<Value> views = {result};
    for (size_t i = 0; i < views.size(); ++i)
      for (Operation *user : views[i].getUsers())
        if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(user) &&
            user->getOperand(0) == views[i])
          views.push_back(user->getResult(0));
    // Every element every reader takes is rounded to one narrow type.
    Type narrow;
    SmallVector<Value> reads;
    for (Value view : views) {
      llvm::SmallPtrSet<Operation *, 4> readers;
      for (Operation *user : view.getUsers()) {
        if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(user) &&
            user->getOperand(0) == view)
          continue;
        // A read inside a region (tensor.extract in a generic's body) is
        // the read of the op at the value's level.
        Operation *reader = view.getParentBlock()->findAncestorOpInBlock(*user);
        if (!reader)
          return;
        readers.insert(reader);
      }
      for (Operation *reader : readers) {
        FailureOr<SmallVector<Value>> inside = elementReads(reader, view);
        if (failed(inside))
          return;
        for (Value read : *inside) {
          Type to = roundedTo(read);
          if (!to || (narrow && to != narrow))
            return;
          narrow = to;
          reads.push_back(read);
        }
      }
    }
    if (!narrow || narrow.getIntOrFloatBitWidth() >=
                       type.getElementType().getIntOrFloatBitWidth())
      return;

    // The producer rounds before it yields, into a narrow tensor.
    OpBuilder b(producer);
    Location loc = producer.getLoc();
    Value empty = tensor::EmptyOp::create(
        b, loc, tensor::getMixedSizes(b, loc, init->get()), narrow);
    init->set(empty);
    producer.getMatchingBlockArgument(init).setType(narrow);
    Operation *yield = producer.getBody()->getTerminator();
    b.setInsertionPoint(yield);
    yield->setOperand(
        0, arith::TruncFOp::create(b, loc, narrow, yield->getOperand(0)));
    for (Value view : views)
      view.setType(cast<RankedTensorType>(view.getType()).clone(narrow));
    // The readers take the narrow element where they rounded it.
    for (Value read : reads) {
      if (auto extract = read.getDefiningOp<tensor::ExtractOp>()) {
        extract.getResult().setType(narrow);
      } else {
        cast<BlockArgument>(read).setType(narrow);
      }
      for (Operation *user : llvm::make_early_inc_range(read.getUsers())) {
        user->getResult(0).replaceAllUsesWith(read);
        user->erase();
      }
    }
  }
};

} // namespace
