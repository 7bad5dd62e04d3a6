//===- ConstantEval.cpp - values of small tensors the graph computes from constants -===//
#include "passes/ConstantEval.h"
#include "passes/Raising.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;

namespace kiln {

std::optional<double> ConstTensor::uniform() const {
  if (values.empty())
    return std::nullopt;
  for (double v : values)
    if (v != values.front() && !(std::isnan(v) && std::isnan(values.front())))
      return std::nullopt;
  return values.front();
}

std::optional<double> applyScalarOp(Operation *op, ArrayRef<double> a) {
  auto i64 = [](double x) { return int64_t(x); };
  return llvm::TypeSwitch<Operation *, std::optional<double>>(op)
      .Case<arith::ConstantOp>([&](arith::ConstantOp c) -> std::optional<double> {
        if (auto f = dyn_cast<FloatAttr>(c.getValue()))
          return f.getValueAsDouble();
        if (auto i = dyn_cast<IntegerAttr>(c.getValue()))
          return double(i.getValue().getSExtValue());
        return std::nullopt;
      })
      .Case<arith::AddFOp, arith::AddIOp>([&](auto) { return a[0] + a[1]; })
      .Case<arith::SubFOp, arith::SubIOp>([&](auto) { return a[0] - a[1]; })
      .Case<arith::MulFOp, arith::MulIOp>([&](auto) { return a[0] * a[1]; })
      .Case<arith::DivFOp>([&](auto) { return a[0] / a[1]; })
      .Case<arith::DivSIOp>([&](auto) -> std::optional<double> {
        if (i64(a[1]) == 0)
          return std::nullopt;
        return double(i64(a[0]) / i64(a[1]));
      })
      .Case<arith::RemSIOp>([&](auto) -> std::optional<double> {
        if (i64(a[1]) == 0)
          return std::nullopt;
        return double(i64(a[0]) % i64(a[1]));
      })
      .Case<arith::NegFOp>([&](auto) { return -a[0]; })
      .Case<arith::MaximumFOp, arith::MaxNumFOp, arith::MaxSIOp>(
          [&](auto) { return std::max(a[0], a[1]); })
      .Case<arith::MinimumFOp, arith::MinNumFOp, arith::MinSIOp>(
          [&](auto) { return std::min(a[0], a[1]); })
      .Case<arith::SelectOp>([&](auto) { return a[0] != 0 ? a[1] : a[2]; })
      .Case<arith::AndIOp>([&](auto) { return double(i64(a[0]) & i64(a[1])); })
      .Case<arith::OrIOp>([&](auto) { return double(i64(a[0]) | i64(a[1])); })
      .Case<arith::XOrIOp>([&](auto) { return double(i64(a[0]) ^ i64(a[1])); })
      .Case<arith::IndexCastOp, arith::SIToFPOp, arith::ExtFOp,
            arith::TruncFOp, arith::ExtSIOp, arith::TruncIOp>(
          [&](auto) { return a[0]; })
      .Case<arith::UIToFPOp, arith::ExtUIOp>([&](auto) { return a[0]; })
      .Case<arith::FPToSIOp>([&](auto) { return std::trunc(a[0]); })
      .Case<arith::CmpFOp>([&](arith::CmpFOp c) -> std::optional<double> {
        double x = a[0], y = a[1];
        bool unordered = std::isnan(x) || std::isnan(y);
        using P = arith::CmpFPredicate;
        switch (c.getPredicate()) {
        case P::OEQ: return !unordered && x == y;
        case P::ONE: return !unordered && x != y;
        case P::OLT: return !unordered && x < y;
        case P::OLE: return !unordered && x <= y;
        case P::OGT: return !unordered && x > y;
        case P::OGE: return !unordered && x >= y;
        case P::UEQ: return unordered || x == y;
        case P::UNE: return unordered || x != y;
        case P::ULT: return unordered || x < y;
        case P::ULE: return unordered || x <= y;
        case P::UGT: return unordered || x > y;
        case P::UGE: return unordered || x >= y;
        case P::ORD: return !unordered;
        case P::UNO: return unordered;
        case P::AlwaysTrue: return 1.0;
        case P::AlwaysFalse: return 0.0;
        }
        return std::nullopt;
      })
      .Case<arith::CmpIOp>([&](arith::CmpIOp c) -> std::optional<double> {
        int64_t x = i64(a[0]), y = i64(a[1]);
        using P = arith::CmpIPredicate;
        switch (c.getPredicate()) {
        case P::eq: return x == y;
        case P::ne: return x != y;
        case P::slt: return x < y;
        case P::sle: return x <= y;
        case P::sgt: return x > y;
        case P::sge: return x >= y;
        default: return std::nullopt; // unsigned: not in masks
        }
      })
      .Case<math::SqrtOp>([&](auto) { return std::sqrt(a[0]); })
      .Case<math::RsqrtOp>([&](auto) { return 1 / std::sqrt(a[0]); })
      .Case<math::ExpOp>([&](auto) { return std::exp(a[0]); })
      .Case<math::LogOp>([&](auto) { return std::log(a[0]); })
      .Case<math::PowFOp>([&](auto) { return std::pow(a[0], a[1]); })
      .Case<math::CosOp>([&](auto) { return std::cos(a[0]); })
      .Case<math::SinOp>([&](auto) { return std::sin(a[0]); })
      .Case<math::FloorOp>([&](auto) { return std::floor(a[0]); })
      .Case<math::TanhOp>([&](auto) { return std::tanh(a[0]); })
      .Case<math::ErfOp>([&](auto) { return std::erf(a[0]); })
      .Case<math::AbsFOp>([&](auto) { return std::abs(a[0]); })
      .Default([](Operation *) { return std::nullopt; });
}

namespace {

int64_t numElements(ArrayRef<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// Rounds to what the element type holds (f32 and narrower: through float).
double roundTo(Type type, double v) {
  if (auto f = dyn_cast<FloatType>(type)) {
    if (f.getWidth() >= 64)
      return v;
    bool lost;
    APFloat a(v);
    a.convert(f.getFloatSemantics(), APFloat::rmNearestTiesToEven, &lost);
    return a.convertToDouble();
  }
  if (type.isInteger(1))
    return v != 0;
  return v;
}

std::optional<std::vector<double>> denseValues(ElementsAttr attr) {
  std::vector<double> out;
  Type element = attr.getElementType();
  auto dense = dyn_cast<DenseElementsAttr>(attr);
  if (!dense) {
    auto resource = dyn_cast<DenseResourceElementsAttr>(attr);
    if (!resource)
      return std::nullopt;
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt;
    bool splat = false;
    auto type = cast<ShapedType>(attr.getType());
    if (!DenseElementsAttr::isValidRawBuffer(type, blob->getData(), splat))
      return std::nullopt;
    dense = DenseElementsAttr::getFromRawBuffer(type, blob->getData());
  }
  int64_t n = dense.getNumElements();
  out.reserve(n);
  if (isa<FloatType>(element)) {
    for (const APFloat &v : dense.getValues<APFloat>())
      out.push_back(v.convertToDouble());
  } else if (auto integer = dyn_cast<IntegerType>(element)) {
    for (const APInt &v : dense.getValues<APInt>())
      out.push_back(integer.getWidth() == 1 ? double(v.getBoolValue())
                                            : double(v.getSExtValue()));
  } else if (element.isIndex()) {
    for (const APInt &v : dense.getValues<APInt>())
      out.push_back(double(v.getSExtValue()));
  } else {
    return std::nullopt;
  }
  return out;
}

/// Row-major offset of `index` in `shape`.
int64_t offsetOf(ArrayRef<int64_t> shape, ArrayRef<int64_t> index) {
  int64_t offset = 0;
  for (size_t d = 0; d < shape.size(); ++d)
    offset = offset * shape[d] + index[d];
  return offset;
}

/// The scalar interpreter of a linalg body at one point of the iteration
/// space.
class BodyEval {
public:
  BodyEval(ConstantEvaluator &tensors, ArrayRef<int64_t> ivs)
      : tensors(tensors), ivs(ivs) {}

  void bind(Value v, double x) { scalars[v] = x; }

  /// Runs the block; the yielded values, or nothing for an op it does not
  /// know.
  std::optional<SmallVector<double>> run(Block &block) {
    for (Operation &op : block) {
      if (auto yield = dyn_cast<linalg::YieldOp>(op)) {
        SmallVector<double> out;
        for (Value v : yield.getValues()) {
          auto it = scalars.find(v);
          if (it == scalars.end())
            return std::nullopt;
          out.push_back(it->second);
        }
        return out;
      }
      if (op.getNumResults() != 1 || !step(&op))
        return std::nullopt;
    }
    return std::nullopt;
  }

private:
  std::optional<double> get(Value v) {
    auto it = scalars.find(v);
    if (it != scalars.end())
      return it->second;
    // Scalars defined outside the body (a constant the canonicalizer
    // hoisted).
    if (auto constant = v.getDefiningOp<arith::ConstantOp>()) {
      if (auto f = dyn_cast<FloatAttr>(constant.getValue()))
        return f.getValueAsDouble();
      if (auto i = dyn_cast<IntegerAttr>(constant.getValue()))
        return i.getType().isInteger(1) ? double(i.getValue().getBoolValue())
                                        : double(i.getValue().getSExtValue());
    }
    return std::nullopt;
  }

  bool step(Operation *op) {
    Value result = op->getResult(0);
    Type type = result.getType();
    if (auto index = dyn_cast<linalg::IndexOp>(op)) {
      if (index.getDim() >= ivs.size())
        return false;
      scalars[result] = double(ivs[index.getDim()]);
      return true;
    }
    if (auto extract = dyn_cast<tensor::ExtractOp>(op)) {
      const ConstTensor *t = tensors.evaluate(extract.getTensor());
      if (!t)
        return false;
      SmallVector<int64_t> at;
      for (Value i : extract.getIndices()) {
        std::optional<double> x = get(i);
        if (!x)
          return false;
        at.push_back(int64_t(*x));
      }
      for (size_t d = 0; d < at.size(); ++d)
        if (at[d] < 0 || at[d] >= t->shape[d])
          return false;
      scalars[result] = t->values[offsetOf(t->shape, at)];
      return true;
    }
    SmallVector<double, 3> in;
    for (Value operand : op->getOperands()) {
      std::optional<double> x = get(operand);
      if (!x)
        return false;
      in.push_back(*x);
    }
    std::optional<double> out = applyScalarOp(op, in);
    if (!out)
      return false;
    scalars[result] = roundTo(type, *out);
    return true;
  }


  ConstantEvaluator &tensors;
  ArrayRef<int64_t> ivs;
  llvm::DenseMap<Value, double> scalars;
};

} // namespace

const ConstTensor *ConstantEvaluator::evaluate(Value v) {
  auto it = cache.find(v);
  if (it != cache.end())
    return it->second.get();
  // Marks `v` as in progress (nothing) so that a cycle cannot recurse.
  cache[v] = nullptr;
  const ConstTensor *result = compute(v);
  return result;
}

const ConstTensor *ConstantEvaluator::compute(Value v) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  if (!type || !type.hasStaticShape() || type.getNumElements() > maxElements)
    return nullptr;
  auto store = [&](ConstTensor t) -> const ConstTensor * {
    auto owned = std::make_unique<ConstTensor>(std::move(t));
    const ConstTensor *raw = owned.get();
    cache[v] = std::move(owned);
    return raw;
  };
  Operation *def = v.getDefiningOp();
  if (!def)
    return nullptr;
  ConstTensor out;
  out.shape.assign(type.getShape().begin(), type.getShape().end());

  if (auto constant = dyn_cast<arith::ConstantOp>(def)) {
    auto attr = dyn_cast<ElementsAttr>(constant.getValue());
    if (!attr)
      return nullptr;
    std::optional<std::vector<double>> values = denseValues(attr);
    if (!values)
      return nullptr;
    if (int64_t(values->size()) != type.getNumElements()) {
      if (values->size() != 1)
        return nullptr;
      values->assign(type.getNumElements(), values->front());
    }
    out.values = std::move(*values);
    return store(std::move(out));
  }
  // Reshapes keep the row-major order of the elements.
  if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp, tensor::CastOp>(def) ||
      isa<tensor::ReshapeOp>(def)) {
    const ConstTensor *source = evaluate(def->getOperand(0));
    if (!source || source->size() != type.getNumElements())
      return nullptr;
    out.values = source->values;
    return store(std::move(out));
  }
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    const ConstTensor *source = evaluate(slice.getSource());
    if (!source || !slice.hasUnitStride() ||
        ShapedType::isDynamicShape(slice.getStaticOffsets()) ||
        ShapedType::isDynamicShape(slice.getStaticSizes()) ||
        slice.getSourceType().getRank() != type.getRank())
      return nullptr;
    ArrayRef<int64_t> offsets = slice.getStaticOffsets();
    out.values.resize(type.getNumElements());
    SmallVector<int64_t> at(type.getRank(), 0), src(type.getRank());
    for (int64_t n = 0; n < type.getNumElements(); ++n) {
      for (int64_t d = 0; d < type.getRank(); ++d)
        src[d] = at[d] + offsets[d];
      out.values[n] = source->values[offsetOf(source->shape, src)];
      for (int64_t d = type.getRank() - 1; d >= 0 && ++at[d] == type.getDimSize(d); --d)
        at[d] = 0;
    }
    return store(std::move(out));
  }

  auto linalgOp = dyn_cast<linalg::LinalgOp>(def);
  if (!linalgOp || !linalgOp.hasPureTensorSemantics() ||
      linalgOp.getNumParallelLoops() != linalgOp.getNumLoops())
    return nullptr;
  unsigned resultNumber = cast<OpResult>(v).getResultNumber();
  SmallVector<int64_t> ranges = linalgOp.getStaticLoopRanges();
  if (ShapedType::isDynamicShape(ranges))
    return nullptr;
  SmallVector<AffineMap> maps = linalgOp.getIndexingMapsArray();
  OpOperand *init = linalgOp.getDpsInitOperand(resultNumber);
  AffineMap outMap = linalgOp.getMatchingIndexingMap(init);
  if (!outMap.isPermutation())
    return nullptr;
  Block *body = linalgOp.getBlock();
  // The operands the body reads, evaluated (an unread init need not be).
  SmallVector<const ConstTensor *> operands;
  SmallVector<std::unique_ptr<ConstTensor>> scalars;
  for (OpOperand &operand : linalgOp->getOpOperands()) {
    bool read = !body->getArgument(operand.getOperandNumber()).use_empty();
    const ConstTensor *t = nullptr;
    if (read && !isa<ShapedType>(operand.get().getType())) {
      // A scalar operand (linalg.fill's value): a constant, as a rank-0
      // tensor.
      auto constant = operand.get().getDefiningOp<arith::ConstantOp>();
      auto f = constant ? dyn_cast<FloatAttr>(constant.getValue()) : nullptr;
      if (!f)
        return nullptr;
      auto scalar = std::make_unique<ConstTensor>();
      scalar->values = {f.getValueAsDouble()};
      t = scalar.get();
      scalars.push_back(std::move(scalar));
    } else if (read) {
      t = evaluate(operand.get());
    }
    if (read && !t)
      return nullptr;
    operands.push_back(t);
  }
  int64_t count = numElements(ranges);
  if (count > maxElements)
    return nullptr;
  out.values.assign(type.getNumElements(), 0.0);
  SmallVector<int64_t> ivs(ranges.size(), 0);
  for (int64_t n = 0; n < count; ++n) {
    BodyEval eval(*this, ivs);
    for (OpOperand &operand : linalgOp->getOpOperands()) {
      const ConstTensor *t = operands[operand.getOperandNumber()];
      if (!t)
        continue;
      SmallVector<int64_t> at =
          maps[operand.getOperandNumber()].compose(ivs);
      eval.bind(body->getArgument(operand.getOperandNumber()),
                t->values[offsetOf(t->shape, at)]);
    }
    std::optional<SmallVector<double>> yielded = eval.run(*body);
    if (!yielded || yielded->size() <= resultNumber)
      return nullptr;
    SmallVector<int64_t> at = outMap.compose(ivs);
    out.values[offsetOf(out.shape, at)] =
        roundTo(type.getElementType(), (*yielded)[resultNumber]);
    for (int64_t d = int64_t(ivs.size()) - 1; d >= 0 && ++ivs[d] == ranges[d]; --d)
      ivs[d] = 0;
  }
  return store(std::move(out));
}

} // namespace kiln
