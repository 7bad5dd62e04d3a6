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
    // hoisted, a size computed from the dims).
    if (auto constant = v.getDefiningOp<arith::ConstantOp>()) {
      if (auto f = dyn_cast<FloatAttr>(constant.getValue()))
        return f.getValueAsDouble();
      if (auto i = dyn_cast<IntegerAttr>(constant.getValue()))
        return i.getType().isInteger(1) ? double(i.getValue().getBoolValue())
                                        : double(i.getValue().getSExtValue());
    }
    return tensors.scalar(v);
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
  if (!type)
    return nullptr;
  // The shape: static, or computed from the bound dims.
  std::optional<SmallVector<int64_t>> shape = shapeOf(v);
  if (!shape || llvm::any_of(*shape, [](int64_t d) { return d < 0; }) ||
      numElements(*shape) > maxElements)
    return nullptr;
  int64_t elementCount = numElements(*shape);
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
  out.shape = *shape;

  if (auto constant = dyn_cast<arith::ConstantOp>(def)) {
    auto attr = dyn_cast<ElementsAttr>(constant.getValue());
    if (!attr)
      return nullptr;
    std::optional<std::vector<double>> values = denseValues(attr);
    if (!values)
      return nullptr;
    if (int64_t(values->size()) != elementCount) {
      if (values->size() != 1)
        return nullptr;
      values->assign(elementCount, values->front());
    }
    out.values = std::move(*values);
    return store(std::move(out));
  }
  // Reshapes keep the row-major order of the elements.
  if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp, tensor::CastOp>(def) ||
      isa<tensor::ReshapeOp>(def)) {
    const ConstTensor *source = evaluate(def->getOperand(0));
    if (!source || source->size() != elementCount)
      return nullptr;
    out.values = source->values;
    return store(std::move(out));
  }
  if (auto from = dyn_cast<tensor::FromElementsOp>(def)) {
    for (Value element : from.getElements()) {
      std::optional<double> x = scalar(element);
      if (!x)
        return nullptr;
      out.values.push_back(*x);
    }
    return store(std::move(out));
  }
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    const ConstTensor *source = evaluate(slice.getSource());
    if (!source || !slice.hasUnitStride() ||
        slice.getSourceType().getRank() != type.getRank())
      return nullptr;
    SmallVector<int64_t> offsets;
    for (OpFoldResult offset : slice.getMixedOffsets()) {
      std::optional<int64_t> o = sizeOf(offset);
      if (!o)
        return nullptr;
      offsets.push_back(*o);
    }
    for (int64_t d = 0; d < type.getRank(); ++d)
      if (offsets[d] < 0 || offsets[d] + out.shape[d] > source->shape[d])
        return nullptr;
    out.values.resize(elementCount);
    SmallVector<int64_t> at(type.getRank(), 0), src(type.getRank());
    for (int64_t n = 0; n < elementCount; ++n) {
      for (int64_t d = 0; d < type.getRank(); ++d)
        src[d] = at[d] + offsets[d];
      out.values[n] = source->values[offsetOf(source->shape, src)];
      for (int64_t d = type.getRank() - 1; d >= 0 && ++at[d] == out.shape[d]; --d)
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
  if (ShapedType::isDynamicShape(ranges)) {
    // The operands' shapes at the bound dims, through the loops' maps.
    SmallVector<int64_t> shapes;
    for (OpOperand &operand : linalgOp->getOpOperands()) {
      if (!isa<ShapedType>(operand.get().getType()))
        continue;
      std::optional<SmallVector<int64_t>> s = shapeOf(operand.get());
      if (!s)
        return nullptr;
      shapes.append(*s);
    }
    AffineMap shapesToLoops = linalgOp.getShapesToLoopsMap();
    if (!shapesToLoops)
      return nullptr;
    ranges = shapesToLoops.compose(shapes);
  }
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
  out.values.assign(elementCount, 0.0);
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

void ConstantEvaluator::bindDims(llvm::StringMap<int64_t> sizes) {
  dims = std::move(sizes);
  cache.clear();
  scalars.clear();
}

std::optional<int64_t> ConstantEvaluator::sizeOf(OpFoldResult size) {
  if (auto attr = dyn_cast<Attribute>(size)) {
    if (auto i = dyn_cast<IntegerAttr>(attr))
      return i.getInt();
    return std::nullopt;
  }
  std::optional<double> x = scalar(cast<Value>(size));
  if (!x)
    return std::nullopt;
  return int64_t(*x);
}

std::optional<SmallVector<int64_t>> ConstantEvaluator::shapeOf(Value v) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  if (!type)
    return std::nullopt;
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    std::optional<int64_t> size = dimOf(v, d);
    if (!size)
      return std::nullopt;
    shape.push_back(*size);
  }
  return shape;
}

std::optional<int64_t> ConstantEvaluator::dimOf(Value v, unsigned d) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  if (!type || d >= type.getRank())
    return std::nullopt;
  if (!type.isDynamicDim(d))
    return type.getDimSize(d);
  if (dims.empty())
    return std::nullopt;
  if (auto it = cache.find(v); it != cache.end() && it->second)
    return it->second->shape[d];
  // A function argument's named dim.
  if (auto arg = dyn_cast<BlockArgument>(v)) {
    auto func = dyn_cast<FunctionOpInterface>(arg.getOwner()->getParentOp());
    if (!func || arg.getOwner() != &func.getFunctionBody().front())
      return std::nullopt;
    auto names = func.getArgAttrOfType<ArrayAttr>(arg.getArgNumber(),
                                                  "kiln.dims");
    if (!names || d >= names.size())
      return std::nullopt;
    auto name = dyn_cast<StringAttr>(names[d]);
    auto it = name ? dims.find(name.getValue()) : dims.end();
    if (it == dims.end())
      return std::nullopt;
    return it->second;
  }
  Operation *def = v.getDefiningOp();
  unsigned result = cast<OpResult>(v).getResultNumber();
  if (auto empty = dyn_cast<tensor::EmptyOp>(def))
    return sizeOf(empty.getDynamicSize(d));
  if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def))
    return sizeOf(expand.getMixedOutputShape()[d]);
  if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(def)) {
    int64_t size = 1;
    for (int64_t s : collapse.getReassociationIndices()[d]) {
      std::optional<int64_t> part = dimOf(collapse.getSrc(), s);
      if (!part)
        return std::nullopt;
      size *= *part;
    }
    return size;
  }
  if (auto cast = dyn_cast<tensor::CastOp>(def))
    return dimOf(cast.getSource(), d);
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def);
      slice && slice.getSourceType().getRank() == type.getRank())
    return sizeOf(slice.getMixedSizes()[d]);
  if (auto reshape = dyn_cast<tensor::ReshapeOp>(def)) {
    const ConstTensor *shape = evaluate(reshape.getShape());
    if (!shape || d >= shape->values.size())
      return std::nullopt;
    return int64_t(shape->values[d]);
  }
  if (auto dps = dyn_cast<DestinationStyleOpInterface>(def);
      dps && result < dps.getNumDpsInits())
    return dimOf(dps.getDpsInitOperand(result)->get(), d);
  return std::nullopt;
}

std::optional<double> ConstantEvaluator::scalar(Value v) {
  if (auto it = scalars.find(v); it != scalars.end())
    return it->second;
  scalars[v] = std::nullopt; // in progress
  std::optional<double> x = computeScalar(v);
  scalars[v] = x;
  return x;
}

std::optional<double> ConstantEvaluator::computeScalar(Value v) {
  Operation *def = v.getDefiningOp();
  if (!def || def->getNumResults() != 1 || isa<ShapedType>(v.getType()))
    return std::nullopt;
  if (auto dim = dyn_cast<tensor::DimOp>(def)) {
    std::optional<double> index = scalar(dim.getIndex());
    if (!index)
      return std::nullopt;
    std::optional<int64_t> size = dimOf(dim.getSource(), unsigned(*index));
    if (!size)
      return std::nullopt;
    return double(*size);
  }
  if (auto extract = dyn_cast<tensor::ExtractOp>(def)) {
    const ConstTensor *t = evaluate(extract.getTensor());
    if (!t)
      return std::nullopt;
    SmallVector<int64_t> at;
    for (Value i : extract.getIndices()) {
      std::optional<double> x = scalar(i);
      if (!x)
        return std::nullopt;
      at.push_back(int64_t(*x));
    }
    for (size_t d = 0; d < at.size(); ++d)
      if (at[d] < 0 || at[d] >= t->shape[d])
        return std::nullopt;
    return t->values[offsetOf(t->shape, at)];
  }
  // Index arithmetic only (no regions, no side effects).
  if (def->getNumRegions() || !isMemoryEffectFree(def))
    return std::nullopt;
  SmallVector<double, 3> in;
  for (Value operand : def->getOperands()) {
    std::optional<double> x = scalar(operand);
    if (!x)
      return std::nullopt;
    in.push_back(*x);
  }
  auto i64 = [](double x) { return int64_t(x); };
  std::optional<double> out =
      llvm::TypeSwitch<Operation *, std::optional<double>>(def)
          .Case<arith::DivUIOp, arith::FloorDivSIOp>(
              [&](auto) -> std::optional<double> {
                if (i64(in[1]) == 0)
                  return std::nullopt;
                return std::floor(in[0] / in[1]);
              })
          .Case<arith::CeilDivUIOp, arith::CeilDivSIOp>(
              [&](auto) -> std::optional<double> {
                if (i64(in[1]) == 0)
                  return std::nullopt;
                return std::ceil(in[0] / in[1]);
              })
          .Case<arith::RemUIOp>([&](auto) -> std::optional<double> {
            if (i64(in[1]) == 0)
              return std::nullopt;
            return double(i64(in[0]) % i64(in[1]));
          })
          .Case<arith::MaxUIOp>([&](auto) { return std::max(in[0], in[1]); })
          .Case<arith::MinUIOp>([&](auto) { return std::min(in[0], in[1]); })
          .Case<arith::IndexCastUIOp>([&](auto) { return in[0]; })
          .Default([&](Operation *op) { return applyScalarOp(op, in); });
  if (!out)
    return std::nullopt;
  return roundTo(v.getType(), *out);
}

} // namespace kiln
