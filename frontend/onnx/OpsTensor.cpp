//===- OpsTensor.cpp - ONNX data movement: Shape, Concat, Slice, Gather... ===//
//
// Data movement is a linalg.generic that computes, from the output indices
// (linalg.index), where each element comes from and reads it with
// tensor.extract: one kernel, no copies through intermediate buffers.
//
// Shapes are static, so Shape and Size are constants, and the ops of shape
// arithmetic (Gather, Concat, Slice, Squeeze, Unsqueeze, Cast, Range,
// ConstantOfShape, ...) fold when their inputs are constants: the
// Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains exporters write
// become one constant shape for Reshape.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

/// A constant i64 tensor of `shape`.
Value int64Constant(OpBuilder &b, Location loc, ArrayRef<int64_t> values,
                    ArrayRef<int64_t> shape) {
  auto type = RankedTensorType::get(shape, b.getI64Type());
  return arith::ConstantOp::create(b, loc,
                                   DenseElementsAttr::get(type, values));
}

/// Input `i` as a dense constant, or null (no error).
DenseElementsAttr denseInput(NodeContext &ctx, int i) {
  return dyn_cast_or_null<DenseElementsAttr>(ctx.constantElements(i));
}

/// A generic producing `shape` x `element` whose body computes each element
/// from the output indices.
Value buildIndexed(
    OpBuilder &b, Location loc, ArrayRef<int64_t> shape, Type element,
    function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  int64_t rank = shape.size();
  auto type = RankedTensorType::get(shape, element);
  Value init = tensor::EmptyOp::create(b, loc, shape, element);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, TypeRange{type}, ValueRange{}, ValueRange{init},
             {AffineMap::getMultiDimIdentityMap(rank, b.getContext())},
             iterators,
             [&](OpBuilder &nb, Location nl, ValueRange) {
               SmallVector<Value> ivs;
               for (int64_t d = 0; d < rank; ++d)
                 ivs.push_back(linalg::IndexOp::create(nb, nl, d));
               linalg::YieldOp::create(nb, nl, body(nb, nl, ivs));
             })
      .getResult(0);
}

Value idx(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

LogicalResult importShape(NodeContext &ctx) {
  if (!ctx.input(0))
    return failure();
  ArrayRef<int64_t> shape = ctx.inputType(0).getShape();
  int64_t rank = shape.size();
  int64_t start = ctx.intAttr("start", 0), end = ctx.intAttr("end", rank);
  auto clampIndex = [&](int64_t v) {
    if (v < 0)
      v += rank;
    return std::clamp<int64_t>(v, 0, rank);
  };
  start = clampIndex(start);
  end = clampIndex(end);
  SmallVector<int64_t> dims;
  for (int64_t i = start; i < end; ++i)
    dims.push_back(shape[i]);
  return ctx.setOutputs(int64Constant(ctx.b(), ctx.getLoc(), dims,
                                      {static_cast<int64_t>(dims.size())}));
}

LogicalResult importSize(NodeContext &ctx) {
  if (!ctx.input(0))
    return failure();
  return ctx.setOutputs(int64Constant(
      ctx.b(), ctx.getLoc(), {ctx.inputType(0).getNumElements()}, {}));
}

LogicalResult importConcat(NodeContext &ctx) {
  SmallVector<Value> inputs;
  for (int i = 0; i < ctx.numInputs(); ++i) {
    Value v = ctx.input(i);
    if (!v)
      return failure();
    inputs.push_back(v);
  }
  if (inputs.empty())
    return ctx.error() << "Concat needs at least one input";
  RankedTensorType first = ctx.inputType(0);
  int64_t rank = first.getRank();
  if (rank == 0)
    return ctx.error() << "Concat inputs must have rank >= 1";
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", 0), rank);
  if (!axis)
    return failure();
  SmallVector<int64_t> shape(first.getShape());
  shape[*axis] = 0;
  SmallVector<int64_t> offsets;
  for (auto [i, v] : llvm::enumerate(inputs)) {
    auto type = cast<RankedTensorType>(v.getType());
    if (type.getRank() != rank || type.getElementType() != first.getElementType())
      return ctx.error() << "Concat input #" << i << " " << type
                         << " does not match input #0 " << first;
    for (int64_t d = 0; d < rank; ++d)
      if (d != *axis && type.getShape()[d] != first.getShape()[d])
        return ctx.error() << "Concat input #" << i << " " << type
                           << " differs from input #0 " << first
                           << " outside axis " << *axis;
    offsets.push_back(shape[*axis]);
    shape[*axis] += type.getShape()[*axis];
  }
  // Constant integer vectors (shape arithmetic) fold.
  if (rank == 1 && first.getElementType().isInteger(64)) {
    SmallVector<int64_t> values;
    bool allConstant = true;
    for (int i = 0; i < ctx.numInputs() && allConstant; ++i) {
      DenseElementsAttr c = denseInput(ctx, i);
      if (!c) {
        allConstant = false;
        break;
      }
      for (APInt v : c.getValues<APInt>())
        values.push_back(v.getSExtValue());
    }
    if (allConstant)
      return ctx.setOutputs(
          int64Constant(ctx.b(), ctx.getLoc(), values, {shape[0]}));
  }
  // Drop empty inputs; select the source by the position along the axis.
  SmallVector<std::pair<Value, int64_t>> parts;
  for (auto [v, offset] : llvm::zip(inputs, offsets))
    if (cast<RankedTensorType>(v.getType()).getNumElements() > 0)
      parts.emplace_back(v, offset);
  if (parts.empty() || llvm::is_contained(shape, 0))
    return ctx.setOutputs(buildEmptyConstant(ctx.b(), ctx.getLoc(), shape, first.getElementType()));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), shape, first.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        // Every part read at a clamped (in-bounds) position; the position
        // along the axis selects which read is the element.
        Value result;
        for (size_t p = parts.size(); p-- > 0;) {
          int64_t size = cast<RankedTensorType>(parts[p].first.getType())
                             .getShape()[*axis];
          SmallVector<Value> at(ivs.begin(), ivs.end());
          Value local = arith::SubIOp::create(b, loc, ivs[*axis],
                                              idx(b, loc, parts[p].second));
          local = arith::MinSIOp::create(
              b, loc,
              arith::MaxSIOp::create(b, loc, local, idx(b, loc, 0)),
              idx(b, loc, size - 1));
          at[*axis] = local;
          Value v = tensor::ExtractOp::create(b, loc, parts[p].first, at);
          if (!result) {
            result = v;
            continue;
          }
          Value inPart = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::slt, ivs[*axis],
              idx(b, loc, parts[p + 1].second));
          result = arith::SelectOp::create(b, loc, inPart, v, result);
        }
        return result;
      });
  return ctx.setOutputs(out);
}

/// Slice with constant starts/ends/axes/steps (inputs from opset 10,
/// attributes before).
LogicalResult importSlice(NodeContext &ctx, bool fromInputs) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  std::vector<int64_t> starts, ends, axes, steps;
  if (fromInputs) {
    auto s = ctx.constantInts(1), e = ctx.constantInts(2);
    if (!s || !e)
      return failure();
    starts = *s;
    ends = *e;
    if (ctx.hasInput(3)) {
      auto a = ctx.constantInts(3);
      if (!a)
        return failure();
      axes = *a;
    }
    if (ctx.hasInput(4)) {
      auto st = ctx.constantInts(4);
      if (!st)
        return failure();
      steps = *st;
    }
  } else {
    auto s = ctx.intsAttr("starts"), e = ctx.intsAttr("ends");
    if (!s || !e)
      return ctx.error() << "Slice needs the starts and ends attributes";
    starts = *s;
    ends = *e;
    if (auto a = ctx.intsAttr("axes"))
      axes = *a;
  }
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i)
      axes.push_back(static_cast<int64_t>(i));
  if (steps.empty())
    steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size())
    return ctx.error() << "Slice's starts, ends, axes and steps differ in "
                          "length";
  SmallVector<int64_t> begin(rank, 0), step(rank, 1),
      shape(type.getShape().begin(), type.getShape().end());
  for (size_t i = 0; i < starts.size(); ++i) {
    auto axis = normalizeAxis(ctx, axes[i], rank);
    if (!axis)
      return failure();
    int64_t dim = type.getShape()[*axis];
    int64_t st = steps[i];
    if (st == 0)
      return ctx.error() << "Slice step 0 on axis " << *axis;
    auto clampIndex = [&](int64_t v, bool isEnd) {
      if (v < 0)
        v += dim;
      if (st > 0)
        return std::clamp<int64_t>(v, 0, dim);
      return std::clamp<int64_t>(v, -1, dim - 1);
    };
    int64_t b0 = clampIndex(starts[i], false), e0 = clampIndex(ends[i], true);
    int64_t count = st > 0 ? std::max<int64_t>(0, llvm::divideCeil(e0 - b0, st))
                           : std::max<int64_t>(0, llvm::divideCeil(b0 - e0, -st));
    begin[*axis] = b0;
    step[*axis] = st;
    shape[*axis] = count;
  }
  Type element = type.getElementType();
  if (DenseElementsAttr c = denseInput(ctx, 0);
      c && rank == 1 && element.isInteger(64)) {
    SmallVector<int64_t> values;
    auto all = llvm::to_vector(c.getValues<APInt>());
    for (int64_t i = 0; i < shape[0]; ++i)
      values.push_back(all[c.isSplat() ? 0 : begin[0] + i * step[0]].getSExtValue());
    return ctx.setOutputs(
        int64Constant(ctx.b(), ctx.getLoc(), values, {shape[0]}));
  }
  if (llvm::is_contained(shape, 0))
    return ctx.setOutputs(
        buildEmptyConstant(ctx.b(), ctx.getLoc(), shape, element));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), shape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at;
        for (int64_t d = 0; d < rank; ++d) {
          // begin + i * step, in index arithmetic (step may be negative).
          Value scaled = arith::MulIOp::create(b, loc, ivs[d], idx(b, loc, step[d]));
          at.push_back(arith::AddIOp::create(b, loc, scaled, idx(b, loc, begin[d])));
        }
        return tensor::ExtractOp::create(b, loc, data, at);
      });
  return ctx.setOutputs(out);
}

LogicalResult importGather(NodeContext &ctx) {
  Value data = ctx.input(0), indices = ctx.input(1);
  if (!data || !indices)
    return failure();
  RankedTensorType type = ctx.inputType(0), indexType = ctx.inputType(1);
  if (!indexType.getElementType().isInteger(32) &&
      !indexType.getElementType().isInteger(64))
    return ctx.error() << "Gather indices must be int32 or int64, got "
                       << indexType;
  int64_t rank = type.getRank();
  if (rank == 0)
    return ctx.error() << "Gather data must have rank >= 1";
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", 0), rank);
  if (!axis)
    return failure();
  int64_t dim = type.getShape()[*axis];
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < *axis; ++d)
    shape.push_back(type.getShape()[d]);
  for (int64_t d : indexType.getShape())
    shape.push_back(d);
  for (int64_t d = *axis + 1; d < rank; ++d)
    shape.push_back(type.getShape()[d]);
  DenseElementsAttr constData = denseInput(ctx, 0);
  DenseElementsAttr constIndices = denseInput(ctx, 1);
  // Constant indices are checked here, where the error can name the node.
  if (constIndices)
    for (APInt v : constIndices.getValues<APInt>())
      if (v.getSExtValue() < -dim || v.getSExtValue() >= dim)
        return ctx.error() << "index " << v.getSExtValue()
                           << " is out of range for axis " << *axis
                           << " of size " << dim;
  // Shape arithmetic: a constant vector gathered with constant indices.
  if (constData && constIndices && rank == 1 &&
      type.getElementType().isInteger(64)) {
    auto all = llvm::to_vector(constData.getValues<APInt>());
    SmallVector<int64_t> values;
    for (APInt v : constIndices.getValues<APInt>()) {
      int64_t i = v.getSExtValue();
      values.push_back(all[constData.isSplat() ? 0 : (i < 0 ? i + dim : i)]
                           .getSExtValue());
    }
    return ctx.setOutputs(int64Constant(ctx.b(), ctx.getLoc(), values, shape));
  }
  if (llvm::is_contained(shape, 0))
    return ctx.setOutputs(buildEmptyConstant(ctx.b(), ctx.getLoc(), shape, type.getElementType()));
  int64_t indexRank = indexType.getRank();
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), shape, type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> indexAt(ivs.begin() + *axis,
                                   ivs.begin() + *axis + indexRank);
        Value i = tensor::ExtractOp::create(b, loc, indices, indexAt);
        Value asIndex = arith::IndexCastOp::create(b, loc, b.getIndexType(), i);
        // Negative indices count from the end.
        Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                               asIndex, idx(b, loc, 0));
        asIndex = arith::SelectOp::create(
            b, loc, negative,
            arith::AddIOp::create(b, loc, asIndex, idx(b, loc, dim)), asIndex);
        // Out-of-range indices are undefined in ONNX; clamp rather than
        // read out of bounds.
        asIndex = arith::MinSIOp::create(
            b, loc, arith::MaxSIOp::create(b, loc, asIndex, idx(b, loc, 0)),
            idx(b, loc, dim - 1));
        SmallVector<Value> at(ivs.begin(), ivs.begin() + *axis);
        at.push_back(asIndex);
        at.append(ivs.begin() + *axis + indexRank, ivs.end());
        return tensor::ExtractOp::create(b, loc, data, at);
      });
  return ctx.setOutputs(out);
}

LogicalResult importSqueeze(NodeContext &ctx, std::optional<std::vector<int64_t>> axes) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  SmallVector<bool> drop(rank, false);
  if (!axes || axes->empty()) {
    for (int64_t d = 0; d < rank; ++d)
      drop[d] = type.getShape()[d] == 1;
  } else {
    for (int64_t a : *axes) {
      auto axis = normalizeAxis(ctx, a, rank);
      if (!axis)
        return failure();
      if (type.getShape()[*axis] != 1)
        return ctx.error() << "cannot squeeze axis " << *axis << " of size "
                           << type.getShape()[*axis] << " in " << type;
      drop[*axis] = true;
    }
  }
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < rank; ++d)
    if (!drop[d])
      shape.push_back(type.getShape()[d]);
  if (DenseElementsAttr c = denseInput(ctx, 0))
    return ctx.setOutputs(arith::ConstantOp::create(
        ctx.b(), ctx.getLoc(),
        c.reshape(RankedTensorType::get(shape, type.getElementType())))
                            .getResult());
  return ctx.setOutputs(buildReshape(ctx.b(), ctx.getLoc(), data, shape));
}

LogicalResult importFlatten(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  int64_t axis = ctx.intAttr("axis", 1);
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis > rank)
    return ctx.error() << "Flatten axis " << ctx.intAttr("axis", 1)
                       << " is out of range for rank " << rank;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < rank; ++d)
    (d < axis ? outer : inner) *= type.getShape()[d];
  return ctx.setOutputs(buildReshape(ctx.b(), ctx.getLoc(), data, {outer, inner}));
}

LogicalResult importExpand(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  auto requested = ctx.constantInts(1);
  if (!requested)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  // Broadcast the input against the requested shape (either may be 1).
  int64_t rank = std::max<int64_t>(type.getRank(), requested->size());
  SmallVector<int64_t> shape(rank, 1);
  for (int64_t i = 0; i < rank; ++i) {
    int64_t a = i - (rank - type.getRank()) >= 0
                    ? type.getShape()[i - (rank - type.getRank())]
                    : 1;
    int64_t r = i - (rank - static_cast<int64_t>(requested->size())) >= 0
                    ? (*requested)[i - (rank - requested->size())]
                    : 1;
    if (a != r && a != 1 && r != 1)
      return ctx.error() << "cannot expand " << type << " to the shape "
                         << "given (dimension " << i << ": " << a << " vs "
                         << r << ")";
    shape[i] = a == 1 ? r : a;
  }
  Value target = tensor::EmptyOp::create(ctx.b(), ctx.getLoc(), shape,
                                         type.getElementType());
  Value out = buildElementwise(
      ctx, {data, target}, type.getElementType(),
      [](OpBuilder &, Location, ValueRange args) { return args[0]; });
  return out ? ctx.setOutputs(out) : failure();
}

LogicalResult importTile(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  auto repeats = ctx.constantInts(1);
  if (!repeats)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (static_cast<int64_t>(repeats->size()) != rank)
    return ctx.error() << "Tile needs one repeat per dimension of " << type;
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < rank; ++d) {
    if ((*repeats)[d] < 0)
      return ctx.error() << "Tile repeats must be >= 0";
    shape.push_back(type.getShape()[d] * (*repeats)[d]);
  }
  if (llvm::is_contained(shape, 0))
    return ctx.setOutputs(buildEmptyConstant(ctx.b(), ctx.getLoc(), shape, type.getElementType()));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), shape, type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at;
        for (int64_t d = 0; d < rank; ++d)
          at.push_back(arith::RemUIOp::create(b, loc, ivs[d],
                                              idx(b, loc, type.getShape()[d])));
        return tensor::ExtractOp::create(b, loc, data, at);
      });
  return ctx.setOutputs(out);
}

LogicalResult importConstantOfShape(NodeContext &ctx) {
  auto shape = ctx.constantInts(0);
  if (!shape)
    return failure();
  for (int64_t d : *shape)
    if (d < 0)
      return ctx.error() << "ConstantOfShape dims must be >= 0";
  OpBuilder &b = ctx.b();
  Attribute fill = b.getF32FloatAttr(0.0f);
  Type element = b.getF32Type();
  if (const kiln_onnx::AttributeProto *value = ctx.attr("value")) {
    element = toElementType(b.getContext(), value->t().data_type());
    if (!element)
      return ctx.error() << "ConstantOfShape value of "
                         << dataTypeName(value->t().data_type())
                         << " is not supported";
    std::vector<char> bytes;
    if (std::string err = readTensorBytes(value->t(), "", bytes); !err.empty())
      return ctx.error() << err;
    auto one = RankedTensorType::get({}, element);
    DenseElementsAttr attr;
    if (element.isInteger(1))
      attr = DenseElementsAttr::get(one, bytes.empty() ? false : bytes[0] != 0);
    else
      attr = DenseElementsAttr::getFromRawBuffer(one, ArrayRef<char>(bytes));
    fill = attr.getSplatValue<Attribute>();
  }
  auto type = RankedTensorType::get(*shape, element);
  return ctx.setOutputs(arith::ConstantOp::create(
      b, ctx.getLoc(), DenseElementsAttr::get(type, fill)).getResult());
}

LogicalResult importRange(NodeContext &ctx) {
  DenseElementsAttr start = denseInput(ctx, 0), limit = denseInput(ctx, 1),
                    delta = denseInput(ctx, 2);
  if (!ctx.input(0) || !ctx.input(1) || !ctx.input(2))
    return failure();
  for (int i = 0; i < 3; ++i)
    if (!denseInput(ctx, i))
      return ctx.error() << "input #" << i << " '" << ctx.getNode().input(i)
                         << "' must be a constant (an initializer or a "
                            "Constant node); computed ranges are not "
                            "supported yet";
  Type element = start.getElementType();
  OpBuilder &b = ctx.b();
  if (isa<FloatType>(element)) {
    double s = start.getSplatValue<APFloat>().convertToDouble();
    double l = limit.getSplatValue<APFloat>().convertToDouble();
    double d = delta.getSplatValue<APFloat>().convertToDouble();
    if (d == 0)
      return ctx.error() << "Range delta is 0";
    int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((l - s) / d)));
    SmallVector<APFloat> values;
    for (int64_t i = 0; i < n; ++i) {
      APFloat v(s + i * d);
      bool lost;
      v.convert(cast<FloatType>(element).getFloatSemantics(),
                APFloat::rmNearestTiesToEven, &lost);
      values.push_back(v);
    }
    return ctx.setOutputs(arith::ConstantOp::create(
        b, ctx.getLoc(),
        DenseElementsAttr::get(RankedTensorType::get({n}, element), values))
                            .getResult());
  }
  int64_t s = start.getSplatValue<APInt>().getSExtValue();
  int64_t l = limit.getSplatValue<APInt>().getSExtValue();
  int64_t d = delta.getSplatValue<APInt>().getSExtValue();
  if (d == 0)
    return ctx.error() << "Range delta is 0";
  int64_t n = std::max<int64_t>(0, d > 0 ? llvm::divideCeil(l - s, d)
                                         : llvm::divideCeil(s - l, -d));
  SmallVector<APInt> values;
  for (int64_t i = 0; i < n; ++i)
    values.push_back(APInt(element.getIntOrFloatBitWidth(), s + i * d, true));
  return ctx.setOutputs(arith::ConstantOp::create(
      b, ctx.getLoc(),
      DenseElementsAttr::get(RankedTensorType::get({n}, element), values))
                            .getResult());
}

/// Split into pieces along an axis: sizes from the `split` attribute (before
/// 13) or input, else num_outputs (18) or equal parts per output.
LogicalResult importSplit(NodeContext &ctx, bool splitIsInput) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", 0), rank);
  if (!axis)
    return failure();
  int64_t dim = type.getShape()[*axis];
  int64_t outputs = ctx.getNode().output_size();
  std::vector<int64_t> sizes;
  if (splitIsInput && ctx.hasInput(1)) {
    auto s = ctx.constantInts(1);
    if (!s)
      return failure();
    sizes = *s;
  } else if (!splitIsInput) {
    if (auto s = ctx.intsAttr("split"))
      sizes = *s;
  }
  if (sizes.empty()) {
    int64_t parts = ctx.hasAttr("num_outputs") ? ctx.intAttr("num_outputs", 1)
                                               : outputs;
    int64_t chunk = llvm::divideCeil(dim, parts);
    for (int64_t i = 0; i < parts; ++i)
      sizes.push_back(std::max<int64_t>(0, std::min(chunk, dim - i * chunk)));
  }
  int64_t total = 0;
  for (int64_t s : sizes)
    total += s;
  if (total != dim || static_cast<int64_t>(sizes.size()) != outputs)
    return ctx.error() << "Split sizes do not add up to axis " << *axis
                       << " of " << type << " for " << outputs << " outputs";
  SmallVector<Value> results;
  int64_t offset = 0;
  for (int64_t size : sizes) {
    SmallVector<int64_t> shape(type.getShape());
    shape[*axis] = size;
    int64_t begin = offset;
    offset += size;
    if (size == 0) {
      results.push_back(buildEmptyConstant(ctx.b(), ctx.getLoc(), shape,
                                           type.getElementType()));
      continue;
    }
    results.push_back(buildIndexed(
        ctx.b(), ctx.getLoc(), shape, type.getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
          SmallVector<Value> at(ivs.begin(), ivs.end());
          at[*axis] = arith::AddIOp::create(b, loc, ivs[*axis], idx(b, loc, begin));
          return tensor::ExtractOp::create(b, loc, data, at);
        }));
  }
  return ctx.setOutputs(results);
}

} // namespace

void registerTensorOps(OpRegistry &registry) {
  registry.on("Shape", 1, importShape);
  registry.on("Size", 1, importSize);
  registry.on("Concat", 4, importConcat);
  registry.on("Slice", 1, [](NodeContext &ctx) { return importSlice(ctx, false); });
  registry.on("Slice", 10, [](NodeContext &ctx) { return importSlice(ctx, true); });
  registry.on("Gather", 1, importGather);
  registry.on("Squeeze", 1, [](NodeContext &ctx) {
    return importSqueeze(ctx, ctx.intsAttr("axes"));
  });
  registry.on("Squeeze", 13, [](NodeContext &ctx) -> LogicalResult {
    if (!ctx.hasInput(1))
      return importSqueeze(ctx, std::nullopt);
    auto axes = ctx.constantInts(1);
    if (!axes)
      return failure();
    return importSqueeze(ctx, axes);
  });
  registry.on("Flatten", 1, importFlatten);
  registry.on("Expand", 8, importExpand);
  registry.on("Tile", 6, importTile);
  registry.on("ConstantOfShape", 9, importConstantOfShape);
  registry.on("Range", 11, importRange);
  registry.on("Split", 2, [](NodeContext &ctx) { return importSplit(ctx, false); });
  registry.on("Split", 13, [](NodeContext &ctx) { return importSplit(ctx, true); });
}

} // namespace kiln::onnx
