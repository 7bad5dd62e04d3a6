//===- OpsAttention.cpp - ONNX Attention and RotaryEmbedding (opset 23) ---===//
//
// Both become kiln ops in the layout kernels want ([batch, heads, sequence,
// head size]); what is ONNX-specific stays here: 3-D inputs are split into
// heads, past keys and values are concatenated in front, boolean and short
// masks become an additive bias padded with -inf to the key length, causal
// masking is offset by the past length (an attribute of the op) or by each
// batch's valid length with a static cache (then, like sliding windows, part
// of the bias), and RotaryEmbedding's caches are
// gathered by position id. kiln.attention and kiln.rotary_embedding carry
// the math (dialects/kiln/Decompositions.cpp).
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/Decompositions.h"
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/DecoderCache.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <tuple>

using namespace mlir;

namespace kiln::onnx {
namespace {



/// Whether dim `da` of `a` and dim `db` of `b` are the same size: equal
/// static sizes, or one symbolic dim.
bool sameDim(NodeContext &ctx, Value a, unsigned da, Value b, unsigned db) {
  int64_t x = shapeOf(a)[da], y = shapeOf(b)[db];
  if (ShapedType::isDynamic(x) && ShapedType::isDynamic(y))
    return ctx.sameSize(a, da, b, db) == true;
  return x == y;
}

/// [B, S, H*D] -> [B, H, S, D].
Value splitHeads(OpBuilder &b, Location loc, Value x, int64_t heads) {
  ArrayRef<int64_t> s = shapeOf(x);
  Value r = buildReshape(b, loc, x, {s[0], s[1], heads, s[2] / heads});
  SmallVector<int64_t> out = {s[0], heads, s[1], s[2] / heads};
  Value init = tensor::EmptyOp::create(b, loc, out, elementTypeOf(x));
  return linalg::TransposeOp::create(b, loc, r, init,
                                     ArrayRef<int64_t>{0, 2, 1, 3})
      .getResult()[0];
}


/// Along axis 2: [a; b].
Value concatSeq(OpBuilder &b, Location loc, Value first, Value second) {
  return buildConcat(b, loc, {first, second}, 2);
}


/// [B, H, S, D] -> [B, S, H*D].
Value mergeHeads(OpBuilder &b, Location loc, Value x) {
  ArrayRef<int64_t> s = shapeOf(x);
  SmallVector<int64_t> t = {s[0], s[2], s[1], s[3]};
  Value init = tensor::EmptyOp::create(b, loc, t, elementTypeOf(x));
  Value y = linalg::TransposeOp::create(b, loc, x, init, ArrayRef<int64_t>{0, 2, 1, 3})
                .getResult()[0];
  return buildReshape(b, loc, y, {s[0], s[2], s[1] * s[3]});
}

LogicalResult importAttention(NodeContext &ctx) {
  Value q = ctx.input(0), k = ctx.input(1), v = ctx.input(2);
  if (!q || !k || !v)
    return failure();
  int64_t leftWindow = ctx.intAttr("left_window_size", -1),
          rightWindow = ctx.intAttr("right_window_size", -1);
  if (leftWindow < -1 || rightWindow < -1)
    return ctx.error() << "left_window_size and right_window_size must be -1 "
                          "(unbounded) or nonnegative, got "
                       << leftWindow << " and " << rightWindow;
  Type element = elementTypeOf(q);
  if (!isa<FloatType>(element) || elementTypeOf(k) != element ||
      elementTypeOf(v) != element)
    return ctx.error() << "Attention takes float Q, K and V of one type, got "
                       << q.getType() << ", " << k.getType() << " and "
                       << v.getType();
  int64_t rank = shapeOf(q).size();
  if (rank != 3 && rank != 4)
    return ctx.error() << "Attention takes 3-D or 4-D inputs, got " << q.getType();
  if (shapeOf(k).size() != static_cast<size_t>(rank) ||
      shapeOf(v).size() != static_cast<size_t>(rank))
    return ctx.error() << "Q, K and V must have the same rank";
  // Symbolic batch, query and key counts reach kiln.attention as they are
  // (its CPU kernel takes them); the mask, the past, padding lengths,
  // windows and the qk output are built over static shapes here.
  bool wantsQk = ctx.getNode().output_size() > 3 && !ctx.getNode().output(3).empty();
  auto staticInput = [&](int i) {
    return !ctx.hasInput(i) || !ctx.input(i) ||
           cast<ShapedType>(ctx.input(i).getType()).hasStaticShape();
  };
  bool symbolic = !cast<ShapedType>(q.getType()).hasStaticShape() ||
                  !cast<ShapedType>(k.getType()).hasStaticShape() ||
                  !cast<ShapedType>(v.getType()).hasStaticShape() ||
                  !staticInput(3) || !staticInput(4) || !staticInput(5);
  if (symbolic) {
    // A past (a KV cache of symbolic length) goes in front of K and V; a
    // causal mask then counts it, aligned to the end (`causal_from_end`).
    if (ctx.hasInput(6))
      return ctx.error() << "Attention with symbolic dims takes no input #6 ('"
                         << ctx.getNode().input(6)
                         << "': padding lengths need static shapes) yet: "
                            "give each dim a fixed value with --dim "
                            "NAME=VALUE";
    if (rank != 4 || leftWindow >= 0 || rightWindow >= 0 || wantsQk)
      return ctx.error() << "Attention with symbolic dims takes 4-D Q, K and V "
                            "without windows or the qk output yet: give each "
                            "dim a fixed value with --dim NAME=VALUE";
    for (Value x : {q, k, v})
      if (ShapedType::isDynamic(shapeOf(x)[1]) ||
          ShapedType::isDynamic(shapeOf(x)[3]))
        return ctx.error() << "Attention with symbolic dims needs static head "
                              "counts and head sizes, got "
                           << x.getType();
    // The batch of Q, K and V, and the key count of K and V, must be one
    // symbolic dim each (the kernel reads K and V at Q's batch indices and
    // V at K's keys).
    for (auto [x, dx, y, dy] : {std::tuple{q, 0u, k, 0u}, std::tuple{q, 0u, v, 0u},
                                std::tuple{k, 2u, v, 2u}})
      if (!sameDim(ctx, x, dx, y, dy))
        return ctx.error() << "Attention's " << x.getType() << " and "
                           << y.getType() << " must share dim " << dx
                           << " and dim " << dy
                           << " (the same symbolic dim or size): give the "
                              "inputs' dims one name, or fixed values with "
                              "--dim NAME=VALUE";
    for (int i : {4, 5}) {
      if (!ctx.hasInput(i) || !ctx.input(i))
        continue;
      Value past = ctx.input(i), now = i == 4 ? k : v;
      if (shapeOf(past).size() != 4 || !sameDim(ctx, past, 0, q, 0) ||
          !sameDim(ctx, past, 1, now, 1) || !sameDim(ctx, past, 3, now, 3))
        return ctx.error() << "Attention's past " << past.getType()
                           << " must be [batch, heads, past, head] with "
                           << now.getType()
                           << "'s batch, heads and head size (the same "
                              "symbolic dims or sizes): give the inputs' dims "
                              "one name, or fixed values with --dim "
                              "NAME=VALUE";
    }
    // Causal with a past: key j is masked for query i past i + past; that
    // is aligned to the end when K brings one key per query.
    if (ctx.intAttr("is_causal", 0) && ctx.hasInput(4) &&
        !sameDim(ctx, q, 2, k, 2))
      return ctx.error() << "causal Attention with a past and symbolic dims "
                            "needs as many new keys as queries (Q "
                         << q.getType() << ", K " << k.getType()
                         << " sharing dim 2): give the dims fixed values "
                            "with --dim NAME=VALUE";
  }
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
  if (kvHeads == 0 || qHeads % kvHeads)
    return ctx.error() << qHeads << " query heads do not group over " << kvHeads
                       << " key/value heads";
  if (shapeOf(presentKey)[3] != headSize || shapeOf(presentValue)[2] != skv ||
      shapeOf(presentValue)[1] != kvHeads || shapeOf(presentKey)[0] != batch ||
      shapeOf(presentValue)[0] != batch)
    return ctx.error() << "key " << presentKey.getType() << " and value "
                       << presentValue.getType() << " do not fit query "
                       << q.getType();

  // The mask as an additive bias over [B, H, Sq, Skv] (bool: 0 or -inf;
  // float: added; padded with -inf past its length).
  Value mask = ctx.hasInput(3) ? ctx.input(3) : Value();
  if (ctx.hasInput(3) && !mask)
    return failure();
  if (mask && !elementTypeOf(mask).isInteger(1) && !isa<FloatType>(elementTypeOf(mask)))
    return ctx.error() << "the attention mask must be bool or float, got "
                       << mask.getType();
  SmallVector<int64_t> full = {batch, qHeads, sq, skv};
  // nonpad_kv_seqlen (24): keys from nonpad[b] on are padding, and the
  // causal and window frontiers of batch b end at nonpad[b] (a static
  // cache); it excludes a past.
  Value nonpad = ctx.hasInput(6) ? ctx.input(6) : Value();
  if (ctx.hasInput(6) && !nonpad)
    return failure();
  if (nonpad) {
    if (pastLength || ctx.hasInput(4))
      return ctx.error() << "nonpad_kv_seqlen cannot be combined with "
                            "past_key and past_value";
    if (shapeOf(nonpad) != ArrayRef<int64_t>({batch}) ||
        !elementTypeOf(nonpad).isInteger(64))
      return ctx.error() << "nonpad_kv_seqlen must be int64 [" << batch
                         << "], got " << nonpad.getType();
  }
  if (mask) {
    ArrayRef<int64_t> ms = shapeOf(mask);
    int64_t mr = ms.size();
    if (mr > 4 || mr == 0)
      return ctx.error() << "the attention mask must have rank 1 to 4, got "
                         << mask.getType();
    for (int64_t d = 0; d + 1 < mr; ++d)
      if (ms[d] != 1 && ms[d] != full[4 - mr + d])
        return ctx.error() << "the attention mask " << mask.getType()
                           << " does not broadcast to the scores [" << full << "]";
    if (ms.back() > skv)
      return ctx.error() << "the attention mask covers " << ms.back()
                         << " keys, more than the " << skv << " there are";
  }
  bool causal = ctx.intAttr("is_causal", 0) != 0;
  bool window = leftWindow >= 0 || rightWindow >= 0;
  // Causal masking with one frontier for all batches stays an attribute of
  // the op; per-batch frontiers and windows go into the bias.
  bool causalInBias = causal && nonpad;
  Value bias;
  if (symbolic && mask) {
    // Symbolic dims: the mask is the bias as it is (float) or 0 / -inf
    // (bool), broadcast by the op; each of its dims is 1 or the scores'
    // dim (a mask shorter than the keys cannot be padded here).
    ArrayRef<int64_t> ms = shapeOf(mask);
    int64_t mr = ms.size();
    Value fullOf[] = {q, q, q, presentKey};
    unsigned dimOf[] = {0, 1, 2, 2};
    for (int64_t d = 0; d < mr; ++d) {
      int64_t f = 4 - mr + d;
      if (ms[d] != 1 && !sameDim(ctx, mask, d, fullOf[f], dimOf[f]))
        return ctx.error() << "with symbolic dims, each dim of the attention "
                              "mask "
                           << mask.getType()
                           << " must be 1 or the scores' dim (the same "
                              "symbolic dim), got dim "
                           << d << ": name it as the scores' dim is named, "
                              "or give the dims fixed values with --dim "
                              "NAME=VALUE";
    }
    if (elementTypeOf(mask).isInteger(1))
      bias = buildBroadcast(
          b, loc, {mask}, ms, element,
          [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
            return arith::SelectOp::create(
                nb, nl, a[0], scalarConstant(nb, nl, element, 0),
                scalarConstant(nb, nl, element, -INFINITY));
          });
    else
      bias = convertElements(b, loc, mask, element);
  } else if (mask || nonpad || window)
    bias = buildIndexed(
        b, loc, full, element, [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
          Value zero = scalarConstant(nb, nl, element, 0);
          Value negInf = scalarConstant(nb, nl, element, -INFINITY);
          auto allow = [&](Value allowed) -> Value {
            return arith::SelectOp::create(nb, nl, allowed, zero, negInf);
          };
          auto cmp = [&](arith::CmpIPredicate predicate, Value l, Value r) -> Value {
            return arith::CmpIOp::create(nb, nl, predicate, l, r);
          };
          Value total = zero;
          auto add = [&](Value term) {
            total = total == zero ? term
                                  : arith::AddFOp::create(nb, nl, total, term).getResult();
          };
          if (mask) {
            ArrayRef<int64_t> ms = shapeOf(mask);
            int64_t mr = ms.size();
            SmallVector<Value> at;
            for (int64_t d = 0; d < mr; ++d)
              at.push_back(ms[d] == 1 ? indexConstant(nb, nl, 0) : ivs[4 - mr + d]);
            int64_t maskLen = ms.back();
            at.back() = maskLen == 1 ? indexConstant(nb, nl, 0)
                                     : arith::MinSIOp::create(nb, nl, ivs[3],
                                                              indexConstant(nb, nl, maskLen - 1))
                                           .getResult();
            Value m = tensor::ExtractOp::create(nb, nl, mask, at);
            Value term = elementTypeOf(mask).isInteger(1) ? allow(m)
                                                      : castScalar(nb, nl, m, element);
            // A mask shorter than the keys is padded with -inf.
            if (maskLen < skv)
              term = arith::SelectOp::create(
                  nb, nl, cmp(arith::CmpIPredicate::slt, ivs[3], indexConstant(nb, nl, maskLen)),
                  term, negInf);
            add(term);
          }
          // The query's absolute position: i + past length, or
          // i + nonpad[b] - S with a static cache.
          Value position = arith::AddIOp::create(nb, nl, ivs[2], indexConstant(nb, nl, pastLength));
          Value valid;
          if (nonpad) {
            valid = arith::IndexCastOp::create(
                nb, nl, nb.getIndexType(),
                tensor::ExtractOp::create(nb, nl, nonpad, ValueRange{ivs[0]}));
            position = arith::SubIOp::create(
                nb, nl, arith::AddIOp::create(nb, nl, ivs[2], valid), indexConstant(nb, nl, sq));
          }
          if (causalInBias)
            add(allow(cmp(arith::CmpIPredicate::sle, ivs[3], position)));
          if (leftWindow >= 0) // position - j <= left
            add(allow(cmp(arith::CmpIPredicate::sle,
                          arith::SubIOp::create(nb, nl, position, ivs[3]),
                          indexConstant(nb, nl, leftWindow))));
          if (rightWindow >= 0) // j - position <= right
            add(allow(cmp(arith::CmpIPredicate::sle,
                          arith::SubIOp::create(nb, nl, ivs[3], position),
                          indexConstant(nb, nl, rightWindow))));
          if (nonpad)
            add(allow(cmp(arith::CmpIPredicate::slt, ivs[3], valid)));
          return total;
        });

  double scale = ctx.hasAttr("scale") ? ctx.floatAttr("scale", 1.0f)
                                      : 1.0 / std::sqrt(static_cast<double>(headSize));
  auto resultType = RankedTensorType::get(
      {batch, qHeads, sq, shapeOf(presentValue)[3]}, element);
  auto op = AttentionOp::create(b, loc, resultType, q, presentKey, presentValue, bias,
                                b.getF64FloatAttr(scale),
                                b.getF64FloatAttr(ctx.floatAttr("softcap", 0.0f)),
                                /*causal_offset=*/nullptr, /*softmax_type=*/nullptr);
  if (causal && !causalInBias) {
    // A symbolic past: the keys in front of the queries, counted at run
    // time (checked above: as many new keys as queries).
    bool fromEnd = ShapedType::isDynamic(pastLength);
    op.setCausalOffset(fromEnd ? 0 : pastLength);
    op.setCausalFromEnd(fromEnd);
  }
  if (ctx.hasAttr("softmax_precision")) {
    Type softmaxType =
        toElementType(b.getContext(), ctx.intAttr("softmax_precision", 1));
    if (!softmaxType || !isa<FloatType>(softmaxType)) {
      op.erase();
      return ctx.error() << "unsupported softmax_precision";
    }
    op.setSoftmaxType(softmaxType);
  }
  // The qk output (modes 0-3: scores, after the bias, after the softmax)
  // needs the op's intermediates: decompose it here.
  AttentionParts parts;
  if (wantsQk) {
    parts = decomposeAttention(b, op);
    op.erase();
  } else {
    parts.result = op.getResult();
  }
  Value y = parts.result;
  if (rank == 3)
    y = mergeHeads(b, loc, y);
  SmallVector<Value> outs = {y, presentKey, presentValue};
  int64_t mode = ctx.intAttr("qk_matmul_output_mode", 0);
  if (wantsQk) {
    if (mode < 0 || mode > 3)
      return ctx.error() << "qk_matmul_output_mode " << mode << " is not 0-3";
    // 0: scaled scores; 1: soft-capped (the same value here); 2: with the
    // bias; 3: after the softmax.
    outs.push_back(mode == 2   ? parts.biasedScores
                   : mode == 3 ? parts.probabilities
                               : parts.scores);
  }
  outs.resize(std::min<size_t>(outs.size(), ctx.getNode().output_size()));
  return ctx.setOutputs(outs);
}


/// RotaryEmbedding (23): X is [B, S, hidden] with num_heads, or
/// [B, H, S, D]; the caches are [max_position, R/2] indexed by
/// position_ids [B, S], or [B, S, R/2] without position ids.
/// Where a rotary op's operands are: ONNX's (X, cos, sin, position_ids
/// optional) or onnxruntime's contrib op (input, position_ids, cos, sin),
/// whose position_ids may also be a [1] offset of the first position.
struct RotaryOperands {
  int x, cos, sin, positions;
  bool positionOffset;
};

LogicalResult importRotary(NodeContext &ctx, RotaryOperands where) {
  Value x = ctx.input(where.x), cos = ctx.input(where.cos),
        sin = ctx.input(where.sin);
  if (!x || !cos || !sin)
    return failure();
  Type element = elementTypeOf(x);
  if (!isa<FloatType>(element) || elementTypeOf(cos) != element ||
      elementTypeOf(sin) != element)
    return ctx.error() << "RotaryEmbedding takes a float input and caches of "
                          "its type, got "
                       << x.getType() << ", " << cos.getType() << " and "
                       << sin.getType();
  if (cos.getType() != sin.getType())
    return ctx.error() << "cos_cache " << cos.getType() << " and sin_cache "
                       << sin.getType() << " must have the same shape";
  int64_t rank = shapeOf(x).size();
  if (rank != 3 && rank != 4)
    return ctx.error() << "RotaryEmbedding takes a 3-D or 4-D input, got "
                       << x.getType();
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  Value x4 = x;
  if (rank == 3) {
    int64_t heads = ctx.intAttr("num_heads", 0);
    if (heads <= 0 || shapeOf(x)[2] % heads)
      return ctx.error() << "a 3-D input needs num_heads that divides its "
                            "hidden size "
                         << shapeOf(x)[2];
    x4 = splitHeads(b, loc, x, heads);
  }
  int64_t batch = shapeOf(x4)[0], seq = shapeOf(x4)[2], head = shapeOf(x4)[3];
  int64_t rotary = ctx.intAttr("rotary_embedding_dim", 0);
  if (rotary == 0)
    rotary = head;
  if (rotary < 0 || rotary % 2 || rotary > head)
    return ctx.error() << "rotary_embedding_dim " << rotary
                       << " must be even and at most the head size " << head;
  int64_t half = rotary / 2;
  ArrayRef<int64_t> cacheShape = shapeOf(cos);
  if (cacheShape.empty() || cacheShape.back() != half)
    return ctx.error() << "the caches' last dim must be rotary_embedding_dim / 2 = "
                       << half << ", got " << cos.getType();
  SmallVector<int64_t> angles = {batch, seq, half};
  if (ctx.hasInput(where.positions)) {
    Value positions = ctx.input(where.positions);
    if (!positions)
      return failure();
    // A [1] offset: position s is offset + s for every batch.
    bool offset = where.positionOffset &&
                  shapeOf(positions) == ArrayRef<int64_t>({1});
    if (cacheShape.size() != 2 ||
        (!offset && shapeOf(positions) != ArrayRef<int64_t>({batch, seq})) ||
        !elementTypeOf(positions).isInteger(64))
      return ctx.error() << "with position_ids (int64 [" << batch << ", " << seq
                         << "]" << (where.positionOffset ? " or [1]" : "")
                         << ", got " << positions.getType()
                         << ") the caches must be 2-D, got " << cos.getType();
    // Positions outside the cache are clamped into it (ONNX leaves them
    // undefined; reading past the cache is not an option).
    int64_t last = cacheShape[0] - 1;
    auto gather = [&](Value cache) {
      return buildIndexed(
          b, loc, angles, element, [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
            Value p = offset ? tensor::ExtractOp::create(
                                   nb, nl, positions,
                                   ValueRange{indexConstant(nb, nl, 0)})
                             : tensor::ExtractOp::create(
                                   nb, nl, positions, ValueRange{ivs[0], ivs[1]});
            Value at = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), p);
            if (offset)
              at = arith::AddIOp::create(nb, nl, at, ivs[1]);
            at = arith::MaxSIOp::create(nb, nl, at, indexConstant(nb, nl, 0));
            at = arith::MinSIOp::create(nb, nl, at, indexConstant(nb, nl, last));
            return tensor::ExtractOp::create(nb, nl, cache, ValueRange{at, ivs[2]});
          });
    };
    cos = gather(cos);
    sin = gather(sin);
  } else if (where.positionOffset) {
    return ctx.error() << "position_ids is required";
  } else if (cacheShape != ArrayRef<int64_t>(angles)) {
    return ctx.error() << "without position_ids the caches must be [" << angles
                       << "], got " << cos.getType();
  }
  auto op = RotaryEmbeddingOp::create(b, loc, x4.getType(), x4, cos, sin);
  op.setInterleaved(ctx.intAttr("interleaved", 0) != 0);
  Value y = op.getResult();
  return ctx.setOutputs(rank == 3 ? mergeHeads(b, loc, y) : y);
}

/// onnxruntime's contrib attention ops: the `scale` attribute, or
/// 1/sqrt(head size) when it is absent or 0.
double contribScale(NodeContext &ctx, int64_t headSize) {
  float scale = ctx.floatAttr("scale", 0.0f);
  return scale != 0.0f ? scale : 1.0 / std::sqrt(static_cast<double>(headSize));
}

/// Their attention_bias: [B or 1, N or 1, S, T] of the query's type, for
/// scores `scores` = [B, N, S, T].
LogicalResult checkAttentionBias(NodeContext &ctx, Value extra,
                                 ArrayRef<int64_t> scores) {
  ArrayRef<int64_t> es = shapeOf(extra);
  if (es.size() == 4 && (es[0] == 1 || es[0] == scores[0]) &&
      (es[1] == 1 || es[1] == scores[1]) && es[2] == scores[2] &&
      es[3] == scores[3] && elementTypeOf(extra) == elementTypeOf(ctx.input(0)))
    return success();
  return ctx.error() << "attention_bias " << extra.getType() << " must be ["
                     << scores[0] << " or 1, " << scores[1] << " or 1, "
                     << scores[2] << ", " << scores[3]
                     << "] of the query's type";
}

/// attention_bias at score (b, n, i, j), its size-1 dims broadcast.
Value readAttentionBias(OpBuilder &b, Location loc, Value extra, ValueRange ivs) {
  ArrayRef<int64_t> es = shapeOf(extra);
  return tensor::ExtractOp::create(
      b, loc, extra,
      ValueRange{es[0] == 1 ? indexConstant(b, loc, 0) : ivs[0],
                 es[1] == 1 ? indexConstant(b, loc, 0) : ivs[1], ivs[2], ivs[3]});
}

/// com.microsoft Attention (BERT and GPT-2 after onnxruntime's transformer
/// optimizer): one projection `input @ weights + bias` split into Q, K and
/// V (`qkv_hidden_sizes`, else thirds), `num_heads` heads, then
/// kiln.attention. mask_index marks the keys to leave out, each adding
/// `mask_filter_value` (-10000 by default) as onnxruntime does: end
/// positions [B], end and start positions [2B], or a raw 0/1 mask [B, T] or
/// [B, S, T]; attention_bias [B or 1, N or 1, S, T] is added; unidirectional
/// makes it causal. A past and present (the old GPT-2 cache) are refused.
LogicalResult importContribAttention(NodeContext &ctx) {
  Value x = ctx.input(0), weights = ctx.input(1);
  if (!x || !weights)
    return failure();
  for (int i : {4, 6})
    if (ctx.hasInput(i))
      return ctx.error() << "input #" << i << " ('" << ctx.getNode().input(i)
                         << "', a past key/value cache) is not supported; "
                            "export the model without past, or compile its "
                            "checkpoint (kiln compile DIR keeps a KV cache)";
  if (ctx.getNode().output_size() > 1 && !ctx.getNode().output(1).empty())
    return ctx.error() << "the present output (a key/value cache) is not "
                          "supported";
  if (ctx.intAttr("do_rotary", 0) != 0)
    return ctx.error() << "do_rotary is not supported";
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  if (!isa<FloatType>(element) || type.getRank() != 3 ||
      !type.hasStaticShape() || ctx.inputType(1).getRank() != 2 ||
      ctx.inputType(1).getElementType() != element)
    return ctx.error() << "Attention takes a float input [B, S, hidden] of "
                          "static shape and weights [hidden, 3 x hidden] of "
                          "its type, got "
                       << type << " and " << ctx.inputType(1);
  int64_t heads = ctx.intAttr("num_heads", 0);
  int64_t total = ctx.inputType(1).getDimSize(1);
  std::vector<int64_t> sizes = ctx.intsAttr("qkv_hidden_sizes").value_or(
      std::vector<int64_t>(3, total / 3));
  if (heads <= 0 || sizes.size() != 3 || sizes[0] != sizes[1] ||
      sizes[0] + sizes[1] + sizes[2] != total || sizes[0] % heads ||
      sizes[2] % heads || sizes[0] <= 0 || sizes[2] <= 0)
    return ctx.error() << "num_heads " << heads << " and the Q, K, V sizes ("
                       << total << " columns of weights, qkv_hidden_sizes if "
                       << "given) do not fit: Q and K must be equal, each a "
                       << "multiple of num_heads";
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  Value qkv = buildMatmul(ctx, x, weights);
  if (!qkv)
    return failure();
  if (ctx.hasInput(2)) {
    Value bias = ctx.input(2);
    if (!bias)
      return failure();
    if (shapeOf(bias) != ArrayRef<int64_t>({total}) ||
        elementTypeOf(bias) != element)
      return ctx.error() << "the bias must be [" << total << "] of the "
                         << "input's type, got " << bias.getType();
    qkv = buildElementwise(ctx, {qkv, bias}, element,
                           [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                             return arith::AddFOp::create(nb, nl, a[0], a[1]);
                           });
  }
  int64_t batch = type.getDimSize(0), seq = type.getDimSize(1);
  auto slice = [&](int64_t offset, int64_t width) {
    Value part = tensor::ExtractSliceOp::create(
        b, loc, qkv, ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(0), b.getIndexAttr(offset)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(batch), b.getIndexAttr(seq), b.getIndexAttr(width)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(1)});
    return splitHeads(b, loc, part, heads);
  };
  Value q = slice(0, sizes[0]), k = slice(sizes[0], sizes[1]),
        v = slice(sizes[0] + sizes[1], sizes[2]);

  float filter = ctx.floatAttr("mask_filter_value", -10000.0f);
  Value mask = ctx.hasInput(3) ? ctx.input(3) : Value();
  Value extra = ctx.hasInput(5) ? ctx.input(5) : Value();
  if ((ctx.hasInput(3) && !mask) || (ctx.hasInput(5) && !extra))
    return failure();
  enum class MaskKind { None, End, EndStart, Raw2D, Raw3D } kind = MaskKind::None;
  if (mask) {
    ArrayRef<int64_t> ms = shapeOf(mask);
    if (!elementTypeOf(mask).isInteger(32) && !elementTypeOf(mask).isInteger(64))
      return ctx.error() << "mask_index must be int32, got " << mask.getType();
    if (ms == ArrayRef<int64_t>({batch}))
      kind = MaskKind::End;
    else if (ms == ArrayRef<int64_t>({2 * batch}))
      kind = MaskKind::EndStart;
    else if (ms == ArrayRef<int64_t>({batch, seq}))
      kind = MaskKind::Raw2D;
    else if (ms == ArrayRef<int64_t>({batch, seq, seq}))
      kind = MaskKind::Raw3D;
    else
      return ctx.error() << "mask_index " << mask.getType() << " is not one of "
                         << "[B], [2B], [B, T] or [B, S, T] (B " << batch
                         << ", S = T " << seq << ")";
  }
  if (extra && failed(checkAttentionBias(ctx, extra, {batch, heads, seq, seq})))
    return failure();
  Value bias;
  if (mask || extra) {
    SmallVector<int64_t> shape = {batch, extra ? heads : 1, seq, seq};
    bias = buildIndexed(
        b, loc, shape, element, [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
          Value zero = scalarConstant(nb, nl, element, 0);
          Value total = zero;
          if (mask) {
            auto read = [&](ValueRange at) -> Value {
              Value m = tensor::ExtractOp::create(nb, nl, mask, at);
              return arith::IndexCastOp::create(nb, nl, nb.getIndexType(), m);
            };
            auto cmp = [&](arith::CmpIPredicate p, Value l, Value r) -> Value {
              return arith::CmpIOp::create(nb, nl, p, l, r);
            };
            Value keep;
            using P = arith::CmpIPredicate;
            switch (kind) {
            case MaskKind::End:
              keep = cmp(P::slt, ivs[3], read({ivs[0]}));
              break;
            case MaskKind::EndStart: {
              Value start = read({arith::AddIOp::create(
                  nb, nl, ivs[0], indexConstant(nb, nl, batch))});
              keep = arith::AndIOp::create(nb, nl, cmp(P::slt, ivs[3], read({ivs[0]})),
                                           cmp(P::sge, ivs[3], start));
              break;
            }
            case MaskKind::Raw2D:
              keep = cmp(P::ne, read({ivs[0], ivs[3]}), indexConstant(nb, nl, 0));
              break;
            case MaskKind::Raw3D:
              keep = cmp(P::ne, read({ivs[0], ivs[2], ivs[3]}),
                         indexConstant(nb, nl, 0));
              break;
            case MaskKind::None:
              break;
            }
            total = arith::SelectOp::create(nb, nl, keep, zero,
                                            scalarConstant(nb, nl, element, filter));
          }
          if (extra)
            total = arith::AddFOp::create(nb, nl, total,
                                          readAttentionBias(nb, nl, extra, ivs));
          return total;
        });
  }
  double scale = contribScale(ctx, sizes[0] / heads);
  auto resultType =
      RankedTensorType::get({batch, heads, seq, sizes[2] / heads}, element);
  auto op = AttentionOp::create(b, loc, resultType, q, k, v, bias,
                                b.getF64FloatAttr(scale), b.getF64FloatAttr(0.0),
                                /*causal_offset=*/nullptr,
                                /*softmax_type=*/nullptr);
  if (ctx.intAttr("unidirectional", 0) != 0)
    op.setCausalOffset(0);
  return ctx.setOutputs(mergeHeads(b, loc, op.getResult()));
}

/// com.microsoft GroupQueryAttention (onnxruntime-genai's LLM exports):
/// Q [B, S, N*H] with K, V [B, S, kvN*H] (or one packed QKV), a past
/// [B, kvN, P, H] (P may be 0), seqlens_k [B] (each batch's valid length
/// - 1). As onnxruntime: batch b's new tokens start at past_b =
/// seqlens_k[b] + 1 - S (0 without a past), the present holds the past's
/// first past_b positions, the new keys, then zeros, and query i sees the
/// keys up to min(past_b + i, seqlens_k[b]) (within local_window_size).
/// do_rotary rotates Q and the new K at their positions first. The present
/// is P + S long (a past buffer shared with the present is not supported).
LogicalResult importGroupQueryAttention(NodeContext &ctx) {
  for (int i = 9; i < ctx.numInputs(); ++i)
    if (ctx.hasInput(i))
      return ctx.error() << "input #" << i << " ('" << ctx.getNode().input(i)
                         << "') is not supported";
  if (ctx.intAttr("smooth_softmax", 0) != 0 || ctx.intAttr("qk_output", 0) != 0)
    return ctx.error() << "smooth_softmax and qk_output are not supported";
  if (ctx.getNode().output_size() > 3 && !ctx.getNode().output(3).empty())
    return ctx.error() << "the qk output is not supported";
  Value query = ctx.input(0);
  if (!query)
    return failure();
  bool packedQkv = !ctx.hasInput(1) && !ctx.hasInput(2);
  if (!packedQkv && (!ctx.hasInput(1) || !ctx.hasInput(2)))
    return ctx.error() << "key and value go together (or neither, with a "
                          "packed QKV query)";
  int64_t heads = ctx.intAttr("num_heads", 0), kvHeads = ctx.intAttr("kv_num_heads", 0);
  RankedTensorType qType = ctx.inputType(0);
  Type element = qType.getElementType();
  if (!isa<FloatType>(element) || qType.getRank() != 3 || !qType.hasStaticShape() ||
      heads <= 0 || kvHeads <= 0 || heads % kvHeads)
    return ctx.error() << "GroupQueryAttention takes a float query [B, S, "
                          "hidden] of static shape, and num_heads a multiple "
                          "of kv_num_heads, got "
                       << qType << ", " << heads << " and " << kvHeads;
  int64_t batch = qType.getDimSize(0), seq = qType.getDimSize(1);
  int64_t width = qType.getDimSize(2) / (packedQkv ? heads + 2 * kvHeads : heads);
  if (width * (packedQkv ? heads + 2 * kvHeads : heads) != qType.getDimSize(2))
    return ctx.error() << "the query's hidden size " << qType.getDimSize(2)
                       << " does not divide into the heads";
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  auto columns = [&](Value x, int64_t offset, int64_t count) -> Value {
    return tensor::ExtractSliceOp::create(
        b, loc, x,
        ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(0), b.getIndexAttr(offset)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(batch), b.getIndexAttr(seq), b.getIndexAttr(count)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(1)});
  };
  Value q = query, k, v;
  if (packedQkv) {
    q = columns(query, 0, heads * width);
    k = columns(query, heads * width, kvHeads * width);
    v = columns(query, (heads + kvHeads) * width, kvHeads * width);
  } else {
    k = ctx.input(1);
    v = ctx.input(2);
    if (!k || !v)
      return failure();
    for (Value x : {k, v})
      if (shapeOf(x) != ArrayRef<int64_t>({batch, seq, kvHeads * width}) ||
          elementTypeOf(x) != element)
        return ctx.error() << "key and value must be [" << batch << ", " << seq
                           << ", " << kvHeads * width << "] of the query's "
                           << "type, got " << x.getType();
  }
  q = splitHeads(b, loc, q, heads);
  k = splitHeads(b, loc, k, kvHeads);
  v = splitHeads(b, loc, v, kvHeads);

  Value seqlens = ctx.input(5);
  if (!seqlens)
    return failure();
  if (shapeOf(seqlens) != ArrayRef<int64_t>({batch}) ||
      !elementTypeOf(seqlens).isInteger(32))
    return ctx.error() << "seqlens_k must be int32 [" << batch << "], got "
                       << seqlens.getType();
  Value pastKey = ctx.hasInput(3) ? ctx.input(3) : Value();
  Value pastValue = ctx.hasInput(4) ? ctx.input(4) : Value();
  if ((ctx.hasInput(3) && !pastKey) || (ctx.hasInput(4) && !pastValue) ||
      bool(pastKey) != bool(pastValue))
    return pastKey || pastValue
               ? ctx.error() << "past_key and past_value go together"
               : failure();
  int64_t past = 0;
  if (pastKey) {
    ArrayRef<int64_t> ps = shapeOf(pastKey);
    if (ps.size() != 4 || ps[0] != batch || ps[1] != kvHeads || ps[3] != width ||
        shapeOf(pastValue) != ps || ShapedType::isDynamic(ps[2]))
      return ctx.error() << "past_key and past_value must be [" << batch << ", "
                         << kvHeads << ", P, " << width << "], got "
                         << pastKey.getType() << " and " << pastValue.getType();
    past = ps[2];
  }
  int64_t total = past + seq;
  // Batch b's first new position: seqlens_k[b] + 1 - S with a past, else 0
  // (clamped into the past).
  auto pastOf = [&](OpBuilder &nb, Location nl, Value bIndex) -> Value {
    if (past == 0)
      return indexConstant(nb, nl, 0);
    Value len = arith::IndexCastOp::create(
        nb, nl, nb.getIndexType(),
        tensor::ExtractOp::create(nb, nl, seqlens, ValueRange{bIndex}));
    Value start = arith::SubIOp::create(
        nb, nl, arith::AddIOp::create(nb, nl, len, indexConstant(nb, nl, 1)),
        indexConstant(nb, nl, seq));
    start = arith::MaxSIOp::create(nb, nl, start, indexConstant(nb, nl, 0));
    return arith::MinSIOp::create(nb, nl, start, indexConstant(nb, nl, past));
  };

  if (failed(rotateGroupQueryAttention(ctx, q, k, {}, pastOf)))
    return failure();

  // The present: the past's first past_b positions, the new ones, zeros.
  auto present = [&](Value pastTensor, Value fresh) -> Value {
    return buildIndexed(
        b, loc, {batch, kvHeads, total, width}, element,
        [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
          Value start = pastOf(nb, nl, ivs[0]);
          Value zero = scalarConstant(nb, nl, element, 0);
          Value rel = arith::SubIOp::create(nb, nl, ivs[2], start);
          Value isNew = arith::AndIOp::create(
              nb, nl,
              arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, rel,
                                    indexConstant(nb, nl, 0)),
              arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, rel,
                                    indexConstant(nb, nl, seq)));
          Value relClamped = arith::MinSIOp::create(
              nb, nl, arith::MaxSIOp::create(nb, nl, rel, indexConstant(nb, nl, 0)),
              indexConstant(nb, nl, seq - 1));
          Value fromNew = tensor::ExtractOp::create(
              nb, nl, fresh, ValueRange{ivs[0], ivs[1], relClamped, ivs[3]});
          Value result = arith::SelectOp::create(nb, nl, isNew, fromNew, zero);
          if (past > 0) {
            Value inPast = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt,
                                                 ivs[2], start);
            Value pastAt = arith::MinSIOp::create(nb, nl, ivs[2],
                                                  indexConstant(nb, nl, past - 1));
            Value fromPast = tensor::ExtractOp::create(
                nb, nl, pastTensor, ValueRange{ivs[0], ivs[1], pastAt, ivs[3]});
            result = arith::SelectOp::create(nb, nl, inPast, fromPast, result);
          }
          return result;
        });
  };
  Value presentKey = present(pastKey, k), presentValue = present(pastValue, v);

  int64_t window = ctx.intAttr("local_window_size", -1);
  Value bias = buildIndexed(
      b, loc, {batch, 1, seq, total}, element,
      [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
        Value position = arith::AddIOp::create(nb, nl, pastOf(nb, nl, ivs[0]), ivs[2]);
        Value len = arith::IndexCastOp::create(
            nb, nl, nb.getIndexType(),
            tensor::ExtractOp::create(nb, nl, seqlens, ValueRange{ivs[0]}));
        Value last = arith::MinSIOp::create(nb, nl, position, len);
        Value ok = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sle, ivs[3], last);
        if (window > 0)
          ok = arith::AndIOp::create(
              nb, nl, ok,
              arith::CmpIOp::create(
                  nb, nl, arith::CmpIPredicate::sgt, ivs[3],
                  arith::SubIOp::create(nb, nl, position, indexConstant(nb, nl, window))));
        return arith::SelectOp::create(nb, nl, ok, scalarConstant(nb, nl, element, 0),
                                       scalarConstant(nb, nl, element, -INFINITY));
      });
  double scale = contribScale(ctx, width);
  auto resultType = RankedTensorType::get({batch, heads, seq, width}, element);
  auto op = AttentionOp::create(b, loc, resultType, q, presentKey, presentValue, bias,
                                b.getF64FloatAttr(scale),
                                b.getF64FloatAttr(ctx.floatAttr("softcap", 0.0f)),
                                /*causal_offset=*/nullptr,
                                /*softmax_type=*/nullptr);
  return ctx.setOutputs({mergeHeads(b, loc, op.getResult()), presentKey, presentValue});
}

/// com.microsoft MultiHeadAttention: Q [B, S, D], K and V [B, L, D] (or
/// already split into heads, [B, N, L, H]), an optional bias [3D] added
/// before the split, key_padding_mask (end positions [B] or a raw 0/1
/// [B, T]; each masked key adds mask_filter_value, -10000 by default, as
/// onnxruntime does), attention_bias [B or 1, N or 1, S, T], a past
/// concatenated in front of K and V (the present outputs), unidirectional
/// as a causal op from the past length on. Packed QKV and KV inputs are
/// refused.
LogicalResult importMultiHeadAttention(NodeContext &ctx) {
  for (int i = 8; i < ctx.numInputs(); ++i)
    if (ctx.hasInput(i))
      return ctx.error() << "input #" << i << " ('" << ctx.getNode().input(i)
                         << "') is not supported";
  if (ctx.getNode().output_size() > 3 && !ctx.getNode().output(3).empty())
    return ctx.error() << "the qk output is not supported";
  if (!ctx.hasInput(1) || !ctx.hasInput(2))
    return ctx.error() << "packed QKV or KV inputs are not supported: give "
                          "query, key and value";
  Value q = ctx.input(0), k = ctx.input(1), v = ctx.input(2);
  if (!q || !k || !v)
    return failure();
  int64_t heads = ctx.intAttr("num_heads", 0);
  Type element = elementTypeOf(q);
  auto staticFloat = [&](Value x) {
    auto t = cast<RankedTensorType>(x.getType());
    return t.hasStaticShape() && t.getElementType() == element;
  };
  if (!isa<FloatType>(element) || heads <= 0 || shapeOf(q).size() != 3 ||
      !staticFloat(q) || !staticFloat(k) || !staticFloat(v) ||
      shapeOf(k).size() != shapeOf(v).size() ||
      (shapeOf(k).size() != 3 && shapeOf(k).size() != 4))
    return ctx.error() << "MultiHeadAttention takes float Q [B, S, D], K and "
                          "V [B, L, D] or [B, N, L, H] of static shapes, and "
                          "num_heads, got "
                       << q.getType() << ", " << k.getType() << ", "
                       << v.getType() << " and " << heads;
  int64_t batch = shapeOf(q)[0], seq = shapeOf(q)[1], qWidth = shapeOf(q)[2];
  bool split = shapeOf(k).size() == 4;
  int64_t kWidth = split ? shapeOf(k)[1] * shapeOf(k)[3] : shapeOf(k)[2];
  int64_t vWidth = split ? shapeOf(v)[1] * shapeOf(v)[3] : shapeOf(v)[2];
  if (qWidth % heads || kWidth != qWidth || vWidth % heads ||
      shapeOf(k)[0] != batch || shapeOf(v)[0] != batch ||
      (split && (shapeOf(k)[1] != heads || shapeOf(v)[1] != heads ||
                 shapeOf(k)[2] != shapeOf(v)[2])) ||
      (!split && shapeOf(k)[1] != shapeOf(v)[1]))
    return ctx.error() << "Q " << q.getType() << ", K " << k.getType()
                       << " and V " << v.getType() << " do not fit "
                       << heads << " heads";
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  if (ctx.hasInput(3)) {
    Value bias = ctx.input(3);
    if (!bias)
      return failure();
    if (split || shapeOf(bias) != ArrayRef<int64_t>({qWidth + kWidth + vWidth}) ||
        elementTypeOf(bias) != element)
      return ctx.error() << "the bias must be [" << qWidth + kWidth + vWidth
                         << "] of Q's type, with 3-D K and V; got "
                         << bias.getType();
    auto addPart = [&](Value x, int64_t offset, int64_t width) -> Value {
      Value part = tensor::ExtractSliceOp::create(
          b, loc, bias, ArrayRef<OpFoldResult>{b.getIndexAttr(offset)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(width)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
      return buildElementwise(ctx, {x, part}, element,
                              [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                                return arith::AddFOp::create(nb, nl, a[0], a[1]);
                              });
    };
    q = addPart(q, 0, qWidth);
    k = addPart(k, qWidth, kWidth);
    v = addPart(v, qWidth + kWidth, vWidth);
    if (!q || !k || !v)
      return failure();
  }
  q = splitHeads(b, loc, q, heads);
  if (!split) {
    k = splitHeads(b, loc, k, heads);
    v = splitHeads(b, loc, v, heads);
  }
  Value presentKey = k, presentValue = v;
  int64_t past = 0;
  if (ctx.hasInput(6) != ctx.hasInput(7))
    return ctx.error() << "past_key and past_value go together";
  if (ctx.hasInput(6)) {
    Value pastKey = ctx.input(6), pastValue = ctx.input(7);
    if (!pastKey || !pastValue)
      return failure();
    ArrayRef<int64_t> ps = shapeOf(pastKey);
    if (ps.size() != 4 || ps[0] != batch || ps[1] != heads ||
        ps[3] != shapeOf(k)[3] || shapeOf(pastValue).size() != 4 ||
        shapeOf(pastValue)[2] != ps[2] || shapeOf(pastValue)[3] != shapeOf(v)[3] ||
        !staticFloat(pastKey) || !staticFloat(pastValue))
      return ctx.error() << "past_key " << pastKey.getType() << " and past_value "
                         << pastValue.getType() << " must be [B, N, P, H] of "
                         << "the query's type";
    past = ps[2];
    presentKey = concatSeq(b, loc, pastKey, k);
    presentValue = concatSeq(b, loc, pastValue, v);
  }
  int64_t keys = shapeOf(presentKey)[2];
  float filter = ctx.floatAttr("mask_filter_value", -10000.0f);
  Value mask = ctx.hasInput(4) ? ctx.input(4) : Value();
  Value extra = ctx.hasInput(5) ? ctx.input(5) : Value();
  if ((ctx.hasInput(4) && !mask) || (ctx.hasInput(5) && !extra))
    return failure();
  bool maskEnds = false;
  if (mask) {
    ArrayRef<int64_t> ms = shapeOf(mask);
    if (!elementTypeOf(mask).isInteger(32))
      return ctx.error() << "key_padding_mask must be int32, got " << mask.getType();
    if (ms == ArrayRef<int64_t>({batch}))
      maskEnds = true;
    else if (ms != ArrayRef<int64_t>({batch, keys}))
      return ctx.error() << "key_padding_mask " << mask.getType()
                         << " must be [B] (end positions) or [B, " << keys << "]";
  }
  if (extra && failed(checkAttentionBias(ctx, extra, {batch, heads, seq, keys})))
    return failure();
  Value bias;
  if (mask || extra)
    bias = buildIndexed(
        b, loc, {batch, extra ? heads : 1, seq, keys}, element,
        [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
          Value zero = scalarConstant(nb, nl, element, 0);
          Value total = zero;
          if (mask) {
            Value keep;
            if (maskEnds) {
              Value end = arith::IndexCastOp::create(
                  nb, nl, nb.getIndexType(),
                  tensor::ExtractOp::create(nb, nl, mask, ValueRange{ivs[0]}));
              keep = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt,
                                           ivs[3], end);
            } else {
              Value m = tensor::ExtractOp::create(nb, nl, mask,
                                                  ValueRange{ivs[0], ivs[3]});
              keep = arith::CmpIOp::create(
                  nb, nl, arith::CmpIPredicate::ne, m,
                  arith::ConstantOp::create(nb, nl, nb.getI32IntegerAttr(0)));
            }
            total = arith::SelectOp::create(nb, nl, keep, zero,
                                            scalarConstant(nb, nl, element, filter));
          }
          if (extra)
            total = arith::AddFOp::create(nb, nl, total,
                                          readAttentionBias(nb, nl, extra, ivs));
          return total;
        });
  double scale = contribScale(ctx, qWidth / heads);
  auto resultType = RankedTensorType::get(
      {batch, heads, seq, shapeOf(presentValue)[3]}, element);
  auto op = AttentionOp::create(b, loc, resultType, q, presentKey, presentValue,
                                bias, b.getF64FloatAttr(scale),
                                b.getF64FloatAttr(0.0), /*causal_offset=*/nullptr,
                                /*softmax_type=*/nullptr);
  if (ctx.intAttr("unidirectional", 0) != 0)
    op.setCausalOffset(past);
  return ctx.setOutputs({mergeHeads(b, loc, op.getResult()), presentKey,
                         presentValue});
}

LogicalResult importRotaryEmbedding(NodeContext &ctx) {
  return importRotary(ctx, {0, 1, 2, 3, false});
}

/// com.microsoft RotaryEmbedding: (input, position_ids, cos_cache,
/// sin_cache), the same rotation (its `scale` is unused by onnxruntime's
/// kernels; packed batching is refused).
LogicalResult importContribRotaryEmbedding(NodeContext &ctx) {
  if (ctx.intAttr("is_packed_batching", 0) != 0)
    return ctx.error() << "is_packed_batching is not supported";
  return importRotary(ctx, {0, 2, 3, 1, true});
}

} // namespace

void registerAttentionOps(OpRegistry &registry) {
  registry.on("Attention", 23, importAttention);
  registry.on("RotaryEmbedding", 23, importRotaryEmbedding);
  registry.on("com.microsoft.RotaryEmbedding", 1, importContribRotaryEmbedding);
  registry.on("com.microsoft.Attention", 1, importContribAttention);
  registry.on("com.microsoft.GroupQueryAttention", 1, importGroupQueryAttention);
  registry.on("com.microsoft.MultiHeadAttention", 1, importMultiHeadAttention);
}

} // namespace kiln::onnx
