//===- OpsAttention.cpp - ONNX Attention (opset 23) -----------------------===//
//
// Attention as the reference computes it, in 4-D (batch, heads, sequence,
// head size): 3-D inputs are split into heads, past keys and values are
// concatenated in front, grouped-query heads share K/V heads, Q and K are
// each scaled by sqrt(scale), the scores optionally soft-capped, the bias
// (attention mask, boolean or additive, padded to the key length; causal
// masking offset by the past length) added, a softmax that gives zero for
// fully masked rows, and the weighted sum of V. The two matmuls are
// contractions the GEMM strategies pick up; the rest fuses elementwise.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

Value idx(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

ArrayRef<int64_t> shapeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}
Type elementOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType();
}

/// [B, S, H*D] -> [B, H, S, D].
Value splitHeads(OpBuilder &b, Location loc, Value x, int64_t heads) {
  ArrayRef<int64_t> s = shapeOf(x);
  Value r = buildReshape(b, loc, x, {s[0], s[1], heads, s[2] / heads});
  SmallVector<int64_t> out = {s[0], heads, s[1], s[2] / heads};
  Value init = tensor::EmptyOp::create(b, loc, out, elementOf(x));
  return linalg::TransposeOp::create(b, loc, r, init,
                                     ArrayRef<int64_t>{0, 2, 1, 3})
      .getResult()[0];
}

/// A contraction out[b,h,i,j] = sum_k lhs[b,h,i,k] * rhs(b,h,k,j), with rhs
/// indexed [b,h,j,k] when `rhsTransposed`.
Value batchedMatmul(OpBuilder &b, Location loc, Value lhs, Value rhs,
                    bool rhsTransposed) {
  ArrayRef<int64_t> l = shapeOf(lhs), r = shapeOf(rhs);
  int64_t n = rhsTransposed ? r[2] : r[3];
  Type element = elementOf(lhs);
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
                   b, loc, scalarConstant(b, loc, element, 0),
                   tensor::EmptyOp::create(b, loc, out, element).getResult())
                   .getResult(0);
  SmallVector<utils::IteratorType> iterators(4, utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  return linalg::GenericOp::create(
             b, loc, TypeRange{RankedTensorType::get(out, element)},
             ValueRange{lhs, rhs}, ValueRange{init},
             {lhsMap, rhsMap, outMap}, iterators,
             [&](OpBuilder &nb, Location nl, ValueRange a) {
               Value p = arith::MulFOp::create(nb, nl, a[0], a[1]);
               linalg::YieldOp::create(nb, nl,
                                       arith::AddFOp::create(nb, nl, a[2], p).getResult());
             })
      .getResult(0);
}

/// Along axis 2: [a; b].
Value concatSeq(OpBuilder &b, Location loc, Value first, Value second) {
  ArrayRef<int64_t> f = shapeOf(first), s = shapeOf(second);
  SmallVector<int64_t> out = {f[0], f[1], f[2] + s[2], f[3]};
  int64_t split = f[2];
  return buildIndexed(
      b, loc, out, elementOf(first),
      [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
        Value inFirst = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt,
                                              ivs[2], idx(nb, nl, split));
        Value i1 = arith::MinSIOp::create(nb, nl, ivs[2],
                                          idx(nb, nl, std::max<int64_t>(split - 1, 0)));
        Value i2 = arith::MaxSIOp::create(
            nb, nl, arith::SubIOp::create(nb, nl, ivs[2], idx(nb, nl, split)),
            idx(nb, nl, 0));
        Value a = split > 0 ? tensor::ExtractOp::create(
                                  nb, nl, first, ValueRange{ivs[0], ivs[1], i1, ivs[3]})
                                  .getResult()
                            : Value();
        Value c = tensor::ExtractOp::create(nb, nl, second,
                                            ValueRange{ivs[0], ivs[1], i2, ivs[3]});
        return a ? arith::SelectOp::create(nb, nl, inFirst, a, c).getResult() : c;
      });
}

/// K or V with `groups` query heads per KV head: head h reads h / groups.
Value repeatHeads(OpBuilder &b, Location loc, Value x, int64_t groups) {
  if (groups == 1)
    return x;
  ArrayRef<int64_t> s = shapeOf(x);
  SmallVector<int64_t> out = {s[0], s[1] * groups, s[2], s[3]};
  return buildIndexed(
      b, loc, out, elementOf(x),
      [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
        Value h = arith::DivUIOp::create(nb, nl, ivs[1], idx(nb, nl, groups));
        return tensor::ExtractOp::create(nb, nl, x,
                                         ValueRange{ivs[0], h, ivs[2], ivs[3]});
      });
}

LogicalResult importAttention(NodeContext &ctx) {
  Value q = ctx.input(0), k = ctx.input(1), v = ctx.input(2);
  if (!q || !k || !v)
    return failure();
  if (ctx.hasInput(6))
    return ctx.error() << "the nonpad_kv_seqlen input (Attention 24) is not "
                          "supported";
  for (const char *unsupported : {"left_window_size", "right_window_size"})
    if (ctx.hasAttr(unsupported))
      return ctx.error() << "attribute '" << unsupported
                         << "' (sliding-window attention) is not supported";
  Type element = elementOf(q);
  if (!isa<FloatType>(element) || elementOf(k) != element ||
      elementOf(v) != element)
    return ctx.error() << "Attention takes float Q, K and V of one type, got "
                       << q.getType() << ", " << k.getType() << " and "
                       << v.getType();
  int64_t rank = shapeOf(q).size();
  if (rank != 3 && rank != 4)
    return ctx.error() << "Attention takes 3-D or 4-D inputs, got " << q.getType();
  if (shapeOf(k).size() != static_cast<size_t>(rank) ||
      shapeOf(v).size() != static_cast<size_t>(rank))
    return ctx.error() << "Q, K and V must have the same rank";
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  if (rank == 3) {
    int64_t qHeads = ctx.intAttr("q_num_heads", 0),
            kvHeads = ctx.intAttr("kv_num_heads", 0);
    if (qHeads <= 0 || kvHeads <= 0)
      return ctx.error() << "3-D Attention needs q_num_heads and kv_num_heads";
    if (shapeOf(q)[2] % qHeads || shapeOf(k)[2] % kvHeads ||
        shapeOf(v)[2] % kvHeads)
      return ctx.error() << "hidden sizes must divide by the head counts";
    q = splitHeads(b, loc, q, qHeads);
    k = splitHeads(b, loc, k, kvHeads);
    v = splitHeads(b, loc, v, kvHeads);
  }
  Value presentKey = k, presentValue = v;
  int64_t pastLength = 0;
  if (ctx.hasInput(4) != ctx.hasInput(5))
    return ctx.error() << "past_key and past_value must be given together";
  if (ctx.hasInput(4)) {
    Value pastKey = ctx.input(4), pastValue = ctx.input(5);
    if (!pastKey || !pastValue)
      return failure();
    pastLength = shapeOf(pastKey)[2];
    presentKey = concatSeq(b, loc, pastKey, k);
    presentValue = concatSeq(b, loc, pastValue, v);
  }
  int64_t batch = shapeOf(q)[0], qHeads = shapeOf(q)[1], sq = shapeOf(q)[2],
          headSize = shapeOf(q)[3];
  int64_t kvHeads = shapeOf(presentKey)[1], skv = shapeOf(presentKey)[2];
  if (qHeads % kvHeads)
    return ctx.error() << qHeads << " query heads do not group over " << kvHeads
                       << " key/value heads";
  Value kr = repeatHeads(b, loc, presentKey, qHeads / kvHeads);
  Value vr = repeatHeads(b, loc, presentValue, qHeads / kvHeads);

  double scale = ctx.hasAttr("scale") ? ctx.floatAttr("scale", 1.0f)
                                      : 1.0 / std::sqrt(static_cast<double>(headSize));
  double sqrtScale = std::sqrt(scale);
  auto scaled = [&](Value x) {
    return buildElementwise(ctx, {x}, element,
                            [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                              return arith::MulFOp::create(
                                  nb, nl, a[0], scalarConstant(nb, nl, element, sqrtScale));
                            });
  };
  Value scores = batchedMatmul(b, loc, scaled(q), scaled(kr), /*rhsTransposed=*/true);
  double softcap = ctx.floatAttr("softcap", 0.0f);
  if (softcap > 0)
    scores = buildElementwise(
        ctx, {scores}, element, [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
          Value c = scalarConstant(nb, nl, element, softcap);
          return arith::MulFOp::create(
              nb, nl, math::TanhOp::create(nb, nl, arith::DivFOp::create(nb, nl, a[0], c)),
              c);
        });

  // The bias over [B, H, Sq, Skv]: the mask (bool: 0 or -inf; float: added;
  // padded with -inf past its length) plus causal masking.
  bool causal = ctx.intAttr("is_causal", 0) != 0;
  Value mask = ctx.hasInput(3) ? ctx.input(3) : Value();
  if (ctx.hasInput(3) && !mask)
    return failure();
  if (mask && !elementOf(mask).isInteger(1) && !isa<FloatType>(elementOf(mask)))
    return ctx.error() << "the attention mask must be bool or float, got "
                       << mask.getType();
  SmallVector<int64_t> full = {batch, qHeads, sq, skv};
  Value bias = buildIndexed(
      b, loc, full, element, [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
        Value zero = scalarConstant(nb, nl, element, 0);
        Value negInf = scalarConstant(nb, nl, element, -INFINITY);
        Value total = zero;
        if (mask) {
          ArrayRef<int64_t> ms = shapeOf(mask);
          int64_t mr = ms.size();
          SmallVector<Value> at;
          for (int64_t d = 0; d < mr; ++d) {
            int64_t outDim = 4 - mr + d;
            at.push_back(ms[d] == 1 ? idx(nb, nl, 0) : ivs[outDim]);
          }
          int64_t maskLen = ms.back();
          Value inMask = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt,
                                               ivs[3], idx(nb, nl, maskLen));
          at.back() = ms.back() == 1
                          ? idx(nb, nl, 0)
                          : arith::MinSIOp::create(nb, nl, ivs[3],
                                                   idx(nb, nl, maskLen - 1))
                                .getResult();
          Value m = tensor::ExtractOp::create(nb, nl, mask, at);
          Value term;
          if (elementOf(mask).isInteger(1))
            term = arith::SelectOp::create(nb, nl, m, zero, negInf);
          else
            term = castScalar(nb, nl, m, element);
          if (ms.back() != 1 || maskLen < skv)
            term = arith::SelectOp::create(nb, nl, inMask, term, negInf);
          total = term;
        }
        if (causal) {
          Value limit = arith::AddIOp::create(nb, nl, ivs[2], idx(nb, nl, pastLength));
          Value allowed = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sle,
                                                ivs[3], limit);
          total = arith::AddFOp::create(
              nb, nl, total, arith::SelectOp::create(nb, nl, allowed, zero, negInf));
        }
        return total;
      });
  Value withBias = buildElementwise(
      ctx, {scores, bias}, element, [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        return arith::AddFOp::create(nb, nl, a[0], a[1]);
      });

  // Softmax over the keys, in softmax_precision when given; rows whose bias
  // is -inf everywhere give 0.
  Type softmaxType = element;
  if (ctx.hasAttr("softmax_precision")) {
    softmaxType = toElementType(b.getContext(), ctx.intAttr("softmax_precision", 1));
    if (!softmaxType || !isa<FloatType>(softmaxType))
      return ctx.error() << "unsupported softmax_precision";
  }
  Value x = withBias;
  if (softmaxType != element)
    x = buildElementwise(ctx, {x}, softmaxType,
                         [&](OpBuilder &nb, Location nl, ValueRange a) {
                           return castScalar(nb, nl, a[0], softmaxType);
                         });
  SmallVector<bool> lastAxis = {false, false, false, true};
  auto keep = [&](Value r) { return buildReshape(b, loc, r, {batch, qHeads, sq, 1}); };
  Value rowMax = keep(buildReduce(ctx, x, lastAxis, ReduceKind::Max));
  Value biasMax = keep(buildReduce(ctx, bias, lastAxis, ReduceKind::Max));
  Value exps = buildElementwise(
      ctx, {x, rowMax}, softmaxType, [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value negInf = scalarConstant(nb, nl, softmaxType, -INFINITY);
        Value masked = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, a[1], negInf);
        Value safe = arith::SelectOp::create(nb, nl, masked,
                                             scalarConstant(nb, nl, softmaxType, 0), a[1]);
        return math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, a[0], safe));
      });
  Value sums = keep(buildReduce(ctx, exps, lastAxis, ReduceKind::Sum));
  Value probs = buildElementwise(
      ctx, {exps, sums, biasMax}, element,
      [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        Value zero = scalarConstant(nb, nl, softmaxType, 0);
        Value one = scalarConstant(nb, nl, softmaxType, 1);
        Value s = arith::SelectOp::create(
            nb, nl, arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, a[1], zero),
            one, a[1]);
        Value p = arith::DivFOp::create(nb, nl, a[0], s);
        Value rowMasked = arith::CmpFOp::create(
            nb, nl, arith::CmpFPredicate::OEQ, a[2],
            scalarConstant(nb, nl, element, -INFINITY));
        p = arith::SelectOp::create(nb, nl, rowMasked, zero, p);
        return castScalar(nb, nl, p, element);
      });
  Value y = batchedMatmul(b, loc, probs, vr, /*rhsTransposed=*/false);
  if (rank == 3) {
    ArrayRef<int64_t> s = shapeOf(y);
    SmallVector<int64_t> t = {s[0], s[2], s[1], s[3]};
    Value init = tensor::EmptyOp::create(b, loc, t, element);
    y = linalg::TransposeOp::create(b, loc, y, init, ArrayRef<int64_t>{0, 2, 1, 3})
            .getResult()[0];
    y = buildReshape(b, loc, y, {s[0], s[2], s[1] * s[3]});
  }
  SmallVector<Value> outs = {y, presentKey, presentValue};
  int64_t mode = ctx.intAttr("qk_matmul_output_mode", 0);
  Value qk = mode == 2 ? withBias : mode == 3 ? probs : scores;
  outs.push_back(qk);
  outs.resize(std::min<size_t>(outs.size(), ctx.getNode().output_size()));
  return ctx.setOutputs(outs);
}

} // namespace

void registerAttentionOps(OpRegistry &registry) {
  registry.on("Attention", 23, importAttention);
}

} // namespace kiln::onnx
