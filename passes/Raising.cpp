//===- Raising.cpp - what the raising passes share ------------------------===//
#include "passes/Raising.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"

#include <cmath>

using namespace mlir;

namespace kiln {

bool isAllParallelElementwise(linalg::GenericOp g) {
  return g.getNumDpsInits() == 1 && g->getNumResults() == 1 &&
         g.getNumParallelLoops() == g.getNumLoops() &&
         g.getMatchingIndexingMap(g.getDpsInitOperand(0)).isIdentity();
}

bool isRightAligned(AffineMap map, ArrayRef<int64_t> shape) {
  int64_t offset = int64_t(map.getNumDims()) - int64_t(map.getNumResults());
  if (offset < 0 || int64_t(shape.size()) != int64_t(map.getNumResults()))
    return false;
  for (auto [i, expr] : llvm::enumerate(map.getResults())) {
    if (auto dim = dyn_cast<AffineDimExpr>(expr)) {
      if (int64_t(dim.getPosition()) != offset + int64_t(i))
        return false;
    } else if (auto c = dyn_cast<AffineConstantExpr>(expr)) {
      if (c.getValue() != 0 || shape[i] != 1)
        return false;
    } else {
      return false;
    }
  }
  return true;
}

Operation *soleBodyOp(linalg::GenericOp g) {
  Operation *found = nullptr;
  for (Operation &op : g.getBlock()->without_terminator()) {
    if (isa<arith::ConstantOp>(op))
      continue;
    if (found)
      return nullptr;
    found = &op;
  }
  auto yield = cast<linalg::YieldOp>(g.getBlock()->getTerminator());
  if (!found || found->getNumResults() != 1 || yield.getNumOperands() != 1 ||
      yield.getOperand(0) != found->getResult(0))
    return nullptr;
  return found;
}

namespace {

/// Whether a step reads `operand` at the element it writes: the identity,
/// up to unit dims on either side (a [B, S, 1] row value read by a
/// [B, S] step).
bool readsSameElement(linalg::GenericOp g, OpOperand *operand) {
  AffineMap map = g.getMatchingIndexingMap(operand);
  if (map.isIdentity())
    return true;
  auto type = dyn_cast<RankedTensorType>(operand->get().getType());
  auto result = cast<RankedTensorType>(g->getResult(0).getType());
  if (!type)
    return false;
  // Each non-unit loop read once, in order, by a dim of the same size;
  // unit dims of the operand read at 0.
  int64_t next = 0;
  for (auto [i, expr] : llvm::enumerate(map.getResults())) {
    if (auto c = dyn_cast<AffineConstantExpr>(expr)) {
      if (c.getValue() != 0 || type.getDimSize(i) != 1)
        return false;
      continue;
    }
    auto dim = dyn_cast<AffineDimExpr>(expr);
    if (!dim || int64_t(dim.getPosition()) < next ||
        type.getDimSize(i) != result.getDimSize(dim.getPosition()))
      return false;
    for (int64_t skipped = next; skipped < dim.getPosition(); ++skipped)
      if (result.getDimSize(skipped) != 1)
        return false;
    next = dim.getPosition() + 1;
  }
  for (int64_t skipped = next; skipped < result.getRank(); ++skipped)
    if (result.getDimSize(skipped) != 1)
      return false;
  return true;
}

} // namespace

bool isScalarStep(Operation *op) {
  if (isa_and_nonnull<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(op))
    return true;
  auto g = dyn_cast_or_null<linalg::GenericOp>(op);
  if (!g || !isAllParallelElementwise(g) ||
      !isa<FloatType>(getElementTypeOrSelf(g->getResult(0).getType())))
    return false;
  for (BlockArgument arg : g.getRegionOutputArgs())
    if (!arg.use_empty())
      return false;
  return true;
}

std::optional<ScalarRegion> ScalarRegion::between(Operation *root, Value x,
                                                  ConstantEvaluator &eval,
                                                  size_t maxOps) {
  if (!isScalarStep(root))
    return std::nullopt;
  ScalarRegion region{x, {root}};
  llvm::DenseSet<Operation *> inside = {root};
  auto uniform = [&](Value v) {
    const ConstTensor *t = eval.evaluate(v);
    return t && t->uniform();
  };
  for (size_t i = 0; i < region.ops.size(); ++i) {
    Operation *op = region.ops[i];
    SmallVector<std::pair<Value, bool>> reads; // value, at the same element
    if (auto g = dyn_cast<linalg::GenericOp>(op)) {
      for (OpOperand *operand : g.getDpsInputOperands())
        reads.push_back({operand->get(), readsSameElement(g, operand)});
    } else {
      reads.push_back({op->getOperand(0), true});
    }
    for (auto [v, same] : reads) {
      if (v == x) {
        if (!same)
          return std::nullopt;
        continue;
      }
      if (uniform(v))
        continue;
      Operation *def = v.getDefiningOp();
      if (!same || !isScalarStep(def))
        return std::nullopt;
      if (inside.insert(def).second) {
        region.ops.push_back(def);
        if (region.ops.size() > maxOps)
          return std::nullopt;
      }
    }
  }
  for (Operation *op : llvm::drop_begin(region.ops))
    for (Operation *user : op->getResult(0).getUsers())
      if (!inside.contains(user) && !isa<tensor::DimOp>(user))
        return std::nullopt;
  return region;
}

std::optional<double> ScalarRegion::evaluate(double t,
                                             ConstantEvaluator &eval) const {
  llvm::DenseMap<Value, double> tensors;
  tensors[x] = t;
  auto valueOf = [&](Value v) -> std::optional<double> {
    auto known = tensors.find(v);
    if (known != tensors.end())
      return known->second;
    if (const ConstTensor *c = eval.evaluate(v))
      return c->uniform();
    return std::nullopt;
  };
  // Producers first: the block's order.
  SmallVector<Operation *> ordered(ops.begin(), ops.end());
  llvm::sort(ordered, [](Operation *a, Operation *b) {
    return a->isBeforeInBlock(b);
  });
  for (Operation *op : ordered) {
    auto g = dyn_cast<linalg::GenericOp>(op);
    if (!g) {
      std::optional<double> v = valueOf(op->getOperand(0));
      if (!v)
        return std::nullopt;
      tensors[op->getResult(0)] = *v;
      continue;
    }
    llvm::DenseMap<Value, double> scalars;
    for (OpOperand *operand : g.getDpsInputOperands()) {
      std::optional<double> v = valueOf(operand->get());
      if (!v)
        return std::nullopt;
      scalars[g.getMatchingBlockArgument(operand)] = *v;
    }
    for (Operation &bodyOp : g.getBlock()->without_terminator()) {
      if (bodyOp.getNumResults() != 1)
        return std::nullopt;
      SmallVector<double, 3> in;
      for (Value operand : bodyOp.getOperands()) {
        auto it = scalars.find(operand);
        if (it != scalars.end()) {
          in.push_back(it->second);
          continue;
        }
        // A scalar constant the body captures from outside.
        auto c = operand.getDefiningOp<arith::ConstantOp>();
        std::optional<double> captured =
            c ? applyScalarOp(c, {}) : std::nullopt;
        if (!captured)
          return std::nullopt;
        in.push_back(*captured);
      }
      std::optional<double> out = applyScalarOp(&bodyOp, in);
      if (!out)
        return std::nullopt;
      scalars[bodyOp.getResult(0)] = *out;
    }
    auto yield = cast<linalg::YieldOp>(g.getBlock()->getTerminator());
    auto it = scalars.find(yield.getOperand(0));
    if (it == scalars.end())
      return std::nullopt;
    tensors[g->getResult(0)] = it->second;
  }
  return tensors.lookup(result());
}

double ScalarRegion::ulp() const {
  unsigned mantissa = 24;
  for (Operation *op : ops)
    if (auto f = dyn_cast<FloatType>(getElementTypeOrSelf(op->getResult(0).getType())))
      mantissa = std::min(mantissa, unsigned(f.getFPMantissaWidth()));
  return std::ldexp(1.0, 1 - int(mantissa));
}

void ScalarRegion::erase() {
  // Readers before their producers.
  SmallVector<Operation *> ordered(ops.begin(), ops.end());
  llvm::sort(ordered, [](Operation *a, Operation *b) {
    return b->isBeforeInBlock(a);
  });
  for (Operation *op : ordered) {
    redirectDims(op, x);
    op->erase();
  }
}

void redirectDims(Operation *op, Value x) {
  auto rank = cast<RankedTensorType>(x.getType()).getRank();
  for (Value result : op->getResults())
    for (OpOperand &use : llvm::make_early_inc_range(result.getUses()))
      if (auto dim = dyn_cast<tensor::DimOp>(use.getOwner()))
        if (std::optional<int64_t> i = dim.getConstantIndex(); i && *i < rank)
          use.set(x);
}

void recordRaised(func::FuncOp func, StringRef name, int64_t count) {
  if (count == 0)
    return;
  Builder b(func.getContext());
  SmallVector<NamedAttribute> counts;
  if (auto previous = func->getAttrOfType<DictionaryAttr>("kiln.raised"))
    counts.append(previous.begin(), previous.end());
  int64_t total = count;
  for (NamedAttribute &a : counts)
    if (a.getName() == name)
      if (auto n = dyn_cast<IntegerAttr>(a.getValue()))
        total += n.getInt();
  llvm::erase_if(counts, [&](NamedAttribute a) { return a.getName() == name; });
  counts.push_back(b.getNamedAttr(name, b.getI64IntegerAttr(total)));
  func->setAttr("kiln.raised", b.getDictionaryAttr(counts));
}

} // namespace kiln
