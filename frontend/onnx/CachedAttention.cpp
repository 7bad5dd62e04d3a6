//===- CachedAttention.cpp - GroupQueryAttention over a held cache --------===//
//
// onnxruntime-genai's decoders run each layer's attention as one
// com.microsoft GroupQueryAttention node that takes the past keys and
// values and returns the present ones. Compiled for generation
// (DecoderCache.h), the node becomes the write of the new keys and values
// into the cache the runtime holds, at the cached count, and one
// kiln.attention over the cache's first past + new positions, causal from
// the end: the same shape of IR as a checkpoint's decode.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/DecoderCache.h"

#include "dialects/kiln/KilnDialect.h"
#include "dialects/kiln/TensorBuilders.h"
#include "frontend/onnx/ImportContext.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;

namespace kiln::onnx {
namespace {

/// [B, S, H*D] -> [B, H, S, D], S symbolic or not.
Value splitHeads(OpBuilder &b, Location loc, Value x, int64_t heads,
                 Value seq) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t batch = type.getDimSize(0), width = type.getDimSize(2) / heads;
  OpFoldResult s = type.isDynamicDim(1) ? OpFoldResult(seq)
                                        : OpFoldResult(b.getIndexAttr(
                                              type.getDimSize(1)));
  auto split = RankedTensorType::get({batch, type.getDimSize(1), heads, width},
                                     type.getElementType());
  Value r = tensor::ExpandShapeOp::create(
      b, loc, split, x, SmallVector<ReassociationIndices>{{0}, {1}, {2, 3}},
      SmallVector<OpFoldResult>{b.getIndexAttr(batch), s,
                                b.getIndexAttr(heads), b.getIndexAttr(width)});
  SmallVector<Value> sizes;
  if (type.isDynamicDim(1))
    sizes.push_back(seq);
  Value init = tensor::EmptyOp::create(
      b, loc, {batch, heads, type.getDimSize(1), width}, type.getElementType(),
      sizes);
  return linalg::TransposeOp::create(b, loc, r, init,
                                     ArrayRef<int64_t>{0, 2, 1, 3})
      .getResult()[0];
}

/// [B, H, S, D] -> [B, S, H*D].
Value mergeHeads(OpBuilder &b, Location loc, Value x, Value seq) {
  auto type = cast<RankedTensorType>(x.getType());
  ArrayRef<int64_t> s = type.getShape();
  SmallVector<Value> sizes;
  if (type.isDynamicDim(2))
    sizes.push_back(seq);
  Value init = tensor::EmptyOp::create(b, loc, {s[0], s[2], s[1], s[3]},
                                       type.getElementType(), sizes);
  Value y = linalg::TransposeOp::create(b, loc, x, init,
                                        ArrayRef<int64_t>{0, 2, 1, 3})
                .getResult()[0];
  return tensor::CollapseShapeOp::create(
      b, loc, y, SmallVector<ReassociationIndices>{{0}, {1}, {2, 3}});
}

} // namespace

LogicalResult rotateGroupQueryAttention(
    NodeContext &ctx, Value &q, Value &k, ValueRange seqSizes,
    llvm::function_ref<Value(OpBuilder &, Location, Value)> start) {
  if (ctx.intAttr("do_rotary", 0) == 0)
    return success();
  auto qType = cast<RankedTensorType>(q.getType());
  int64_t batch = qType.getDimSize(0), seq = qType.getDimSize(2);
  int64_t width = qType.getDimSize(3);
  Type element = qType.getElementType();
  Value cos = ctx.hasInput(7) ? ctx.input(7) : Value();
  Value sin = ctx.hasInput(8) ? ctx.input(8) : Value();
  if (!cos || !sin)
    return ctx.error() << "do_rotary needs cos_cache and sin_cache";
  ArrayRef<int64_t> cs = shapeOf(cos);
  if (cs.size() != 2 || shapeOf(sin) != cs || cs[1] * 2 > width ||
      elementTypeOf(cos) != element || elementTypeOf(sin) != element)
    return ctx.error() << "cos_cache and sin_cache must be [positions, "
                          "rotary dim / 2] of the query's type, got "
                       << cos.getType() << " and " << sin.getType();
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  // Row b's token i at start(b) + i, within the table.
  auto gather = [&](Value cache) {
    return buildIndexed(
        b, loc, {batch, seq, cs[1]}, element,
        [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
          Value at = arith::AddIOp::create(nb, nl, start(nb, nl, ivs[0]),
                                           ivs[1]);
          at = arith::MinSIOp::create(nb, nl, at,
                                      indexConstant(nb, nl, cs[0] - 1));
          return tensor::ExtractOp::create(nb, nl, cache,
                                           ValueRange{at, ivs[2]});
        },
        seqSizes);
  };
  Value cosAt = gather(cos), sinAt = gather(sin);
  bool interleaved = ctx.intAttr("rotary_interleaved", 0) != 0;
  auto rotate = [&](Value x) {
    auto op = RotaryEmbeddingOp::create(b, loc, x.getType(), x, cosAt, sinAt);
    op.setInterleaved(interleaved);
    return op.getResult();
  };
  q = rotate(q);
  k = rotate(k);
  return success();
}

FailureOr<CachedAttention>
importCachedGroupQueryAttention(NodeContext &ctx, const CacheStep &step) {
  const kiln_onnx::NodeProto &node = ctx.getNode();
  for (int i = 9; i < ctx.numInputs(); ++i)
    if (ctx.hasInput(i))
      return ctx.error() << "input #" << i << " ('" << node.input(i)
                         << "') is not supported";
  if (ctx.intAttr("smooth_softmax", 0) != 0 ||
      ctx.intAttr("local_window_size", -1) > 0 ||
      ctx.floatAttr("softcap", 0.0f) != 0.0f)
    return ctx.error() << "smooth_softmax, local_window_size and softcap "
                          "are not supported when the decoder is compiled "
                          "for generation";
  if (node.output_size() > 3 && !node.output(3).empty())
    return ctx.error() << "the qk output is not supported";
  int64_t heads = ctx.intAttr("num_heads", 0);
  int64_t kvHeads = ctx.intAttr("kv_num_heads", 0);
  Value query = ctx.input(0);
  if (!query)
    return failure();
  auto qType = cast<RankedTensorType>(query.getType());
  Type element = qType.getElementType();
  auto stateType = cast<RankedTensorType>(step.keyState.getType());
  bool packed = !ctx.hasInput(1) && !ctx.hasInput(2);
  int64_t parts = packed ? heads + 2 * kvHeads : heads;
  if (!isa<FloatType>(element) || qType.getRank() != 3 || heads <= 0 ||
      kvHeads <= 0 || heads % kvHeads || qType.isDynamicDim(2) ||
      qType.getDimSize(2) % parts ||
      qType.getDimSize(0) != stateType.getDimSize(0) ||
      kvHeads != stateType.getDimSize(1) ||
      qType.getDimSize(2) / parts != stateType.getDimSize(3) ||
      element != stateType.getElementType())
    return ctx.error() << "GroupQueryAttention's query " << qType << " ("
                       << heads << " heads over " << kvHeads
                       << " key/value heads) does not fit its cache "
                       << stateType;
  int64_t width = qType.getDimSize(2) / parts;
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  Value q = query, k, v;
  if (packed) {
    // Columns of the packed QKV: q, then k, then v.
    auto columns = [&](int64_t offset, int64_t count) -> Value {
      SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, query);
      sizes[2] = b.getIndexAttr(count);
      return tensor::ExtractSliceOp::create(
          b, loc, query,
          SmallVector<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(0),
                                    b.getIndexAttr(offset)},
          sizes, SmallVector<OpFoldResult>(3, b.getIndexAttr(1)));
    };
    q = columns(0, heads * width);
    k = columns(heads * width, kvHeads * width);
    v = columns((heads + kvHeads) * width, kvHeads * width);
  } else {
    k = ctx.input(1);
    v = ctx.input(2);
    if (!k || !v)
      return failure();
  }
  q = splitHeads(b, loc, q, heads, step.seq);
  k = splitHeads(b, loc, k, kvHeads, step.seq);
  v = splitHeads(b, loc, v, kvHeads, step.seq);
  auto seqShape = cast<RankedTensorType>(q.getType()).getDimSize(2);
  SmallVector<Value> seqSizes;
  if (ShapedType::isDynamic(seqShape))
    seqSizes.push_back(step.seq);

  // The new tokens sit at past + i (one sequence per row, no padding).
  if (failed(rotateGroupQueryAttention(
          ctx, q, k, seqSizes,
          [&](OpBuilder &, Location, Value) { return step.past; })))
    return failure();

  // Written at the cached count; read, with the cached positions, in place.
  CachedAttention out;
  SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), b.getIndexAttr(0),
                                       step.past, b.getIndexAttr(0)};
  SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
  SmallVector<OpFoldResult> zeros(4, b.getIndexAttr(0));
  auto write = [&](Value fresh, Value state, Value &written) -> Value {
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, fresh);
    written = tensor::InsertSliceOp::create(b, loc, fresh, state, offsets,
                                            sizes, strides);
    if (step.prefill)
      return fresh;
    sizes[2] = step.total;
    return tensor::ExtractSliceOp::create(b, loc, written, zeros, sizes,
                                          strides);
  };
  Value keys = write(k, step.keyState, out.key);
  Value values = write(v, step.valueState, out.value);
  float scale = ctx.floatAttr("scale", 0.0f);
  double s = scale != 0.0f ? scale : 1.0 / std::sqrt(double(width));
  auto attention = AttentionOp::create(
      b, loc, q.getType(), q, keys, values, Value(), b.getF64FloatAttr(s),
      b.getF64FloatAttr(0.0), b.getI64IntegerAttr(0), TypeAttr(),
      b.getUnitAttr());
  out.output = mergeHeads(b, loc, attention.getResult(), step.seq);
  return out;
}

} // namespace kiln::onnx
