//===- OpsShape.cpp - ONNX constants and shape ops ------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/OnnxImporter.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {

// Implemented in OnnxImporter.cpp: a Constant node's value as a constant op.
Value importConstantTensor(NodeContext &ctx,
                           const kiln_onnx::TensorProto &tensor);

namespace {

LogicalResult importConstant(NodeContext &ctx) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  const kiln_onnx::NodeProto &node = ctx.getNode();
  if (node.attribute_size() != 1)
    return ctx.error() << "expected exactly one attribute, got "
                       << node.attribute_size();
  const kiln_onnx::AttributeProto &attr = node.attribute(0);
  StringRef name = attr.name();
  Value result;
  if (name == "value") {
    result = importConstantTensor(ctx, attr.t());
  } else if (name == "value_float") {
    result = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(RankedTensorType::get({}, b.getF32Type()),
                                       attr.f()));
  } else if (name == "value_floats") {
    SmallVector<float> values(attr.floats().begin(), attr.floats().end());
    auto type = RankedTensorType::get({static_cast<int64_t>(values.size())},
                                      b.getF32Type());
    result = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(type, ArrayRef<float>(values)));
  } else if (name == "value_int") {
    result = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(RankedTensorType::get({}, b.getI64Type()),
                                       static_cast<int64_t>(attr.i())));
  } else if (name == "value_ints") {
    SmallVector<int64_t> values(attr.ints().begin(), attr.ints().end());
    auto type = RankedTensorType::get({static_cast<int64_t>(values.size())},
                                      b.getI64Type());
    result = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(type, ArrayRef<int64_t>(values)));
  } else {
    return ctx.error() << "Constant with attribute '" << name
                       << "' is not supported (value, value_float, "
                          "value_floats, value_int and value_ints are)";
  }
  return result ? ctx.setOutputs(result) : failure();
}

/// The target shape of ONNX Reshape: 0 copies the input dim (unless
/// `allowZero`), -1 takes what is left.
std::optional<SmallVector<int64_t>>
resolveReshape(NodeContext &ctx, RankedTensorType inputType,
               const std::vector<int64_t> &requested, bool allowZero) {
  SmallVector<int64_t> shape;
  int64_t known = 1, inferIndex = -1;
  for (auto [i, dim] : llvm::enumerate(requested)) {
    int64_t value = dim;
    if (dim == 0 && !allowZero) {
      if (static_cast<int64_t>(i) >= inputType.getRank()) {
        ctx.error() << "shape entry " << i << " is 0 (copy the input dim) "
                    << "but the input " << inputType << " has no dim " << i;
        return std::nullopt;
      }
      value = inputType.getShape()[i];
    } else if (dim == -1) {
      if (inferIndex >= 0) {
        ctx.error() << "shape has more than one -1 entry";
        return std::nullopt;
      }
      inferIndex = i;
      shape.push_back(1);
      continue;
    } else if (dim < -1) {
      ctx.error() << "shape entry " << i << " is " << dim
                  << "; entries must be >= -1";
      return std::nullopt;
    }
    known *= value;
    shape.push_back(value);
  }
  int64_t total = inputType.getNumElements();
  if (inferIndex >= 0) {
    if (known == 0 || total % known != 0) {
      ctx.error() << "cannot infer the -1 entry: " << total
                  << " elements do not divide into " << known;
      return std::nullopt;
    }
    shape[inferIndex] = total / known;
    known *= shape[inferIndex];
  }
  if (known != total) {
    ctx.error() << "cannot reshape " << inputType << " (" << total
                << " elements) to a shape of " << known << " elements";
    return std::nullopt;
  }
  return shape;
}

LogicalResult importReshape(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  std::optional<std::vector<int64_t>> requested = ctx.constantInts(1);
  if (!requested)
    return failure();
  bool allowZero = ctx.getOpset() >= 14 && ctx.intAttr("allowzero", 0) != 0;
  auto shape = resolveReshape(ctx, ctx.inputType(0), *requested, allowZero);
  if (!shape)
    return failure();
  return ctx.setOutputs(buildReshape(ctx.b(), ctx.getLoc(), data, *shape));
}

LogicalResult importTranspose(NodeContext &ctx) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  SmallVector<int64_t> perm;
  if (auto attr = ctx.intsAttr("perm")) {
    perm.assign(attr->begin(), attr->end());
  } else {
    for (int64_t i = rank - 1; i >= 0; --i)
      perm.push_back(i);
  }
  SmallVector<bool> seen(rank, false);
  if (static_cast<int64_t>(perm.size()) != rank)
    return ctx.error() << "perm has " << perm.size()
                       << " entries but the input " << type << " has rank "
                       << rank;
  for (int64_t &p : perm) {
    if (p < 0)
      p += rank;
    if (p < 0 || p >= rank || seen[p])
      return ctx.error() << "perm is not a permutation of 0.." << rank - 1;
    seen[p] = true;
  }
  SmallVector<int64_t> shape;
  SmallVector<Value> dynamicSizes;
  for (int64_t p : perm) {
    shape.push_back(type.getShape()[p]);
    if (type.isDynamicDim(p))
      dynamicSizes.push_back(
          tensor::DimOp::create(ctx.b(), ctx.getLoc(), data, p));
  }
  Value init = tensor::EmptyOp::create(ctx.b(), ctx.getLoc(), shape,
                                       type.getElementType(), dynamicSizes);
  auto transpose =
      linalg::TransposeOp::create(ctx.b(), ctx.getLoc(), data, init, perm);
  return ctx.setOutputs(transpose.getResult());
}

LogicalResult importUnsqueeze(NodeContext &ctx, std::vector<int64_t> axes) {
  Value data = ctx.input(0);
  if (!data)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t outRank = type.getRank() + static_cast<int64_t>(axes.size());
  SmallVector<bool> inserted(outRank, false);
  for (int64_t axis : axes) {
    std::optional<int64_t> normalized = normalizeAxis(ctx, axis, outRank);
    if (!normalized)
      return failure();
    if (inserted[*normalized])
      return ctx.error() << "axis " << axis << " appears twice";
    inserted[*normalized] = true;
  }
  SmallVector<int64_t> shape;
  int64_t next = 0;
  for (int64_t i = 0; i < outRank; ++i)
    shape.push_back(inserted[i] ? 1 : type.getShape()[next++]);
  return ctx.setOutputs(buildReshape(ctx.b(), ctx.getLoc(), data, shape));
}

} // namespace

void registerShapeOps(OpRegistry &registry) {
  registry.on("Constant", 1, importConstant);
  registry.on("Reshape", 5, importReshape);
  registry.on("Transpose", 1, importTranspose);
  // Unsqueeze: axes is an attribute before opset 13 and an input from 13 on.
  registry.on("Unsqueeze", 1, [](NodeContext &ctx) -> LogicalResult {
    auto axes = ctx.intsAttr("axes");
    if (!axes)
      return ctx.error() << "missing required attribute 'axes'";
    return importUnsqueeze(ctx, *axes);
  });
  registry.on("Unsqueeze", 13, [](NodeContext &ctx) -> LogicalResult {
    auto axes = ctx.constantInts(1);
    if (!axes)
      return failure();
    return importUnsqueeze(ctx, *axes);
  });
}

} // namespace kiln::onnx
