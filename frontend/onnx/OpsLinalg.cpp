//===- OpsLinalg.cpp - ONNX contractions and softmax ----------===//
#include "dialects/kiln/KilnDialect.h"
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

/// ONNX MatMul: numpy semantics, including rank-1 operands (a vector on the
/// left is a row, on the right a column; the inserted dim is dropped).
Value buildMatmul(NodeContext &ctx, Value lhs, Value rhs) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  auto lhsType = cast<RankedTensorType>(lhs.getType());
  auto rhsType = cast<RankedTensorType>(rhs.getType());
  if (lhsType.getRank() == 0 || rhsType.getRank() == 0) {
    ctx.error() << "MatMul operands must have rank >= 1, got "
                << lhs.getType() << " and " << rhs.getType();
    return {};
  }
  if (lhsType.getElementType() != rhsType.getElementType()) {
    ctx.error() << "MatMul operands must have the same element type, got "
                << lhs.getType() << " and " << rhs.getType();
    return {};
  }
  bool lhsVector = lhsType.getRank() == 1, rhsVector = rhsType.getRank() == 1;
  if (lhsVector)
    lhs = buildReshape(b, loc, lhs, {1, lhsType.getShape()[0]});
  if (rhsVector)
    rhs = buildReshape(b, loc, rhs, {rhsType.getShape()[0], 1});
  lhsType = cast<RankedTensorType>(lhs.getType());
  rhsType = cast<RankedTensorType>(rhs.getType());

  int64_t k0 = lhsType.getShape().back();
  int64_t k1 = rhsType.getShape()[rhsType.getRank() - 2];
  if (k0 != k1) {
    ctx.error() << "MatMul contraction dims differ: " << lhs.getType()
                << " has " << k0 << " columns, " << rhs.getType() << " has "
                << k1 << " rows";
    return {};
  }
  // Broadcast the batch dims.
  ArrayRef<int64_t> lb = lhsType.getShape().drop_back(2);
  ArrayRef<int64_t> rb = rhsType.getShape().drop_back(2);
  size_t batchRank = std::max(lb.size(), rb.size());
  SmallVector<int64_t> shape(batchRank, 1);
  for (size_t i = 0; i < batchRank; ++i) {
    int64_t l = i + lb.size() >= batchRank ? lb[i + lb.size() - batchRank] : 1;
    int64_t r = i + rb.size() >= batchRank ? rb[i + rb.size() - batchRank] : 1;
    if (l != r && l != 1 && r != 1) {
      ctx.error() << "MatMul batch dims of " << lhs.getType() << " and "
                  << rhs.getType() << " do not broadcast";
      return {};
    }
    shape[i] = l == 1 ? r : l;
  }
  shape.push_back(lhsType.getShape()[lhsType.getRank() - 2]);
  shape.push_back(rhsType.getShape().back());
  auto resultType = RankedTensorType::get(shape, lhsType.getElementType());
  Value result;
  if (rhsType.getRank() == 2 && lhsType.getRank() > 2) {
    // [..., M, K] x [K, N]: the batch dims fold into M, and the product is
    // one 2-D matmul (the projections of every transformer layer).
    int64_t rows = lhsType.getNumElements() / k0;
    Value flat = buildReshape(b, loc, lhs, {rows, k0});
    auto flatType = RankedTensorType::get({rows, rhsType.getShape().back()},
                                          lhsType.getElementType());
    result = buildReshape(b, loc, MatmulOp::create(b, loc, flatType, flat, rhs),
                          shape);
  } else {
    result = MatmulOp::create(b, loc, resultType, lhs, rhs);
  }

  if (lhsVector || rhsVector) {
    SmallVector<int64_t> squeezed(shape.begin(), shape.end() - 2);
    if (!lhsVector)
      squeezed.push_back(shape[shape.size() - 2]);
    if (!rhsVector)
      squeezed.push_back(shape.back());
    result = buildReshape(b, loc, result, squeezed);
  }
  return result;
}

LogicalResult importMatMul(NodeContext &ctx) {
  Value lhs = ctx.input(0), rhs = ctx.input(1);
  if (!lhs || !rhs)
    return failure();
  Value result = buildMatmul(ctx, lhs, rhs);
  return result ? ctx.setOutputs(result) : failure();
}

Value transpose2D(OpBuilder &b, Location loc, Value value) {
  auto type = cast<RankedTensorType>(value.getType());
  Value init = tensor::EmptyOp::create(
      b, loc, {type.getShape()[1], type.getShape()[0]}, type.getElementType());
  return linalg::TransposeOp::create(b, loc, value, init,
                                     ArrayRef<int64_t>{1, 0})
      .getResult()[0];
}

/// Gemm: Y = alpha * A' * B' + beta * C, A' and B' optionally transposed,
/// C optional (opset 11+) and unidirectionally broadcast to Y.
LogicalResult importGemm(NodeContext &ctx) {
  Value a = ctx.input(0), bMat = ctx.input(1);
  if (!a || !bMat)
    return failure();
  if (ctx.inputType(0).getRank() != 2 || ctx.inputType(1).getRank() != 2)
    return ctx.error() << "Gemm needs rank-2 A and B, got " << a.getType()
                       << " and " << bMat.getType();
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  if (ctx.intAttr("transA", 0))
    a = transpose2D(b, loc, a);
  if (ctx.intAttr("transB", 0))
    bMat = transpose2D(b, loc, bMat);
  Value product = buildMatmul(ctx, a, bMat);
  if (!product)
    return failure();
  double alpha = ctx.floatAttr("alpha", 1.0f);
  double beta = ctx.floatAttr("beta", 1.0f);
  Type element = ctx.inputType(0).getElementType();
  bool hasC = ctx.hasInput(2) && beta != 0.0;
  if (alpha == 1.0 && !hasC)
    return ctx.setOutputs(product);
  SmallVector<Value> inputs = {product};
  if (hasC) {
    Value c = ctx.input(2);
    if (!c)
      return failure();
    inputs.push_back(c);
  }
  auto productType = cast<RankedTensorType>(product.getType());
  Value result = buildElementwise(
      ctx, inputs, element,
      [&](OpBuilder &nb, Location nl, ValueRange args) -> Value {
        Value y = args[0];
        if (alpha != 1.0)
          y = arith::MulFOp::create(nb, nl, y,
                                    scalarConstant(nb, nl, element, alpha));
        if (args.size() > 1) {
          Value c = args[1];
          if (beta != 1.0)
            c = arith::MulFOp::create(nb, nl, c,
                                      scalarConstant(nb, nl, element, beta));
          y = arith::AddFOp::create(nb, nl, y, c);
        }
        return y;
      });
  if (!result)
    return failure();
  if (cast<RankedTensorType>(result.getType()).getShape() !=
      productType.getShape())
    return ctx.error() << "Gemm's C of type " << inputs[1].getType()
                       << " must broadcast to the product's shape "
                       << productType;
  return ctx.setOutputs(result);
}

/// The float input of a Softmax node and its normalized `axis` attribute
/// (`defaultAxis` when absent); reports an error on the node otherwise.
std::optional<std::pair<Value, int64_t>> softmaxOperands(NodeContext &ctx,
                                                         int64_t defaultAxis) {
  Value x = ctx.input(0);
  if (!x)
    return std::nullopt;
  RankedTensorType type = ctx.inputType(0);
  if (!isa<FloatType>(type.getElementType())) {
    ctx.error() << "Softmax supports float inputs only, got " << type;
    return std::nullopt;
  }
  auto axis =
      normalizeAxis(ctx, ctx.intAttr("axis", defaultAxis), type.getRank());
  if (!axis)
    return std::nullopt;
  return std::make_pair(x, *axis);
}

LogicalResult importSoftmax13(NodeContext &ctx) {
  auto operands = softmaxOperands(ctx, /*defaultAxis=*/-1);
  if (!operands)
    return failure();
  auto [x, axis] = *operands;
  return ctx.setOutputs(
      SoftmaxOp::create(ctx.b(), ctx.getLoc(), x, axis).getResult());
}

/// Softmax before opset 13: the input is flattened to 2-D at `axis`
/// (default 1) and normalized over the second dim.
LogicalResult importSoftmax1(NodeContext &ctx) {
  auto operands = softmaxOperands(ctx, /*defaultAxis=*/1);
  if (!operands)
    return failure();
  auto [x, axis] = *operands;
  RankedTensorType type = ctx.inputType(0);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < type.getRank(); ++i)
    (i < axis ? outer : inner) *= type.getShape()[i];
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  Value flat = buildReshape(b, loc, x, {outer, inner});
  Value softmax = SoftmaxOp::create(b, loc, flat, 1);
  return ctx.setOutputs(buildReshape(b, loc, softmax, type.getShape()));
}

} // namespace

void registerLinalgOps(OpRegistry &registry) {
  registry.on("MatMul", 1, importMatMul);
  registry.on("Gemm", 7, importGemm);
  registry.on("Softmax", 1, importSoftmax1);
  registry.on("Softmax", 13, importSoftmax13);
}

} // namespace kiln::onnx
