//===- Builders.cpp - IR building helpers shared by the op handlers -------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {

Value buildElementwise(NodeContext &ctx, ValueRange inputs,
                       Type resultElementType, ScalarBodyFn body) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  // Multidirectional broadcasting: align shapes on the right; a dim of 1
  // stretches to the other's size.
  int64_t rank = 0;
  for (Value input : inputs)
    rank = std::max(rank, cast<RankedTensorType>(input.getType()).getRank());
  SmallVector<int64_t> shape(rank, 1);
  for (auto [index, input] : llvm::enumerate(inputs)) {
    ArrayRef<int64_t> inShape =
        cast<RankedTensorType>(input.getType()).getShape();
    int64_t offset = rank - static_cast<int64_t>(inShape.size());
    for (auto [i, dim] : llvm::enumerate(inShape)) {
      int64_t &out = shape[offset + i];
      if (dim == out || dim == 1)
        continue;
      if (out != 1) {
        ctx.error() << "input #" << index << " of type " << input.getType()
                    << " does not broadcast with the other inputs "
                    << "(dimension " << offset + i << ": " << dim << " vs "
                    << out << ")";
        return {};
      }
      out = dim;
    }
  }

  return buildBroadcast(b, loc, inputs, shape, resultElementType, body);
}





Value buildEmptyConstant(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
                         Type element) {
  auto type = RankedTensorType::get(shape, element);
  return arith::ConstantOp::create(
      b, loc, DenseElementsAttr::getFromRawBuffer(type, ArrayRef<char>()));
}

std::optional<int64_t> normalizeAxis(NodeContext &ctx, int64_t axis,
                                     int64_t rank) {
  if (axis < -rank || axis >= rank) {
    ctx.error() << "axis " << axis << " is out of range for a rank-" << rank
                << " input; expected [" << -rank << ", " << rank - 1 << "]";
    return std::nullopt;
  }
  return axis < 0 ? axis + rank : axis;
}

} // namespace kiln::onnx
