//===- Decompositions.cpp - kiln transformer ops as linalg ----------------===//
//
// The linalg each transformer op stands for, written once. Norms are a
// reduction or two and one elementwise generic; attention is two batched
// contractions (which the GEMM strategies pick up) around a softmax whose
// pieces fuse elementwise.
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/Decompositions.h"
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;

namespace kiln {
namespace {

Value cst(OpBuilder &b, Location loc, Type type, double v) {
  return scalarConstant(b, loc, type, v);
}




/// Marks dims `axis`..rank-1.
SmallVector<bool> fromAxis(int64_t rank, int64_t axis) {
  SmallVector<bool> reduced(rank, false);
  for (int64_t d = axis; d < rank; ++d)
    reduced[d] = true;
  return reduced;
}


/// out[b,h,i,j] = sum_k lhs[b,h,i,k] * rhs(b,h,k,j), with rhs indexed
/// [b,h,j,k] when `rhsTransposed`, summed in `acc` (the operands' type
/// when null; a wider float extends each operand, as tensor cores do).
Value batchedMatmul(OpBuilder &b, Location loc, Value lhs, Value rhs,
                    bool rhsTransposed, Type acc = nullptr) {
  ArrayRef<int64_t> l = shapeOf(lhs), r = shapeOf(rhs);
  int64_t n = rhsTransposed ? r[2] : r[3];
  Type element = acc ? acc : elementTypeOf(lhs);
  SmallVector<int64_t> out = {l[0], l[1], l[2], n};
  MLIRContext *ctx = b.getContext();
  auto d = [&](unsigned i) { return getAffineDimExpr(i, ctx); };
  // loops: b, h, i, j, k
  AffineMap lhsMap = AffineMap::get(5, 0, {d(0), d(1), d(2), d(4)}, ctx);
  AffineMap rhsMap = rhsTransposed
                         ? AffineMap::get(5, 0, {d(0), d(1), d(3), d(4)}, ctx)
                         : AffineMap::get(5, 0, {d(0), d(1), d(4), d(3)}, ctx);
  AffineMap outMap = AffineMap::get(5, 0, {d(0), d(1), d(2), d(3)}, ctx);
  Value init = linalg::FillOp::create(
                   b, loc, cst(b, loc, element, 0),
                   tensor::EmptyOp::create(b, loc, out, element).getResult())
                   .getResult(0);
  SmallVector<utils::IteratorType> iterators(4, utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  return linalg::GenericOp::create(
             b, loc, TypeRange{RankedTensorType::get(out, element)},
             ValueRange{lhs, rhs}, ValueRange{init},
             {lhsMap, rhsMap, outMap}, iterators,
             [&](OpBuilder &nb, Location nl, ValueRange a) {
               Value p = arith::MulFOp::create(
                   nb, nl, castScalar(nb, nl, a[0], element),
                   castScalar(nb, nl, a[1], element));
               linalg::YieldOp::create(
                   nb, nl, arith::AddFOp::create(nb, nl, a[2], p).getResult());
             })
      .getResult(0);
}

/// K or V with `groups` query heads per KV head: head h reads h / groups.
Value repeatHeads(OpBuilder &b, Location loc, Value x, int64_t groups) {
  if (groups == 1)
    return x;
  ArrayRef<int64_t> s = shapeOf(x);
  SmallVector<int64_t> out = {s[0], s[1] * groups, s[2], s[3]};
  return buildIndexed(b, loc, out, elementTypeOf(x),
                      [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
                        Value h = arith::DivUIOp::create(nb, nl, ivs[1],
                                                         indexConstant(nb, nl, groups));
                        return tensor::ExtractOp::create(
                            nb, nl, x, ValueRange{ivs[0], h, ivs[2], ivs[3]});
                      });
}

} // namespace

bool decompositionHandlesShapes(Operation *op) {
  // Elementwise, or indexed per element with the last dim static: any
  // symbolic batch, heads or sequence.
  if (isa<GeluOp, SiluOp>(op))
    return true;
  if (auto rope = dyn_cast<RotaryEmbeddingOp>(op))
    return !rope.getInput().getType().isDynamicDim(3) &&
           !rope.getCos().getType().isDynamicDim(2);
  std::optional<int64_t> axis;
  if (auto norm = dyn_cast<LayerNormOp>(op))
    axis = norm.getNormalizedAxis();
  else if (auto norm = dyn_cast<RmsNormOp>(op))
    axis = norm.getNormalizedAxis();
  for (OpOperand &operand : op->getOpOperands()) {
    auto type = cast<RankedTensorType>(operand.get().getType());
    // The input of a norm may have symbolic dims before the axis.
    int64_t first = axis && operand.getOperandNumber() == 0 ? *axis : 0;
    for (int64_t d = first; d < type.getRank(); ++d)
      if (type.isDynamicDim(d))
        return false;
  }
  return true;
}

Value decomposeGelu(OpBuilder &b, GeluOp op) {
  Value x = op.getInput();
  bool tanhApproximation = op.getTanhApproximation();
  Type element = elementTypeOf(x);
  return buildBroadcast(
      b, op.getLoc(), {x}, shapeOf(x), element,
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value v = a[0];
        Value half = cst(nb, l, element, 0.5), one = cst(nb, l, element, 1);
        Value inner;
        if (tanhApproximation) {
          // sqrt(2/pi) (x + 0.044715 x^3)
          Value x3 = arith::MulFOp::create(nb, l, v, arith::MulFOp::create(nb, l, v, v));
          inner = math::TanhOp::create(
              nb, l,
              arith::MulFOp::create(
                  nb, l, cst(nb, l, element, 0.7978845608028654),
                  arith::AddFOp::create(
                      nb, l, v,
                      arith::MulFOp::create(nb, l, cst(nb, l, element, 0.044715), x3))));
        } else {
          inner = math::ErfOp::create(
              nb, l, arith::MulFOp::create(nb, l, v, cst(nb, l, element, 0.7071067811865476)));
        }
        return arith::MulFOp::create(nb, l, arith::MulFOp::create(nb, l, half, v),
                                     arith::AddFOp::create(nb, l, one, inner));
      });
}

Value decomposeSilu(OpBuilder &b, SiluOp op) {
  Value x = op.getInput();
  return buildBroadcast(b, op.getLoc(), {x}, shapeOf(x), elementTypeOf(x),
                        [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
                          return arith::MulFOp::create(nb, l, a[0],
                                                       scalarSigmoid(nb, l, a[0]));
                        });
}

LayerNormParts decomposeLayerNorm(OpBuilder &b, LayerNormOp op) {
  Location loc = op.getLoc();
  Value x = op.getInput(), scale = op.getScale(), bias = op.getBias();
  ArrayRef<int64_t> shape = shapeOf(x);
  Type element = elementTypeOf(x);
  SmallVector<bool> reduced = fromAxis(shape.size(), op.getNormalizedAxis());
  // Statistics in f32 for f16/bf16 inputs (stash_type 1).
  Type stash = element.getIntOrFloatBitWidth() < 32 ? b.getF32Type() : element;
  Value xs = convertElements(b, loc, x, stash);
  auto [mean, invStd] =
      buildMoments(b, loc, xs, reduced, op.getEpsilon().convertToFloat());
  SmallVector<Value> inputs = {xs, mean, invStd, scale};
  if (bias)
    inputs.push_back(bias);
  Value y = buildBroadcast(
      b, loc, inputs, shape, element,
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value n = arith::MulFOp::create(nb, l, arith::SubFOp::create(nb, l, a[0], a[1]),
                                        a[2]);
        Value r = arith::MulFOp::create(nb, l, castScalar(nb, l, n, element), a[3]);
        return bias ? arith::AddFOp::create(nb, l, r, a[4]).getResult() : r;
      });
  return {y, mean, invStd};
}

bool isLastDimNorm(Operation *op) {
  int64_t axis;
  if (auto norm = dyn_cast<LayerNormOp>(op))
    axis = norm.getNormalizedAxis();
  else if (auto norm = dyn_cast<RmsNormOp>(op))
    axis = norm.getNormalizedAxis();
  else
    return false;
  auto type = cast<RankedTensorType>(op->getResult(0).getType());
  Type element = type.getElementType();
  if (axis != type.getRank() - 1 ||
      !(element.isF16() || element.isBF16() || element.isF32()))
    return false;
  // The rows may be symbolic (a sequence length); the normalized dim and
  // the scale and bias are static.
  return llvm::all_of(op->getOperands(), [&](Value v) {
    auto t = cast<RankedTensorType>(v.getType());
    int64_t first = v == op->getOperand(0) ? t.getRank() - 1 : 0;
    for (int64_t d = first; d < t.getRank(); ++d)
      if (t.isDynamicDim(d))
        return false;
    return true;
  });
}

Value decomposeRmsNorm(OpBuilder &b, RmsNormOp op) {
  Location loc = op.getLoc();
  Value x = op.getInput(), scale = op.getScale();
  ArrayRef<int64_t> shape = shapeOf(x);
  Type element = elementTypeOf(x);
  SmallVector<bool> reduced = fromAxis(shape.size(), op.getNormalizedAxis());
  Type stash = element.getIntOrFloatBitWidth() > 32 ? element : b.getF32Type();
  Value xs = convertElements(b, loc, x, stash);
  int64_t count = 1;
  for (auto [dim, isReduced] : llvm::zip(shape, reduced))
    if (isReduced)
      count *= dim;
  Value sq = keepReducedDims(
      b, loc, buildReduce(b, loc, xs, reduced, ReduceKind::SumSquare), shape,
      reduced);
  double epsilon = op.getEpsilon().convertToFloat();
  return buildBroadcast(
      b, loc, {xs, sq, scale}, shape, element,
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value ms = arith::DivFOp::create(nb, l, a[1], cst(nb, l, stash, count));
        Value inv = math::RsqrtOp::create(
            nb, l, arith::AddFOp::create(nb, l, ms, cst(nb, l, stash, epsilon)));
        Value n = castScalar(nb, l, arith::MulFOp::create(nb, l, a[0], inv), element);
        return arith::MulFOp::create(nb, l, n, a[2]);
      });
}

Value decomposeRotaryEmbedding(OpBuilder &b, RotaryEmbeddingOp op) {
  Value x = op.getInput(), cos = op.getCos(), sin = op.getSin();
  int64_t half = shapeOf(cos)[2];
  if (half == 0)
    return x;
  bool interleaved = op.getInterleaved();
  SmallVector<Value> dynamicSizes;
  for (auto [d, size] : llvm::enumerate(shapeOf(x)))
    if (ShapedType::isDynamic(size))
      dynamicSizes.push_back(tensor::DimOp::create(b, op.getLoc(), x, d));
  return buildIndexed(
      b, op.getLoc(), shapeOf(x), elementTypeOf(x),
      [&](OpBuilder &nb, Location l, ValueRange ivs) -> Value {
        Value d = ivs[3];
        Value rotated = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::ult, d,
                                              indexConstant(nb, l, 2 * half));
        // The angle index, the partner element and which of the pair d is.
        Value angle, partner, isFirst;
        if (interleaved) {
          angle = arith::DivUIOp::create(nb, l, d, indexConstant(nb, l, 2));
          Value odd = arith::RemUIOp::create(nb, l, d, indexConstant(nb, l, 2));
          isFirst = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, odd,
                                          indexConstant(nb, l, 0));
          partner = arith::XOrIOp::create(nb, l, d, indexConstant(nb, l, 1));
        } else {
          isFirst = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::ult, d,
                                          indexConstant(nb, l, half));
          Value up = arith::AddIOp::create(nb, l, d, indexConstant(nb, l, half));
          Value down = arith::SubIOp::create(nb, l, d, indexConstant(nb, l, half));
          partner = arith::SelectOp::create(nb, l, isFirst, up, down);
          angle = arith::SelectOp::create(nb, l, isFirst, d, down);
        }
        // Elements past the rotated ones read themselves and angle 0.
        partner = arith::SelectOp::create(nb, l, rotated, partner, d);
        angle = arith::SelectOp::create(nb, l, rotated, angle, indexConstant(nb, l, 0));
        Value self = tensor::ExtractOp::create(nb, l, x, ivs);
        Value other = tensor::ExtractOp::create(
            nb, l, x, ValueRange{ivs[0], ivs[1], ivs[2], partner});
        Value c = tensor::ExtractOp::create(nb, l, cos, ValueRange{ivs[0], ivs[2], angle});
        Value s = tensor::ExtractOp::create(nb, l, sin, ValueRange{ivs[0], ivs[2], angle});
        Value selfCos = arith::MulFOp::create(nb, l, self, c);
        Value otherSin = arith::MulFOp::create(nb, l, other, s);
        Value out = arith::SelectOp::create(
            nb, l, isFirst, arith::SubFOp::create(nb, l, selfCos, otherSin),
            arith::AddFOp::create(nb, l, selfCos, otherSin));
        return arith::SelectOp::create(nb, l, rotated, out, self);
      },
      dynamicSizes);
}

AttentionParts decomposeAttention(OpBuilder &b, AttentionOp op) {
  Location loc = op.getLoc();
  Value q = op.getQuery(), k = op.getKey(), v = op.getValue();
  Type element = elementTypeOf(q);
  int64_t batch = shapeOf(q)[0], heads = shapeOf(q)[1], sq = shapeOf(q)[2];
  int64_t skv = shapeOf(k)[2];
  int64_t groups = heads / shapeOf(k)[1];
  Value kr = repeatHeads(b, loc, k, groups);
  Value vr = repeatHeads(b, loc, v, groups);
  SmallVector<int64_t> full = {batch, heads, sq, skv};

  // A softmax_type wider than the operands (f32 over f16/bf16, what
  // `--precision` makes): both products sum in it, and the scores are
  // scaled, capped, masked and normalized in it, as flash attention does
  // in registers; only the probabilities are rounded to the operands'
  // type for the second product. Otherwise everything is in the element
  // type and q and k are scaled by sqrt(scale) each, as ONNX's reference.
  Type softmaxType = op.getSoftmaxType().value_or(element);
  bool widened = isa<FloatType>(softmaxType) &&
                 softmaxType.getIntOrFloatBitWidth() >
                     element.getIntOrFloatBitWidth();
  Type work = widened ? softmaxType : element;
  double scale = op.getScale().convertToDouble();
  auto scaledBy = [&](Value x, double factor, Type type) {
    return buildBroadcast(b, loc, {x}, shapeOf(x), type,
                          [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                            return arith::MulFOp::create(
                                nb, nl, a[0], cst(nb, nl, type, factor));
                          });
  };
  Value scores;
  if (widened) {
    scores = scaledBy(batchedMatmul(b, loc, q, kr, /*rhsTransposed=*/true, work),
                      scale, work);
  } else {
    double sqrtScale = std::sqrt(scale);
    scores = batchedMatmul(b, loc, scaledBy(q, sqrtScale, element),
                           scaledBy(kr, sqrtScale, element),
                           /*rhsTransposed=*/true);
  }
  double softcap = op.getSoftcap().convertToDouble();
  if (softcap > 0)
    scores = buildBroadcast(
        b, loc, {scores}, full, work,
        [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
          Value c = cst(nb, nl, work, softcap);
          return arith::MulFOp::create(
              nb, nl, math::TanhOp::create(nb, nl, arith::DivFOp::create(nb, nl, a[0], c)),
              c);
        });

  // The bias with the causal mask folded in, over [B, H, S, L].
  Value bias = op.getBias();
  if (bias)
    bias = convertElements(b, loc, bias, work);
  std::optional<int64_t> causalOffset = op.getCausalOffset();
  // Aligned to the end: the keys in front of the queries count too.
  if (causalOffset && op.getCausalFromEnd())
    *causalOffset += skv - sq;
  if (causalOffset) {
    Value causal = buildIndexed(
        b, loc, full, work, [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
          Value limit = arith::AddIOp::create(nb, nl, ivs[2], indexConstant(nb, nl, *causalOffset));
          Value allowed = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sle,
                                                ivs[3], limit);
          return arith::SelectOp::create(nb, nl, allowed, cst(nb, nl, work, 0),
                                         cst(nb, nl, work, -INFINITY));
        });
    bias = !bias ? causal
                 : buildBroadcast(b, loc, {bias, causal}, full, work,
                                  [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                                    return arith::AddFOp::create(nb, nl, a[0], a[1]);
                                  });
  }
  Value biased = scores;
  if (bias)
    biased = buildBroadcast(b, loc, {scores, bias}, full, work,
                            [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                              return arith::AddFOp::create(nb, nl, a[0], a[1]);
                            });

  // Softmax over the keys in softmax_type; a row whose bias is -inf
  // everywhere gives 0.
  Value x = convertElements(b, loc, biased, softmaxType);
  SmallVector<bool> lastAxis = {false, false, false, true};
  auto rowReduce = [&](Value value, ReduceKind kind) {
    return keepReducedDims(b, loc, buildReduce(b, loc, value, lastAxis, kind),
                           full, lastAxis);
  };
  Value rowMax = rowReduce(x, ReduceKind::Max);
  Value exps = buildBroadcast(
      b, loc, {x, rowMax}, full, softmaxType,
      [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value negInf = cst(nb, nl, softmaxType, -INFINITY);
        Value masked = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, a[1], negInf);
        Value safe = arith::SelectOp::create(nb, nl, masked, cst(nb, nl, softmaxType, 0), a[1]);
        return math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, a[0], safe));
      });
  Value sums = rowReduce(exps, ReduceKind::Sum);
  SmallVector<Value> probInputs = {exps, sums};
  if (bias) {
    Value fullBias = bias;
    if (shapeOf(bias) != ArrayRef<int64_t>(full))
      fullBias = buildBroadcast(b, loc, {bias}, full, work,
                                [](OpBuilder &, Location, ValueRange a) { return a[0]; });
    probInputs.push_back(rowReduce(fullBias, ReduceKind::Max));
  }
  Value probs = buildBroadcast(
      b, loc, probInputs, full, element,
      [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value zero = cst(nb, nl, softmaxType, 0);
        Value s = arith::SelectOp::create(
            nb, nl, arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, a[1], zero),
            cst(nb, nl, softmaxType, 1), a[1]);
        Value p = arith::DivFOp::create(nb, nl, a[0], s);
        if (a.size() > 2) {
          Value rowMasked = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, a[2],
                                                  cst(nb, nl, work, -INFINITY));
          p = arith::SelectOp::create(nb, nl, rowMasked, zero, p);
        }
        return castScalar(nb, nl, p, element);
      });
  Value y = batchedMatmul(b, loc, probs, vr, /*rhsTransposed=*/false,
                          widened ? work : nullptr);
  // The parts in the op's element type (ONNX's qk output).
  return {convertElements(b, loc, y, element),
          convertElements(b, loc, scores, element),
          convertElements(b, loc, biased, element), probs};
}

} // namespace kiln
