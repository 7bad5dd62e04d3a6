//===- OpsTensor.cpp - ONNX data movement: Shape, Concat, Slice, Gather... ===//
//
// Data movement is a linalg.generic that computes, from the output indices
// (linalg.index), where each element comes from and reads it with
// tensor.extract: one kernel, no copies through intermediate buffers.
//
// Shapes are static, so Shape and Size are constants; Range and
// ConstantOfShape fold here, and the importer evaluates every other small
// all-constant result (ConstantFold.cpp), so the Shape -> Gather ->
// Unsqueeze -> Concat -> Reshape chains exporters write become one constant
// shape for Reshape.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

Value kiln::onnx::buildConcat(OpBuilder &b, Location loc, ArrayRef<Value> inputs,
                              int64_t axis) {
  auto first = cast<RankedTensorType>(inputs.front().getType());
  int64_t rank = first.getRank();
  SmallVector<int64_t> shape(first.getShape());
  shape[axis] = 0;
  SmallVector<int64_t> offsets;
  bool symbolicAxis = false;
  for (Value v : inputs) {
    auto type = cast<RankedTensorType>(v.getType());
    if (type.isDynamicDim(axis))
      symbolicAxis = true;
    offsets.push_back(shape[axis]);
    if (!symbolicAxis)
      shape[axis] += type.getShape()[axis];
  }
  // Along a symbolic axis (a cache of past tokens and the new ones), the
  // offsets and sizes of the parts are index values computed here.
  SmallVector<Value> offsetValues, sizeValues;
  Value total;
  if (symbolicAxis) {
    shape[axis] = ShapedType::kDynamic;
    total = indexConstant(b, loc, 0);
    for (Value v : inputs) {
      offsetValues.push_back(total);
      sizeValues.push_back(tensor::DimOp::create(b, loc, v, axis));
      total = arith::AddIOp::create(b, loc, total, sizeValues.back());
    }
  }
  // The other dims take input #0's sizes.
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < rank; ++d) {
    if (d == axis && symbolicAxis)
      dynamicSizes.push_back(total);
    else if (d != axis && first.isDynamicDim(d))
      dynamicSizes.push_back(tensor::DimOp::create(b, loc, inputs[0], d));
  }
  // Drop empty inputs; select the source by the position along the axis.
  SmallVector<std::pair<Value, int64_t>> parts;
  SmallVector<unsigned> partIndex;
  for (auto [i, v, offset] : llvm::enumerate(inputs, offsets)) {
    // A part with no extent along the axis (an empty past, other dims
    // symbolic or not) has nothing to read.
    auto type = cast<RankedTensorType>(v.getType());
    if (type.isDynamicDim(axis) || type.getDimSize(axis) > 0) {
      parts.emplace_back(v, offset);
      partIndex.push_back(i);
    }
  }
  if (parts.empty() || llvm::is_contained(shape, 0))
    return buildEmptyConstant(b, loc, shape, first.getElementType());
  return buildIndexed(
      b, loc, shape, first.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto offsetOf = [&](size_t p) -> Value {
          return symbolicAxis ? offsetValues[partIndex[p]]
                              : indexConstant(b, loc, parts[p].second);
        };
        // Every part read at a clamped (in-bounds) position; the position
        // along the axis selects which read is the element.
        Value result;
        for (size_t p = parts.size(); p-- > 0;) {
          Value last =
              symbolicAxis
                  ? arith::SubIOp::create(b, loc, sizeValues[partIndex[p]],
                                          indexConstant(b, loc, 1))
                        .getResult()
                  : indexConstant(b, loc,
                                  cast<RankedTensorType>(
                                      parts[p].first.getType())
                                          .getShape()[axis] -
                                      1);
          SmallVector<Value> at(ivs.begin(), ivs.end());
          Value local = arith::SubIOp::create(b, loc, ivs[axis], offsetOf(p));
          local = arith::MinSIOp::create(
              b, loc,
              arith::MaxSIOp::create(b, loc, local, indexConstant(b, loc, 0)),
              last);
          at[axis] = local;
          Value v = tensor::ExtractOp::create(b, loc, parts[p].first, at);
          if (!result) {
            result = v;
            continue;
          }
          Value inPart = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::slt, ivs[axis], offsetOf(p + 1));
          result = arith::SelectOp::create(b, loc, inPart, v, result);
        }
        return result;
      },
      dynamicSizes);
}


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
  }
  return ctx.setOutputs(buildConcat(ctx.b(), ctx.getLoc(), inputs, *axis));
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
  if (llvm::is_contained(shape, 0))
    return ctx.setOutputs(
        buildEmptyConstant(ctx.b(), ctx.getLoc(), shape, element));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), shape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at;
        for (int64_t d = 0; d < rank; ++d) {
          // begin + i * step, in index arithmetic (step may be negative).
          Value scaled = arith::MulIOp::create(b, loc, ivs[d], indexConstant(b, loc, step[d]));
          at.push_back(arith::AddIOp::create(b, loc, scaled, indexConstant(b, loc, begin[d])));
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
  // Along a symbolic dim (a mask of every key indexed by computed
  // positions) the extent is read at run time.
  Value extent = ShapedType::isDynamic(dim)
                     ? tensor::DimOp::create(ctx.b(), ctx.getLoc(), data, *axis)
                           .getResult()
                     : Value();
  SmallVector<int64_t> shape;
  SmallVector<Value> dynamicSizes;
  auto addDim = [&](Value source, int64_t d) {
    int64_t size = cast<RankedTensorType>(source.getType()).getShape()[d];
    shape.push_back(size);
    if (ShapedType::isDynamic(size))
      dynamicSizes.push_back(
          tensor::DimOp::create(ctx.b(), ctx.getLoc(), source, d));
  };
  for (int64_t d = 0; d < *axis; ++d)
    addDim(data, d);
  for (int64_t d = 0; d < indexType.getRank(); ++d)
    addDim(indices, d);
  for (int64_t d = *axis + 1; d < rank; ++d)
    addDim(data, d);
  DenseElementsAttr constIndices = denseInput(ctx, 1);
  // Constant indices are checked here, where the error can name the node.
  if (constIndices && !extent)
    for (APInt v : constIndices.getValues<APInt>())
      if (v.getSExtValue() < -dim || v.getSExtValue() >= dim)
        return ctx.error() << "index " << v.getSExtValue()
                           << " is out of range for axis " << *axis
                           << " of size " << dim;
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
        Value size = extent ? extent : indexConstant(b, loc, dim);
        Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                               asIndex, indexConstant(b, loc, 0));
        asIndex = arith::SelectOp::create(
            b, loc, negative, arith::AddIOp::create(b, loc, asIndex, size),
            asIndex);
        // Out-of-range indices are undefined in ONNX; clamp rather than
        // read out of bounds.
        asIndex = arith::MinSIOp::create(
            b, loc, arith::MaxSIOp::create(b, loc, asIndex, indexConstant(b, loc, 0)),
            arith::SubIOp::create(b, loc, size, indexConstant(b, loc, 1)));
        SmallVector<Value> at(ivs.begin(), ivs.begin() + *axis);
        at.push_back(asIndex);
        at.append(ivs.begin() + *axis + indexRank, ivs.end());
        return tensor::ExtractOp::create(b, loc, data, at);
      },
      dynamicSizes);
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
                                              indexConstant(b, loc, type.getShape()[d])));
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
  FailureOr<TypedAttr> fill = constantOfShapeValue(ctx);
  if (failed(fill))
    return failure();
  Type element = fill->getType();
  auto type = RankedTensorType::get(*shape, element);
  return ctx.setOutputs(arith::ConstantOp::create(
      b, ctx.getLoc(), DenseElementsAttr::get(type, Attribute(*fill)))
                            .getResult());
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
                            "supported yet"
                         << ctx.freezeHint(i);
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
  if (ShapedType::isDynamic(dim))
    return ctx.error() << "Split along the symbolic dim " << *axis << " of "
                       << type << " is not supported; give the dim a value "
                          "with --dim NAME=VALUE";
  // The other dims keep the input's sizes.
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < rank; ++d)
    if (type.isDynamicDim(d))
      dynamicSizes.push_back(
          tensor::DimOp::create(ctx.b(), ctx.getLoc(), data, d));
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
          at[*axis] = arith::AddIOp::create(b, loc, ivs[*axis], indexConstant(b, loc, begin));
          return tensor::ExtractOp::create(b, loc, data, at);
        },
        dynamicSizes));
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

namespace kiln::onnx {
namespace {

/// Trilu: keep the upper (or lower) triangle of the last two dims from
/// diagonal k; zero elsewhere.
LogicalResult importTrilu(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (rank < 2)
    return ctx.error() << "Trilu needs an input of rank >= 2, got " << type;
  int64_t k = 0;
  if (ctx.hasInput(1)) {
    auto values = ctx.constantInts(1);
    if (!values)
      return failure();
    k = values->empty() ? 0 : (*values)[0];
  }
  bool upper = ctx.intAttr("upper", 1) != 0;
  if (type.hasStaticShape() && type.getNumElements() == 0)
    return ctx.setOutputs(x);
  Type element = type.getElementType();
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < rank; ++d)
    if (type.isDynamicDim(d))
      dynamicSizes.push_back(
          tensor::DimOp::create(ctx.b(), ctx.getLoc(), x, d));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value v = tensor::ExtractOp::create(b, loc, x, ivs);
        // keep when j - i >= k (upper) or j - i <= k (lower)
        Value diff = arith::SubIOp::create(b, loc, ivs[rank - 1], ivs[rank - 2]);
        Value kk = indexConstant(b, loc, k);
        Value keep = arith::CmpIOp::create(
            b, loc, upper ? arith::CmpIPredicate::sge : arith::CmpIPredicate::sle,
            diff, kk);
        Value zero = element.isInteger(1)
                         ? arith::ConstantOp::create(b, loc, b.getBoolAttr(false))
                               .getResult()
                         : scalarConstant(b, loc, element, 0);
        return arith::SelectOp::create(b, loc, keep, v, zero);
      },
      dynamicSizes);
  return ctx.setOutputs(out);
}

LogicalResult importGatherElements(NodeContext &ctx) {
  Value data = ctx.input(0), indices = ctx.input(1);
  if (!data || !indices)
    return failure();
  RankedTensorType type = ctx.inputType(0), indexType = ctx.inputType(1);
  if (indexType.getRank() != type.getRank())
    return ctx.error() << "GatherElements indices " << indexType
                       << " must have the rank of the data " << type;
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", 0), type.getRank());
  if (!axis)
    return failure();
  int64_t dim = type.getShape()[*axis];
  if (indexType.getNumElements() == 0)
    return ctx.setOutputs(buildEmptyConstant(ctx.b(), ctx.getLoc(),
                                             indexType.getShape(),
                                             type.getElementType()));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), indexType.getShape(), type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value i = arith::IndexCastOp::create(
            b, loc, b.getIndexType(), tensor::ExtractOp::create(b, loc, indices, ivs));
        Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i,
                                               indexConstant(b, loc, 0));
        i = arith::SelectOp::create(b, loc, negative,
                                    arith::AddIOp::create(b, loc, i, indexConstant(b, loc, dim)),
                                    i);
        i = arith::MinSIOp::create(
            b, loc, arith::MaxSIOp::create(b, loc, i, indexConstant(b, loc, 0)),
            indexConstant(b, loc, dim - 1));
        SmallVector<Value> at(ivs.begin(), ivs.end());
        at[*axis] = i;
        return tensor::ExtractOp::create(b, loc, data, at);
      });
  return ctx.setOutputs(out);
}

/// ScatterElements/ScatterND's reduction (16: none, add, mul; 18: max, min).
enum class ScatterReduction { None, Add, Mul, Max, Min };

std::optional<ScatterReduction> scatterReduction(NodeContext &ctx) {
  std::string name = "none";
  if (const kiln_onnx::AttributeProto *attr = ctx.attr("reduction"))
    name = attr->s();
  if (name == "none")
    return ScatterReduction::None;
  if (name == "add")
    return ScatterReduction::Add;
  if (name == "mul")
    return ScatterReduction::Mul;
  if (name == "max")
    return ScatterReduction::Max;
  if (name == "min")
    return ScatterReduction::Min;
  ctx.error() << "unknown reduction '" << name
              << "' (expected none, add, mul, max or min)";
  return std::nullopt;
}

/// `acc` combined with the update `u`.
Value scatterCombine(OpBuilder &b, Location loc, ScatterReduction reduction,
                     Value acc, Value u) {
  bool isFloat = isa<FloatType>(acc.getType());
  switch (reduction) {
  case ScatterReduction::None:
    return u;
  case ScatterReduction::Add:
    return isFloat ? arith::AddFOp::create(b, loc, acc, u).getResult()
                   : arith::AddIOp::create(b, loc, acc, u).getResult();
  case ScatterReduction::Mul:
    return isFloat ? arith::MulFOp::create(b, loc, acc, u).getResult()
                   : arith::MulIOp::create(b, loc, acc, u).getResult();
  case ScatterReduction::Max:
    return isFloat ? arith::MaximumFOp::create(b, loc, acc, u).getResult()
                   : arith::MaxSIOp::create(b, loc, acc, u).getResult();
  case ScatterReduction::Min:
    return isFloat ? arith::MinimumFOp::create(b, loc, acc, u).getResult()
                   : arith::MinSIOp::create(b, loc, acc, u).getResult();
  }
  llvm_unreachable("unknown scatter reduction");
}

/// An index read from an integer tensor, negative values counted from `dim`.
Value loadIndex(OpBuilder &b, Location loc, Value indices, ValueRange at,
                int64_t dim) {
  Value i = arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                       tensor::ExtractOp::create(b, loc, indices, at));
  Value negative =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, indexConstant(b, loc, 0));
  return arith::SelectOp::create(
      b, loc, negative, arith::AddIOp::create(b, loc, i, indexConstant(b, loc, dim)), i);
}

/// Folds the updates that land on one output element into `init`, in
/// update order (so with reduction none the last one wins, as in the
/// reference): a loop over `count` updates whose body gives, for update
/// `u`, whether it hits and its value.
Value foldUpdates(OpBuilder &b, Location loc, Value init, Value count,
                  ScatterReduction reduction,
                  function_ref<std::pair<Value, Value>(OpBuilder &, Value)> update) {
  auto loop = scf::ForOp::create(b, loc, indexConstant(b, loc, 0), count, indexConstant(b, loc, 1),
                                 ValueRange{init});
  OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
  Value acc = loop.getRegionIterArgs()[0];
  auto [hit, u] = update(lb, loop.getInductionVar());
  Value next = arith::SelectOp::create(lb, loc, hit,
                                       scatterCombine(lb, loc, reduction, acc, u), acc);
  scf::YieldOp::create(lb, loc, next);
  return loop.getResult(0);
}

/// ScatterElements (11; reduction from 16): out = data, with
/// out[.., indices[.., k, ..], ..] (axis) combined with updates[.., k, ..].
/// Computed per output element: it folds the updates in its line along the
/// axis whose index points at it.
LogicalResult importScatterElements(NodeContext &ctx) {
  Value data = ctx.input(0), indices = ctx.input(1), updates = ctx.input(2);
  if (!data || !indices || !updates)
    return failure();
  RankedTensorType type = ctx.inputType(0), indexType = ctx.inputType(1),
                   updateType = ctx.inputType(2);
  if (indexType.getShape() != updateType.getShape() ||
      indexType.getRank() != type.getRank() ||
      updateType.getElementType() != type.getElementType())
    return ctx.error() << "ScatterElements needs indices and updates of one shape "
                          "and the data's rank and element type, got data "
                       << type << ", indices " << indexType << ", updates "
                       << updateType;
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", 0), type.getRank());
  std::optional<ScatterReduction> reduction = scatterReduction(ctx);
  if (!axis || !reduction)
    return failure();
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (d != *axis && updateType.getShape()[d] > type.getShape()[d])
      return ctx.error() << "updates " << updateType << " exceed the data " << type
                         << " in dimension " << d;
  if (type.getNumElements() == 0 || updateType.getNumElements() == 0)
    return ctx.setOutputs(data);
  int64_t dim = type.getShape()[*axis];
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value init = tensor::ExtractOp::create(b, loc, data, ivs);
        // Outside the updates' extent in another dim: no update applies.
        Value inside = arith::ConstantIntOp::create(b, loc, 1, 1);
        for (int64_t d = 0; d < type.getRank(); ++d)
          if (d != *axis && updateType.getShape()[d] < type.getShape()[d])
            inside = arith::AndIOp::create(
                b, loc, inside,
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, ivs[d],
                                      indexConstant(b, loc, updateType.getShape()[d])));
        Value count = arith::SelectOp::create(
            b, loc, inside, indexConstant(b, loc, updateType.getShape()[*axis]), indexConstant(b, loc, 0));
        return foldUpdates(b, loc, init, count, *reduction,
                           [&](OpBuilder &lb, Value k) -> std::pair<Value, Value> {
                             SmallVector<Value> at(ivs.begin(), ivs.end());
                             at[*axis] = k;
                             Value target = loadIndex(lb, loc, indices, at, dim);
                             Value hit = arith::CmpIOp::create(
                                 lb, loc, arith::CmpIPredicate::eq, target, ivs[*axis]);
                             return {hit, tensor::ExtractOp::create(lb, loc, updates, at)};
                           });
      });
  return ctx.setOutputs(out);
}

/// ScatterND (11; reduction from 16): indices [U..., m] address slices of
/// the data's first m dims; updates [U..., data dims m..]. Computed per
/// output element: it folds the updates whose index tuple is its prefix.
LogicalResult importScatterND(NodeContext &ctx) {
  Value data = ctx.input(0), indices = ctx.input(1), updates = ctx.input(2);
  if (!data || !indices || !updates)
    return failure();
  RankedTensorType type = ctx.inputType(0), indexType = ctx.inputType(1),
                   updateType = ctx.inputType(2);
  std::optional<ScatterReduction> reduction = scatterReduction(ctx);
  if (!reduction)
    return failure();
  int64_t rank = type.getRank();
  int64_t m = indexType.getRank() ? indexType.getShape().back() : 0;
  SmallVector<int64_t> expected(indexType.getShape().drop_back());
  if (indexType.getRank() >= 1 && m <= rank)
    llvm::append_range(expected, type.getShape().drop_front(m));
  if (indexType.getRank() < 1 || m > rank ||
      updateType.getShape() != ArrayRef<int64_t>(expected) ||
      updateType.getElementType() != type.getElementType())
    return ctx.error() << "ScatterND needs indices [..., m <= " << rank
                       << "] and updates [indices dims..., data dims m..] of the "
                          "data's element type, got data "
                       << type << ", indices " << indexType << ", updates "
                       << updateType;
  int64_t count = indexType.getNumElements() / std::max<int64_t>(m, 1);
  if (type.getNumElements() == 0 || count == 0)
    return ctx.setOutputs(data);
  OpBuilder &b0 = ctx.b();
  Location loc0 = ctx.getLoc();
  // Updates listed flat: indices [U, m], updates [U, data dims m..].
  Value flatIndices = buildReshape(b0, loc0, indices, {count, m});
  SmallVector<int64_t> flatUpdateShape = {count};
  llvm::append_range(flatUpdateShape, type.getShape().drop_front(m));
  Value flatUpdates = buildReshape(b0, loc0, updates, flatUpdateShape);
  Value out = buildIndexed(
      b0, loc0, type.getShape(), type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value init = tensor::ExtractOp::create(b, loc, data, ivs);
        return foldUpdates(
            b, loc, init, indexConstant(b, loc, count), *reduction,
            [&](OpBuilder &lb, Value u) -> std::pair<Value, Value> {
              Value hit = arith::ConstantIntOp::create(lb, loc, 1, 1);
              for (int64_t t = 0; t < m; ++t) {
                Value target = loadIndex(lb, loc, flatIndices,
                                         ValueRange{u, indexConstant(lb, loc, t)},
                                         type.getShape()[t]);
                hit = arith::AndIOp::create(
                    lb, loc, hit,
                    arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::eq, target,
                                          ivs[t]));
              }
              SmallVector<Value> at = {u};
              at.append(ivs.begin() + m, ivs.end());
              return {hit, tensor::ExtractOp::create(lb, loc, flatUpdates, at)};
            });
      });
  return ctx.setOutputs(out);
}

/// TopK (1: k attribute; 10: k input; 11: largest, sorted): the k largest
/// (or smallest) elements along `axis` and their int64 indices, sorted,
/// equal values in index order. Each output slot r selects its element by
/// r + 1 rounds of "the best element after the previous one" (O(k^2 n) per
/// line: for the small k of sampling and beam search, no sort needed).
LogicalResult importTopK(NodeContext &ctx, bool kIsInput) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  if (element.isInteger(1) || type.getRank() == 0)
    return ctx.error() << "TopK takes a numeric tensor of rank >= 1, got " << type;
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", -1), type.getRank());
  if (!axis)
    return failure();
  int64_t k;
  if (kIsInput) {
    auto ks = ctx.constantInts(1);
    if (!ks)
      return failure();
    if (ks->size() != 1)
      return ctx.error() << "K must hold one value";
    k = (*ks)[0];
  } else {
    k = ctx.intAttr("k", -1);
  }
  int64_t n = type.getShape()[*axis];
  if (k < 0 || k > n)
    return ctx.error() << "K = " << k << " is outside [0, " << n
                       << "], the size of axis " << *axis;
  bool largest = ctx.intAttr("largest", 1) != 0;
  SmallVector<int64_t> shape(type.getShape());
  shape[*axis] = k;
  OpBuilder &b0 = ctx.b();
  Type i64 = b0.getI64Type();
  ctx.setOutputUnsigned(1, false); // the indices, whatever the values are
  if (ShapedType::getNumElements(shape) == 0)
    return ctx.setOutputs({buildEmptyConstant(b0, ctx.getLoc(), shape, element),
                           buildEmptyConstant(b0, ctx.getLoc(), shape, i64)});
  bool isFloat = isa<FloatType>(element);
  bool isUnsigned = ctx.inputIsUnsigned(0);
  Value indices = buildIndexed(
      b0, ctx.getLoc(), shape, i64, [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        // Whether (v, i) comes before (w, j) in the output order.
        auto precedes = [&](OpBuilder &lb, Value v, Value i, Value w, Value j) -> Value {
          Value better =
              isFloat ? arith::CmpFOp::create(lb, loc,
                                              largest ? arith::CmpFPredicate::OGT
                                                      : arith::CmpFPredicate::OLT,
                                              v, w)
                            .getResult()
                      : arith::CmpIOp::create(lb, loc,
                                              largest ? (isUnsigned ? arith::CmpIPredicate::ugt
                                                                    : arith::CmpIPredicate::sgt)
                                                      : (isUnsigned ? arith::CmpIPredicate::ult
                                                                    : arith::CmpIPredicate::slt),
                                              v, w)
                            .getResult();
          Value equal =
              isFloat ? arith::CmpFOp::create(lb, loc, arith::CmpFPredicate::OEQ, v, w)
                            .getResult()
                      : arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::eq, v, w)
                            .getResult();
          Value earlier = arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::slt, i, j);
          return arith::OrIOp::create(lb, loc, better,
                                      arith::AndIOp::create(lb, loc, equal, earlier));
        };
        // The sentinel every element comes after, and the one that comes
        // after every element.
        // Unsigned: 0 is the lowest value and all ones the highest.
        auto extreme = [&](bool highest) -> Value {
          if (isUnsigned)
            return scalarConstant(b, loc, element, highest ? -1 : 0);
          return reduceIdentity(b, loc, highest ? ReduceKind::Min : ReduceKind::Max,
                                element);
        };
        Value first = extreme(largest), last = extreme(!largest);
        Value slot = ivs[*axis];
        auto rounds = scf::ForOp::create(
            b, loc, indexConstant(b, loc, 0), arith::AddIOp::create(b, loc, slot, indexConstant(b, loc, 1)),
            indexConstant(b, loc, 1), ValueRange{first, indexConstant(b, loc, -1)});
        {
          OpBuilder rb = OpBuilder::atBlockBegin(rounds.getBody());
          Value prevV = rounds.getRegionIterArgs()[0];
          Value prevI = rounds.getRegionIterArgs()[1];
          auto scan = scf::ForOp::create(rb, loc, indexConstant(rb, loc, 0), indexConstant(rb, loc, n),
                                         indexConstant(rb, loc, 1),
                                         ValueRange{last, indexConstant(rb, loc, n)});
          OpBuilder sb = OpBuilder::atBlockBegin(scan.getBody());
          Value j = scan.getInductionVar();
          Value bestV = scan.getRegionIterArgs()[0];
          Value bestI = scan.getRegionIterArgs()[1];
          SmallVector<Value> at(ivs.begin(), ivs.end());
          at[*axis] = j;
          Value v = tensor::ExtractOp::create(sb, loc, x, at);
          Value after = precedes(sb, prevV, prevI, v, j);
          Value take = arith::AndIOp::create(sb, loc, after,
                                             precedes(sb, v, j, bestV, bestI));
          scf::YieldOp::create(sb, loc,
                               ValueRange{arith::SelectOp::create(sb, loc, take, v, bestV),
                                          arith::SelectOp::create(sb, loc, take, j, bestI)});
          scf::YieldOp::create(rb, loc, scan.getResults());
        }
        return arith::IndexCastOp::create(b, loc, i64, rounds.getResult(1));
      });
  Value values = buildIndexed(
      b0, ctx.getLoc(), shape, element, [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at(ivs.begin(), ivs.end());
        at[*axis] = arith::IndexCastOp::create(
            b, loc, b.getIndexType(), tensor::ExtractOp::create(b, loc, indices, ivs));
        return tensor::ExtractOp::create(b, loc, x, at);
      });
  return ctx.setOutputs({values, indices});
}

/// Pad with constant pads (input from 11, attribute before) in constant,
/// reflect, edge or wrap mode; negative pads crop.
LogicalResult importPad(NodeContext &ctx, bool padsAreInputs) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  std::vector<int64_t> pads;
  if (padsAreInputs) {
    auto p = ctx.constantInts(1);
    if (!p)
      return failure();
    pads = *p;
  } else {
    pads = ctx.intsAttr("pads").value_or(std::vector<int64_t>{});
  }
  std::vector<int64_t> axes;
  if (padsAreInputs && ctx.hasInput(3)) {
    auto a = ctx.constantInts(3);
    if (!a)
      return failure();
    axes = *a;
  } else {
    for (int64_t d = 0; d < rank; ++d)
      axes.push_back(d);
  }
  if (pads.size() != 2 * axes.size())
    return ctx.error() << "Pad needs 2 pads per padded axis, got " << pads.size()
                       << " for " << axes.size() << " axes";
  SmallVector<int64_t> before(rank, 0), after(rank, 0);
  for (size_t i = 0; i < axes.size(); ++i) {
    auto axis = normalizeAxis(ctx, axes[i], rank);
    if (!axis)
      return failure();
    before[*axis] = pads[i];
    after[*axis] = pads[i + axes.size()];
  }
  std::string mode = "constant";
  if (const kiln_onnx::AttributeProto *m = ctx.attr("mode"))
    mode = m->s();
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap")
    return ctx.error() << "Pad mode '" << mode << "' is not supported";
  Type element = type.getElementType();
  Value fill;
  OpBuilder &b0 = ctx.b();
  Location loc0 = ctx.getLoc();
  if (mode == "constant") {
    if (padsAreInputs && ctx.hasInput(2)) {
      Value v = ctx.input(2);
      if (!v)
        return failure();
      fill = v;
    } else {
      fill = arith::ConstantOp::create(
          b0, loc0,
          DenseElementsAttr::get(
              RankedTensorType::get({}, element),
              element.isInteger(1)
                  ? Attribute(b0.getBoolAttr(false))
                  : isa<FloatType>(element)
                        ? Attribute(b0.getFloatAttr(element, ctx.floatAttr("value", 0)))
                        : Attribute(b0.getIntegerAttr(element, 0))));
    }
  }
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < rank; ++d) {
    shape.push_back(type.getShape()[d] + before[d] + after[d]);
    if (shape.back() < 0)
      return ctx.error() << "Pad crops axis " << d << " below zero";
    if (mode != "constant" && type.getShape()[d] == 0 && shape.back() > 0)
      return ctx.error() << "Pad mode '" << mode << "' on an empty axis";
  }
  if (llvm::is_contained(shape, 0))
    return ctx.setOutputs(buildEmptyConstant(b0, loc0, shape, element));
  Value out = buildIndexed(
      b0, loc0, shape, element, [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at;
        Value inside = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
        for (int64_t d = 0; d < rank; ++d) {
          int64_t n = type.getShape()[d];
          Value i = arith::SubIOp::create(b, loc, ivs[d], indexConstant(b, loc, before[d]));
          if (mode == "constant" || n == 0) {
            Value ok = arith::AndIOp::create(
                b, loc,
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, i, indexConstant(b, loc, 0)),
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, indexConstant(b, loc, n)));
            inside = arith::AndIOp::create(b, loc, inside, ok);
            i = arith::MinSIOp::create(
                b, loc, arith::MaxSIOp::create(b, loc, i, indexConstant(b, loc, 0)),
                indexConstant(b, loc, std::max<int64_t>(n - 1, 0)));
          } else if (mode == "edge") {
            i = arith::MinSIOp::create(
                b, loc, arith::MaxSIOp::create(b, loc, i, indexConstant(b, loc, 0)),
                indexConstant(b, loc, n - 1));
          } else if (mode == "wrap") {
            // ((i % n) + n) % n
            Value r = arith::RemSIOp::create(b, loc, i, indexConstant(b, loc, n));
            i = arith::RemSIOp::create(b, loc, arith::AddIOp::create(b, loc, r, indexConstant(b, loc, n)),
                                       indexConstant(b, loc, n));
          } else { // reflect: period 2(n-1)
            if (n == 1) {
              i = indexConstant(b, loc, 0);
            } else {
              int64_t period = 2 * (n - 1);
              Value r = arith::RemSIOp::create(b, loc, i, indexConstant(b, loc, period));
              r = arith::RemSIOp::create(
                  b, loc, arith::AddIOp::create(b, loc, r, indexConstant(b, loc, period)),
                  indexConstant(b, loc, period));
              Value mirrored = arith::SubIOp::create(b, loc, indexConstant(b, loc, period), r);
              Value high = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, r,
                                                 indexConstant(b, loc, n));
              i = arith::SelectOp::create(b, loc, high, mirrored, r);
            }
          }
          at.push_back(i);
        }
        Value v = tensor::ExtractOp::create(b, loc, data, at);
        if (mode != "constant")
          return v;
        SmallVector<Value> first(cast<RankedTensorType>(fill.getType()).getRank(),
                                 indexConstant(b, loc, 0));
        Value f = tensor::ExtractOp::create(b, loc, fill, first);
        return arith::SelectOp::create(b, loc, inside, v, f);
      });
  return ctx.setOutputs(out);
}

/// CumSum (11) and CumProd (26) along a constant axis: each output element
/// folds its prefix (a loop over the axis inside the element's computation).
LogicalResult importCumulative(NodeContext &ctx, bool product) {
  const char *name = product ? "CumProd" : "CumSum";
  Value x = ctx.input(0);
  if (!x)
    return failure();
  auto axisValues = ctx.constantInts(1);
  if (!axisValues || axisValues->size() != 1)
    return axisValues ? ctx.error() << name << " axis must be one value"
                      : failure();
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  if (element.isInteger(1))
    return ctx.error() << name << " takes numeric inputs, got " << type;
  auto axis = normalizeAxis(ctx, (*axisValues)[0], type.getRank());
  if (!axis)
    return failure();
  bool exclusive = ctx.intAttr("exclusive", 0) != 0;
  bool reverse = ctx.intAttr("reverse", 0) != 0;
  if (type.hasStaticShape() && type.getNumElements() == 0)
    return ctx.setOutputs(x);
  // Symbolic dims (positions counted from an attention mask over a
  // sequence of run-time length) take their sizes from the input.
  SmallVector<Value> sizes;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      sizes.push_back(tensor::DimOp::create(ctx.b(), ctx.getLoc(), x, d));
  Value extent =
      type.isDynamicDim(*axis)
          ? tensor::DimOp::create(ctx.b(), ctx.getLoc(), x, *axis).getResult()
          : Value();
  int64_t n = type.getShape()[*axis];
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        // Fold x[..., k, ...] over k in [lo, hi).
        Value i = ivs[*axis];
        Value lo, hi;
        if (!reverse) {
          lo = indexConstant(b, loc, 0);
          hi = exclusive ? i : arith::AddIOp::create(b, loc, i, indexConstant(b, loc, 1)).getResult();
        } else {
          lo = exclusive ? arith::AddIOp::create(b, loc, i, indexConstant(b, loc, 1)).getResult() : i;
          hi = extent ? extent : indexConstant(b, loc, n);
        }
        Value identity = scalarConstant(b, loc, element, product ? 1 : 0);
        auto loop =
            scf::ForOp::create(b, loc, lo, hi, indexConstant(b, loc, 1), ValueRange{identity});
        OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
        SmallVector<Value> at(ivs.begin(), ivs.end());
        at[*axis] = loop.getInductionVar();
        Value v = tensor::ExtractOp::create(lb, loc, x, at);
        Value acc = loop.getRegionIterArgs()[0];
        bool isFloat = isa<FloatType>(element);
        Value next =
            product ? (isFloat ? arith::MulFOp::create(lb, loc, acc, v).getResult()
                               : arith::MulIOp::create(lb, loc, acc, v).getResult())
                    : (isFloat ? arith::AddFOp::create(lb, loc, acc, v).getResult()
                               : arith::AddIOp::create(lb, loc, acc, v).getResult());
        scf::YieldOp::create(lb, loc, next);
        return loop.getResult(0);
      },
      sizes);
  return ctx.setOutputs(out);
}

LogicalResult importOneHot(NodeContext &ctx) {
  Value indices = ctx.input(0), values = ctx.input(2);
  if (!indices || !values)
    return failure();
  DenseElementsAttr depthAttr = denseInput(ctx, 1);
  if (!depthAttr)
    return ctx.error() << "input #1 '" << ctx.getNode().input(1)
                       << "' must be a constant (an initializer or a Constant "
                          "node); a computed depth is not supported"
                       << ctx.freezeHint(1);
  double depthValue = isa<FloatType>(depthAttr.getElementType())
                          ? depthAttr.getSplatValue<APFloat>().convertToDouble()
                          : depthAttr.getSplatValue<APInt>().getSExtValue();
  int64_t depth = static_cast<int64_t>(depthValue);
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", -1), rank + 1);
  if (!axis)
    return failure();
  if (ctx.inputType(2).getNumElements() != 2)
    return ctx.error() << "OneHot values must hold [off, on]";
  SmallVector<int64_t> shape(type.getShape());
  shape.insert(shape.begin() + *axis, depth);
  Type element = ctx.inputType(2).getElementType();
  Type indexElement = type.getElementType();
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), shape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at;
        for (int64_t d = 0; d <= rank; ++d)
          if (d != *axis)
            at.push_back(ivs[d]);
        Value raw = tensor::ExtractOp::create(b, loc, indices, at);
        Value i;
        if (isa<FloatType>(indexElement))
          i = arith::FPToSIOp::create(b, loc, b.getI64Type(), raw);
        else
          i = castScalar(b, loc, raw, b.getI64Type());
        Value negative = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::slt, i, scalarConstant(b, loc, b.getI64Type(), 0));
        i = arith::SelectOp::create(
            b, loc, negative,
            arith::AddIOp::create(b, loc, i, scalarConstant(b, loc, b.getI64Type(), depth)),
            i);
        Value here = arith::IndexCastOp::create(b, loc, b.getI64Type(), ivs[*axis]);
        Value hot = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, i, here);
        Value off = tensor::ExtractOp::create(b, loc, values, ValueRange{indexConstant(b, loc, 0)});
        Value on = tensor::ExtractOp::create(b, loc, values, ValueRange{indexConstant(b, loc, 1)});
        return arith::SelectOp::create(b, loc, hot, on, off);
      });
  return ctx.setOutputs(out);
}

LogicalResult importEyeLike(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (type.getRank() != 2)
    return ctx.error() << "EyeLike needs a 2-D input, got " << type;
  Type element = type.getElementType();
  if (ctx.hasAttr("dtype")) {
    element = toElementType(ctx.b().getContext(), ctx.intAttr("dtype", 1));
    if (!element)
      return ctx.error() << "EyeLike dtype "
                         << dataTypeName(ctx.intAttr("dtype", 1))
                         << " is not supported";
  }
  int64_t k = ctx.intAttr("k", 0);
  SmallVector<int64_t> shape(type.getShape());
  if (type.getNumElements() == 0)
    return ctx.setOutputs(buildEmptyConstant(ctx.b(), ctx.getLoc(), shape, element));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), shape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value diag = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::eq,
            arith::SubIOp::create(b, loc, ivs[1], ivs[0]), indexConstant(b, loc, k));
        if (element.isInteger(1))
          return diag;
        return arith::SelectOp::create(b, loc, diag, scalarConstant(b, loc, element, 1),
                                       scalarConstant(b, loc, element, 0));
      });
  return ctx.setOutputs(out);
}

/// DepthToSpace (DCR or CRD) and SpaceToDepth as index arithmetic.
LogicalResult importDepthSpace(NodeContext &ctx, bool toSpace) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (type.getRank() != 4)
    return ctx.error() << "needs an NCHW input, got " << type;
  int64_t bs = ctx.intAttr("blocksize", 0);
  if (bs <= 0)
    return ctx.error() << "missing or invalid blocksize";
  int64_t n = type.getShape()[0], c = type.getShape()[1], h = type.getShape()[2],
          w = type.getShape()[3];
  bool crd = false;
  if (const kiln_onnx::AttributeProto *m = ctx.attr("mode"))
    crd = m->s() == "CRD";
  SmallVector<int64_t> shape;
  if (toSpace) {
    if (c % (bs * bs))
      return ctx.error() << "channels " << c << " not divisible by blocksize^2";
    shape = {n, c / (bs * bs), h * bs, w * bs};
  } else {
    if (h % bs || w % bs)
      return ctx.error() << "H and W must be divisible by blocksize";
    shape = {n, c * bs * bs, h / bs, w / bs};
  }
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), shape, type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto mul = [&](Value a, int64_t k) { return arith::MulIOp::create(b, loc, a, indexConstant(b, loc, k)).getResult(); };
        auto add = [&](Value a, Value v) { return arith::AddIOp::create(b, loc, a, v).getResult(); };
        auto div = [&](Value a, int64_t k) { return arith::DivUIOp::create(b, loc, a, indexConstant(b, loc, k)).getResult(); };
        auto rem = [&](Value a, int64_t k) { return arith::RemUIOp::create(b, loc, a, indexConstant(b, loc, k)).getResult(); };
        if (toSpace) {
          int64_t oc = c / (bs * bs);
          Value hi = div(ivs[2], bs), bh = rem(ivs[2], bs);
          Value wi = div(ivs[3], bs), bw = rem(ivs[3], bs);
          Value ch = crd ? add(mul(ivs[1], bs * bs), add(mul(bh, bs), bw))
                         : add(mul(add(mul(bh, bs), bw), oc), ivs[1]);
          return tensor::ExtractOp::create(b, loc, x, ValueRange{ivs[0], ch, hi, wi});
        }
        // SpaceToDepth: out channel = (bh * bs + bw) * C + c (DCR), or
        // c * bs^2 + bh * bs + bw (CRD, from version 28).
        Value cc = crd ? div(ivs[1], bs * bs) : rem(ivs[1], c);
        Value blk = crd ? rem(ivs[1], bs * bs) : div(ivs[1], c);
        Value bh = div(blk, bs), bw = rem(blk, bs);
        return tensor::ExtractOp::create(
            b, loc, x,
            ValueRange{ivs[0], cc, add(mul(ivs[2], bs), bh), add(mul(ivs[3], bs), bw)});
      });
  return ctx.setOutputs(out);
}

} // namespace

void registerMoreTensorOps(OpRegistry &registry) {
  registry.on("Trilu", 14, importTrilu);
  registry.on("GatherElements", 11, importGatherElements);
  registry.on("Pad", 2, [](NodeContext &c) { return importPad(c, false); });
  registry.on("Pad", 11, [](NodeContext &c) { return importPad(c, true); });
  registry.on("TopK", 1, [](NodeContext &ctx) { return importTopK(ctx, false); });
  registry.on("TopK", 10, [](NodeContext &ctx) { return importTopK(ctx, true); });
  // Scatter (9) is ScatterElements under its old name.
  registry.on("Scatter", 9, importScatterElements);
  registry.on("ScatterElements", 11, importScatterElements);
  registry.on("ScatterND", 11, importScatterND);
  registry.on("CumSum", 11,
              [](NodeContext &ctx) { return importCumulative(ctx, /*product=*/false); });
  registry.on("CumProd", 26,
              [](NodeContext &ctx) { return importCumulative(ctx, /*product=*/true); });
  registry.on("OneHot", 9, importOneHot);
  registry.on("EyeLike", 9, importEyeLike);
  registry.on("DepthToSpace", 1, [](NodeContext &c) { return importDepthSpace(c, true); });
  registry.on("SpaceToDepth", 1, [](NodeContext &c) { return importDepthSpace(c, false); });
  // Inference: Dropout is the identity (and an all-true mask if asked).
  registry.on("Dropout", 1, [](NodeContext &ctx) -> LogicalResult {
    Value x = ctx.input(0);
    if (!x)
      return failure();
    if (ctx.hasInput(2)) {
      // Training mode drops at random, unless the ratio is 0.
      DenseElementsAttr training = denseInput(ctx, 2);
      if (!training)
        return ctx.error() << "input #2 '" << ctx.getNode().input(2)
                           << "' must be a constant: Kiln compiles inference "
                              "(Dropout in training mode only with a ratio "
                              "of 0)"
                           << ctx.freezeHint(2);
      if (training.getSplatValue<bool>()) {
        DenseElementsAttr ratio = ctx.hasInput(1) ? denseInput(ctx, 1) : nullptr;
        if (ctx.hasInput(1) && !ratio)
          return ctx.error() << "input #1 '" << ctx.getNode().input(1)
                             << "' must be a constant: Dropout in training "
                                "mode is compiled only with a ratio of 0"
                             << ctx.freezeHint(1);
        if (!ratio || !isa<FloatType>(ratio.getElementType()) ||
            ratio.getNumElements() != 1 ||
            !(*ratio.getValues<APFloat>().begin()).isZero())
          return ctx.error() << "Dropout in training mode is not supported "
                                "(Kiln compiles inference; a ratio of 0, "
                                "which drops nothing, is)";
      }
    }
    SmallVector<Value> outs = {x};
    if (ctx.getNode().output_size() > 1) {
      auto type = ctx.inputType(0);
      outs.push_back(arith::ConstantOp::create(
          ctx.b(), ctx.getLoc(),
          DenseElementsAttr::get(RankedTensorType::get(type.getShape(),
                                                       ctx.b().getI1Type()),
                                 true)));
    }
    return ctx.setOutputs(outs);
  });
}

} // namespace kiln::onnx
