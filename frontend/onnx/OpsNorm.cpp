//===- OpsNorm.cpp - ONNX normalizations and softmax relatives ------------===//
//
// Each is built from reductions (buildReduce) over the normalized axes and
// elementwise ops that broadcast the reduced statistics back; the generic
// fusion of the graph pipeline merges the elementwise parts.
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/Decompositions.h"
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <tuple>

using namespace mlir;

namespace kiln::onnx {
namespace {

/// `reduced` marks the dims from `axis` on (softmax family) or listed.
SmallVector<bool> fromAxis(int64_t rank, int64_t axis) {
  SmallVector<bool> reduced(rank, false);
  for (int64_t d = axis; d < rank; ++d)
    reduced[d] = true;
  return reduced;
}

/// The reduced result reshaped so that it broadcasts against the input.
Value keepDims(NodeContext &ctx, Value reducedValue, RankedTensorType type,
               ArrayRef<bool> reduced) {
  return keepReducedDims(ctx.b(), ctx.getLoc(), reducedValue, type.getShape(),
                         reduced);
}

Value cst(OpBuilder &b, Location loc, Type type, double v) {
  return scalarConstant(b, loc, type, v);
}

/// mean and 1/sqrt(var + epsilon) over `reduced`, both kept-dims shaped.
std::pair<Value, Value> moments(NodeContext &ctx, Value x, ArrayRef<bool> reduced,
                                double epsilon) {
  return buildMoments(ctx.b(), ctx.getLoc(), x, reduced, epsilon);
}

bool checkFloat(NodeContext &ctx, const char *op) {
  if (!isa<FloatType>(ctx.inputType(0).getElementType())) {
    ctx.error() << op << " takes float inputs, got " << ctx.inputType(0);
    return false;
  }
  return true;
}

/// Whether a norm's scale or bias `param` has the input's element type and
/// broadcasts to the normalized dims (from `axis`); reports on the node.
bool checkNormParam(NodeContext &ctx, Value param, RankedTensorType input,
                    int64_t axis, const char *name) {
  auto type = cast<RankedTensorType>(param.getType());
  ArrayRef<int64_t> normalized = input.getShape().drop_front(axis);
  bool fits = type.getElementType() == input.getElementType() &&
              type.getRank() <= static_cast<int64_t>(normalized.size());
  for (int64_t i = 0; fits && i < type.getRank(); ++i) {
    int64_t dim = type.getShape()[i];
    fits = dim == 1 || dim == normalized[normalized.size() - type.getRank() + i];
  }
  if (!fits)
    ctx.error() << name << " " << type << " must have the element type of X "
                << input << " and broadcast to its normalized dims";
  return fits;
}

/// LogSoftmax and the softmax-family ops over `reduced`.
Value logSoftmax(NodeContext &ctx, Value x, ArrayRef<bool> reduced) {
  auto type = cast<RankedTensorType>(x.getType());
  Type element = type.getElementType();
  Value maxR = buildReduce(ctx, x, reduced, ReduceKind::Max);
  Value sum = buildReduce(ctx, x, reduced, ReduceKind::Sum, maxR);
  Value max = keepDims(ctx, maxR, type, reduced);
  Value logSum = keepDims(ctx, sum, type, reduced);
  return buildElementwise(
      ctx, {x, max, logSum}, element,
      [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        return arith::SubFOp::create(b, l, arith::SubFOp::create(b, l, a[0], a[1]),
                                     math::LogOp::create(b, l, a[2]));
      });
}

LogicalResult importLogSoftmax(NodeContext &ctx, bool flattenSemantics) {
  Value x = ctx.input(0);
  if (!x || !checkFloat(ctx, "LogSoftmax"))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", flattenSemantics ? 1 : -1),
                            type.getRank());
  if (!axis)
    return failure();
  SmallVector<bool> reduced(type.getRank(), false);
  if (flattenSemantics)
    reduced = fromAxis(type.getRank(), *axis);
  else
    reduced[*axis] = true;
  Value out = logSoftmax(ctx, x, reduced);
  return out ? ctx.setOutputs(out) : failure();
}

LogicalResult importHardmax(NodeContext &ctx, bool flattenSemantics) {
  Value x = ctx.input(0);
  if (!x || !checkFloat(ctx, "Hardmax"))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", flattenSemantics ? 1 : -1),
                            type.getRank());
  if (!axis)
    return failure();
  // Flattened semantics: treat dims from axis on as one row.
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  Value data = x;
  int64_t rowAxis = *axis;
  if (flattenSemantics) {
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < type.getRank(); ++d)
      (d < *axis ? outer : inner) *= type.getShape()[d];
    data = buildReshape(b, loc, x, {outer, inner});
    rowAxis = 1;
  }
  auto dataType = cast<RankedTensorType>(data.getType());
  // The first index of the maximum: a max reduction, then the smallest index
  // holding it (a min reduction over "index if equal else size").
  SmallVector<bool> reduced(dataType.getRank(), false);
  reduced[rowAxis] = true;
  Value max = keepDims(ctx, buildReduce(ctx, data, reduced, ReduceKind::Max),
                       dataType, reduced);
  int64_t size = dataType.getShape()[rowAxis];
  Type i64 = b.getI64Type();
  SmallVector<int64_t> shape(dataType.getShape());
  Value positions = buildElementwise(
      ctx, {data, max}, i64, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value i = arith::IndexCastOp::create(
            nb, l, i64, linalg::IndexOp::create(nb, l, rowAxis));
        Value eq = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ, a[0], a[1]);
        return arith::SelectOp::create(nb, l, eq, i, cst(nb, l, i64, size));
      });
  Value first = keepDims(ctx, buildReduce(ctx, positions, reduced, ReduceKind::Min),
                         cast<RankedTensorType>(positions.getType()), reduced);
  Value out = buildElementwise(
      ctx, {positions, first}, dataType.getElementType(),
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value i = arith::IndexCastOp::create(
            nb, l, i64, linalg::IndexOp::create(nb, l, rowAxis));
        Value hit = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, i, a[1]);
        return arith::SelectOp::create(nb, l, hit,
                                       cst(nb, l, dataType.getElementType(), 1),
                                       cst(nb, l, dataType.getElementType(), 0));
      });
  if (!out)
    return failure();
  return ctx.setOutputs(buildReshape(b, loc, out, type.getShape()));
}

/// Whether output `i` of the node is requested (listed with a name).
bool wantsOutput(NodeContext &ctx, int i) {
  return i < ctx.getNode().output_size() && !ctx.getNode().output(i).empty();
}

/// The dims a norm normalizes (from `axis` on) must be static; the ones
/// before may be symbolic rows.
LogicalResult checkStaticNormalizedDims(NodeContext &ctx,
                                        RankedTensorType type, int64_t axis) {
  for (int64_t d = axis; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      return ctx.error() << "input " << type << " has a symbolic dim among "
                         << "the normalized dims (from axis " << axis
                         << " on); only the dims before the axis may be "
                            "symbolic: give it a value with --dim NAME=VALUE";
  return success();
}

/// LayerNormalization (17) as kiln.layer_norm; when the optional Mean and
/// InvStdDev outputs are requested, the op is decomposed here for them.
LogicalResult importLayerNorm(NodeContext &ctx) {
  Value x = ctx.input(0), scale = ctx.input(1);
  if (!x || !scale || !checkFloat(ctx, "LayerNormalization"))
    return failure();
  Value bias = ctx.hasInput(2) ? ctx.input(2) : Value();
  if (ctx.hasInput(2) && !bias)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", -1), type.getRank());
  if (!axis)
    return failure();
  if (ctx.hasAttr("stash_type") && ctx.intAttr("stash_type", 1) != 1)
    return ctx.error() << "stash_type other than 1 (float) is not supported";
  if (failed(checkStaticNormalizedDims(ctx, type, *axis)))
    return failure();
  if (!checkNormParam(ctx, scale, type, *axis, "Scale") ||
      (bias && !checkNormParam(ctx, bias, type, *axis, "B")))
    return failure();
  auto op = LayerNormOp::create(ctx.b(), ctx.getLoc(), type, x, scale, bias,
                                ctx.b().getI64IntegerAttr(*axis),
                                ctx.b().getF32FloatAttr(ctx.floatAttr("epsilon", 1e-5f)));
  if (!wantsOutput(ctx, 1) && !wantsOutput(ctx, 2))
    return ctx.setOutputs(op.getResult());
  LayerNormParts parts = decomposeLayerNorm(ctx.b(), op);
  op.erase();
  return ctx.setOutputs({parts.result, parts.mean, parts.invStdDev});
}

/// RMSNormalization (23) as kiln.rms_norm.
LogicalResult importRMSNorm(NodeContext &ctx) {
  Value x = ctx.input(0), scale = ctx.input(1);
  if (!x || !scale || !checkFloat(ctx, "RMSNormalization"))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", -1), type.getRank());
  if (!axis || !checkNormParam(ctx, scale, type, *axis, "scale"))
    return failure();
  if (ctx.hasAttr("stash_type") && ctx.intAttr("stash_type", 1) != 1)
    return ctx.error() << "stash_type other than 1 (float) is not supported";
  if (failed(checkStaticNormalizedDims(ctx, type, *axis)))
    return failure();
  return ctx.setOutputs(RmsNormOp::create(
                            ctx.b(), ctx.getLoc(), type, x, scale,
                            ctx.b().getI64IntegerAttr(*axis),
                            ctx.b().getF32FloatAttr(ctx.floatAttr("epsilon", 1e-5f)))
                            .getResult());
}

/// The sum `input + skip (+ bias)` of onnxruntime's Skip*Normalization ops,
/// checked: input and skip [..., hidden] of one type (skip may also be
/// [hidden] or broadcast), gamma, beta and bias [hidden].
FailureOr<Value> skipSum(NodeContext &ctx, const char *op, int biasInput) {
  Value x = ctx.input(0), skip = ctx.input(1);
  if (!x || !skip || !checkFloat(ctx, op))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (type.getRank() < 2 || type.isDynamicDim(type.getRank() - 1))
    return ctx.error() << op << " takes an input of rank 2 or 3 with a "
                       << "static hidden size, got " << type;
  SmallVector<Value> terms = {x, skip};
  if (ctx.hasInput(biasInput)) {
    Value bias = ctx.input(biasInput);
    if (!bias || !checkNormParam(ctx, bias, type, type.getRank() - 1, "bias"))
      return failure();
    terms.push_back(bias);
  }
  Value sum = buildElementwise(
      ctx, terms, type.getElementType(),
      [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        Value s = arith::AddFOp::create(b, l, a[0], a[1]);
        return a.size() > 2 ? arith::AddFOp::create(b, l, s, a[2]) : s;
      });
  if (!sum)
    return failure();
  if (cast<RankedTensorType>(sum.getType()).getShape() != type.getShape())
    return ctx.error() << "skip " << ctx.inputType(1)
                       << " must broadcast to the input " << type;
  return sum;
}

/// com.microsoft SkipLayerNormalization: s = input + skip (+ bias), then
/// LayerNorm(s) * gamma (+ beta) over the last dim (epsilon 1e-12 by
/// default, as onnxruntime's); outputs the result, the mean and inverse
/// standard deviation when asked, and s.
LogicalResult importSkipLayerNorm(NodeContext &ctx) {
  FailureOr<Value> sum = skipSum(ctx, "SkipLayerNormalization", 4);
  Value gamma = ctx.input(2);
  if (failed(sum) || !gamma)
    return failure();
  Value beta = ctx.hasInput(3) ? ctx.input(3) : Value();
  if (ctx.hasInput(3) && !beta)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t axis = type.getRank() - 1;
  if (!checkNormParam(ctx, gamma, type, axis, "gamma") ||
      (beta && !checkNormParam(ctx, beta, type, axis, "beta")))
    return failure();
  auto op = LayerNormOp::create(
      ctx.b(), ctx.getLoc(), type, *sum, gamma, beta,
      ctx.b().getI64IntegerAttr(axis),
      ctx.b().getF32FloatAttr(ctx.floatAttr("epsilon", 1e-12f)));
  if (!wantsOutput(ctx, 1) && !wantsOutput(ctx, 2))
    return ctx.setOutputs({op.getResult(), Value(), Value(), *sum});
  LayerNormParts parts = decomposeLayerNorm(ctx.b(), op);
  op.erase();
  return ctx.setOutputs({parts.result, parts.mean, parts.invStdDev, *sum});
}

/// com.microsoft SkipSimplifiedLayerNormalization: s = input + skip
/// (+ bias), then RMSNorm(s) * gamma over the last dim (epsilon 1e-12 by
/// default); outputs the result and s (the mean and inverse standard
/// deviation outputs are for training).
LogicalResult importSkipSimplifiedLayerNorm(NodeContext &ctx) {
  FailureOr<Value> sum = skipSum(ctx, "SkipSimplifiedLayerNormalization", 3);
  Value gamma = ctx.input(2);
  if (failed(sum) || !gamma)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t axis = type.getRank() - 1;
  if (!checkNormParam(ctx, gamma, type, axis, "gamma"))
    return failure();
  if (wantsOutput(ctx, 1) || wantsOutput(ctx, 2))
    return ctx.error() << "the mean and inv_std_var outputs (for training) "
                          "are not supported";
  Value y = RmsNormOp::create(
                ctx.b(), ctx.getLoc(), type, *sum, gamma,
                ctx.b().getI64IntegerAttr(axis),
                ctx.b().getF32FloatAttr(ctx.floatAttr("epsilon", 1e-12f)))
                .getResult();
  return ctx.setOutputs({y, Value(), Value(), *sum});
}

/// com.microsoft EmbedLayerNormalization (BERT after onnxruntime's
/// optimizer): e = word[input_ids] + position[position_ids, else 0..S-1]
/// (+ segment[segment_ids]), then LayerNorm(e) * gamma + beta (epsilon
/// 1e-12 by default); outputs the result, mask_index (each batch's count
/// of ones in `mask`, zeros without one, as onnxruntime gives) and e. Ids
/// past a table are clamped into it.
LogicalResult importEmbedLayerNorm(NodeContext &ctx) {
  Value ids = ctx.input(0), word = ctx.input(2), position = ctx.input(3),
        gamma = ctx.input(5), beta = ctx.input(6);
  if (!ids || !word || !position || !gamma || !beta)
    return failure();
  Value segmentIds = ctx.hasInput(1) ? ctx.input(1) : Value();
  Value segment = ctx.hasInput(4) ? ctx.input(4) : Value();
  Value mask = ctx.hasInput(7) ? ctx.input(7) : Value();
  Value positionIds = ctx.hasInput(8) ? ctx.input(8) : Value();
  if ((ctx.hasInput(1) && !segmentIds) || (ctx.hasInput(4) && !segment) ||
      (ctx.hasInput(7) && !mask) || (ctx.hasInput(8) && !positionIds))
    return failure();
  if (bool(segmentIds) != bool(segment))
    return ctx.error() << "segment_ids and segment_embedding go together";
  auto idsType = cast<RankedTensorType>(ids.getType());
  auto wordType = cast<RankedTensorType>(word.getType());
  Type element = wordType.getElementType();
  if (idsType.getRank() != 2 || !idsType.hasStaticShape() ||
      !idsType.getElementType().isInteger(32) || wordType.getRank() != 2 ||
      !isa<FloatType>(element) || !wordType.hasStaticShape())
    return ctx.error() << "EmbedLayerNormalization takes int32 input_ids "
                          "[B, S] and a float word_embedding [V, H], got "
                       << ids.getType() << " and " << word.getType();
  int64_t batch = idsType.getDimSize(0), seq = idsType.getDimSize(1),
          hidden = wordType.getDimSize(1);
  for (auto [name, value, rank] :
       {std::tuple{"segment_ids", segmentIds, 2}, std::tuple{"mask", mask, 2},
        std::tuple{"position_ids", positionIds, 2}})
    if (value) {
      auto t = cast<RankedTensorType>(value.getType());
      bool fits = t.getElementType().isInteger(32) &&
                  (t.getShape() == idsType.getShape() ||
                   (value == positionIds && t.getShape() == ArrayRef<int64_t>({1, seq})));
      if (!fits)
        return ctx.error() << name << " must be int32 shaped like input_ids "
                           << idsType << ", got " << t;
    }
  for (auto [name, table] : {std::pair{"position_embedding", position},
                             std::pair{"segment_embedding", segment}})
    if (table) {
      auto t = cast<RankedTensorType>(table.getType());
      if (t.getRank() != 2 || !t.hasStaticShape() || t.getDimSize(1) != hidden ||
          t.getElementType() != element)
        return ctx.error() << name << " must be [rows, " << hidden
                           << "] of the word embedding's type, got " << t;
    }
  RankedTensorType outType = RankedTensorType::get({batch, seq, hidden}, element);
  if (!checkNormParam(ctx, gamma, outType, 2, "gamma") ||
      !checkNormParam(ctx, beta, outType, 2, "beta"))
    return failure();
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  auto row = [&](OpBuilder &nb, Location nl, Value table, Value index) -> Value {
    int64_t rows = cast<RankedTensorType>(table.getType()).getDimSize(0);
    Value at = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), index);
    at = arith::MaxSIOp::create(nb, nl, at, indexConstant(nb, nl, 0));
    return arith::MinSIOp::create(nb, nl, at, indexConstant(nb, nl, rows - 1));
  };
  Value sum = buildIndexed(
      b, loc, {batch, seq, hidden}, element,
      [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
        Value id = tensor::ExtractOp::create(nb, nl, ids, ValueRange{ivs[0], ivs[1]});
        Value e = tensor::ExtractOp::create(nb, nl, word,
                                            ValueRange{row(nb, nl, word, id), ivs[2]});
        Value p = ivs[1];
        if (positionIds) {
          bool shared = cast<RankedTensorType>(positionIds.getType()).getDimSize(0) == 1;
          p = row(nb, nl, position,
                  tensor::ExtractOp::create(
                      nb, nl, positionIds,
                      ValueRange{shared ? indexConstant(nb, nl, 0) : ivs[0], ivs[1]}));
        } else {
          int64_t rows = cast<RankedTensorType>(position.getType()).getDimSize(0);
          p = arith::MinSIOp::create(nb, nl, p, indexConstant(nb, nl, rows - 1));
        }
        e = arith::AddFOp::create(
            nb, nl, e, tensor::ExtractOp::create(nb, nl, position, ValueRange{p, ivs[2]}));
        if (segment) {
          Value s = tensor::ExtractOp::create(nb, nl, segmentIds,
                                              ValueRange{ivs[0], ivs[1]});
          e = arith::AddFOp::create(
              nb, nl, e,
              tensor::ExtractOp::create(nb, nl, segment,
                                        ValueRange{row(nb, nl, segment, s), ivs[2]}));
        }
        return e;
      });
  Value y = LayerNormOp::create(b, loc, outType, sum, gamma, beta,
                                b.getI64IntegerAttr(2),
                                b.getF32FloatAttr(ctx.floatAttr("epsilon", 1e-12f)))
                .getResult();
  Type i32 = b.getI32Type();
  Value maskIndex;
  if (mask) {
    SmallVector<bool> reduced = {false, true};
    maskIndex = buildReduce(ctx, mask, reduced, ReduceKind::Sum);
  } else {
    maskIndex = buildIndexed(b, loc, {batch}, i32,
                             [&](OpBuilder &nb, Location nl, ValueRange) -> Value {
                               return arith::ConstantOp::create(
                                   nb, nl, nb.getI32IntegerAttr(0));
                             });
  }
  return ctx.setOutputs({y, maskIndex, sum});
}

/// MeanVarianceNormalization: over `axes` (default 0, 2, 3), epsilon 1e-9.
LogicalResult importMVN(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x || !checkFloat(ctx, "MeanVarianceNormalization"))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  std::vector<int64_t> axes = ctx.intsAttr("axes").value_or(std::vector<int64_t>{0, 2, 3});
  SmallVector<bool> reduced(type.getRank(), false);
  for (int64_t a : axes) {
    auto axis = normalizeAxis(ctx, a, type.getRank());
    if (!axis)
      return failure();
    reduced[*axis] = true;
  }
  auto [mean, invStd] = moments(ctx, x, reduced, 1e-9);
  Value y = buildElementwise(
      ctx, {x, mean, invStd}, type.getElementType(),
      [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        return arith::MulFOp::create(b, l, arith::SubFOp::create(b, l, a[0], a[1]),
                                     a[2]);
      });
  return y ? ctx.setOutputs(y) : failure();
}

/// scale and bias of shape [C] as [C, 1, ..., 1] for an NC... input.
Value perChannel(NodeContext &ctx, Value v, int64_t rank) {
  auto t = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape = {t.getNumElements()};
  for (int64_t d = 2; d < rank; ++d)
    shape.push_back(1);
  return buildReshape(ctx.b(), ctx.getLoc(), v, shape);
}

LogicalResult importInstanceNorm(NodeContext &ctx) {
  Value x = ctx.input(0), scale = ctx.input(1), bias = ctx.input(2);
  if (!x || !scale || !bias || !checkFloat(ctx, "InstanceNormalization"))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (type.getRank() < 3)
    return ctx.error() << "InstanceNormalization needs an N x C x D... input";
  SmallVector<bool> reduced = fromAxis(type.getRank(), 2);
  auto [mean, invStd] = moments(ctx, x, reduced, ctx.floatAttr("epsilon", 1e-5f));
  Value y = buildElementwise(
      ctx, {x, mean, invStd, perChannel(ctx, scale, type.getRank()),
            perChannel(ctx, bias, type.getRank())},
      type.getElementType(), [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        Value n = arith::MulFOp::create(b, l, arith::SubFOp::create(b, l, a[0], a[1]),
                                        a[2]);
        return arith::AddFOp::create(b, l, arith::MulFOp::create(b, l, n, a[3]), a[4]);
      });
  return y ? ctx.setOutputs(y) : failure();
}

/// GroupNormalization: the channels of X [N, C, ...] in `num_groups`
/// groups, each normalized over its channels and positions, then scaled
/// and shifted per channel (21: scale and bias [C]) or per group (18:
/// [num_groups]). The statistics are f32 for narrower types (stash_type 1,
/// buildMoments).
LogicalResult importGroupNorm(NodeContext &ctx) {
  Value x = ctx.input(0), scale = ctx.input(1), bias = ctx.input(2);
  if (!x || !scale || !bias || !checkFloat(ctx, "GroupNormalization"))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (type.getRank() < 3 || !type.hasStaticShape())
    return ctx.error() << "GroupNormalization needs a static N x C x D... "
                          "input, got "
                       << type;
  int64_t groups = ctx.intAttr("num_groups", 0);
  int64_t channels = type.getDimSize(1);
  if (groups < 1 || channels % groups)
    return ctx.error() << "num_groups " << groups << " does not divide the "
                       << channels << " channels";
  bool perGroup = ctx.getOpset() < 21;
  int64_t params = perGroup ? groups : channels;
  for (int i : {1, 2})
    if (ctx.inputType(i).getNumElements() != params ||
        ctx.inputType(i).getElementType() != type.getElementType())
      return ctx.error() << (i == 1 ? "scale" : "bias") << " must hold "
                         << params << " values of the input's type, got "
                         << ctx.inputType(i);
  int64_t rest = type.getNumElements() / (type.getDimSize(0) * channels);
  SmallVector<int64_t> grouped = {type.getDimSize(0), groups,
                                  channels / groups, rest};
  Value g = buildReshape(ctx.b(), ctx.getLoc(), x, grouped);
  auto [mean, invStd] =
      moments(ctx, g, {false, false, true, true}, ctx.floatAttr("epsilon", 1e-5f));
  // The parameters per (group, channel in group): [G, C/G, 1].
  auto asGrouped = [&](Value v) {
    if (perGroup)
      return buildReshape(ctx.b(), ctx.getLoc(), v, {groups, 1, 1});
    return buildReshape(ctx.b(), ctx.getLoc(), v, {groups, channels / groups, 1});
  };
  Value y = buildElementwise(
      ctx, {g, mean, invStd, asGrouped(scale), asGrouped(bias)},
      type.getElementType(), [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        Value n = arith::MulFOp::create(b, l, arith::SubFOp::create(b, l, a[0], a[1]),
                                        a[2]);
        return arith::AddFOp::create(b, l, arith::MulFOp::create(b, l, n, a[3]), a[4]);
      });
  if (!y)
    return failure();
  return ctx.setOutputs(buildReshape(ctx.b(), ctx.getLoc(), y, type.getShape()));
}

/// BatchNormalization in inference mode (training_mode = 0).
LogicalResult importBatchNorm(NodeContext &ctx) {
  if (ctx.intAttr("training_mode", 0) != 0)
    return ctx.error() << "BatchNormalization with training_mode=1 is not "
                          "supported (Kiln compiles inference)";
  Value x = ctx.input(0);
  if (!x || !checkFloat(ctx, "BatchNormalization"))
    return failure();
  int64_t rank = ctx.inputType(0).getRank();
  if (rank < 2)
    return ctx.error() << "BatchNormalization needs an N x C... input";
  SmallVector<Value> inputs = {x};
  for (int i = 1; i <= 4; ++i) {
    Value v = ctx.input(i);
    if (!v)
      return failure();
    inputs.push_back(perChannel(ctx, v, rank));
  }
  double epsilon = ctx.floatAttr("epsilon", 1e-5f);
  Type element = ctx.inputType(0).getElementType();
  Value y = buildElementwise(
      ctx, inputs, element, [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        Type t = a[0].getType();
        Value inv = math::RsqrtOp::create(
            b, l, arith::AddFOp::create(b, l, castScalar(b, l, a[4], t),
                                        cst(b, l, t, epsilon)));
        Value n = arith::MulFOp::create(
            b, l, arith::SubFOp::create(b, l, a[0], castScalar(b, l, a[3], t)), inv);
        return arith::AddFOp::create(
            b, l, arith::MulFOp::create(b, l, n, castScalar(b, l, a[1], t)),
            castScalar(b, l, a[2], t));
      });
  return y ? ctx.setOutputs(y) : failure();
}

LogicalResult importLpNorm(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x || !checkFloat(ctx, "LpNormalization"))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", -1), type.getRank());
  if (!axis)
    return failure();
  int64_t p = ctx.intAttr("p", 2);
  if (p != 1 && p != 2)
    return ctx.error() << "LpNormalization p must be 1 or 2, got " << p;
  SmallVector<bool> reduced(type.getRank(), false);
  reduced[*axis] = true;
  Value norm = keepDims(
      ctx, buildReduce(ctx, x, reduced, p == 1 ? ReduceKind::L1 : ReduceKind::SumSquare),
      type, reduced);
  Value y = buildElementwise(
      ctx, {x, norm}, type.getElementType(),
      [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        Value n = p == 2 ? math::SqrtOp::create(b, l, a[1]).getResult() : a[1];
        // A zero norm gives 0, not 0 / 0, as the reference does.
        Value zero = scalarConstant(b, l, n.getType(), 0);
        Value isZero = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, n, zero);
        return arith::SelectOp::create(b, l, isZero, zero,
                                       arith::DivFOp::create(b, l, a[0], n));
      });
  return y ? ctx.setOutputs(y) : failure();
}

LogicalResult importGlobalPool(NodeContext &ctx, bool isMax) {
  Value x = ctx.input(0);
  if (!x || !checkFloat(ctx, isMax ? "GlobalMaxPool" : "GlobalAveragePool"))
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (type.getRank() < 3)
    return ctx.error() << "global pooling needs an N x C x D... input";
  SmallVector<bool> reduced = fromAxis(type.getRank(), 2);
  int64_t count = 1;
  for (int64_t d = 2; d < type.getRank(); ++d)
    count *= type.getShape()[d];
  Value r = keepDims(ctx, buildReduce(ctx, x, reduced,
                                      isMax ? ReduceKind::Max : ReduceKind::Sum),
                     type, reduced);
  if (!isMax)
    r = buildElementwise(ctx, {r}, type.getElementType(),
                         [&](OpBuilder &b, Location l, ValueRange a) -> Value {
                           return arith::DivFOp::create(
                               b, l, a[0], cst(b, l, a[0].getType(), count));
                         });
  return r ? ctx.setOutputs(r) : failure();
}

/// NegativeLogLikelihoodLoss (12) on `logProb` [N, C, d...] (input #0's
/// node position decides the error messages) with the node's target,
/// optional weight and `ignore_index` / `reduction` attributes: the loss
/// per element is -logProb[n, target, d...] times the target's weight (0
/// where the target is ignored); "mean" divides the sum by the summed
/// weights.
FailureOr<Value> buildNllLoss(NodeContext &ctx, Value logProb, const char *op) {
  Value target = ctx.input(1);
  if (!target)
    return failure();
  auto type = cast<RankedTensorType>(logProb.getType());
  RankedTensorType targetType = ctx.inputType(1);
  Type element = type.getElementType();
  if (!isa<FloatType>(element) || type.getRank() < 2) {
    ctx.error() << op << " takes float scores of rank >= 2, got " << logProb.getType();
    return failure();
  }
  SmallVector<int64_t> expected = {type.getShape()[0]};
  llvm::append_range(expected, type.getShape().drop_front(2));
  if (targetType.getShape() != ArrayRef<int64_t>(expected) ||
      !targetType.getElementType().isInteger() || targetType.getElementType().isInteger(1)) {
    ctx.error() << "the target must be an integer tensor [" << expected << "], got "
                << target.getType();
    return failure();
  }
  int64_t classes = type.getShape()[1];
  Value weight = ctx.hasInput(2) ? ctx.input(2) : Value();
  if (ctx.hasInput(2) && !weight)
    return failure();
  if (weight && ctx.inputType(2) != RankedTensorType::get({classes}, element)) {
    ctx.error() << "the weight must be " << RankedTensorType::get({classes}, element)
                << ", got " << weight.getType();
    return failure();
  }
  std::string reduction = "mean";
  if (const kiln_onnx::AttributeProto *attr = ctx.attr("reduction"))
    reduction = attr->s();
  if (reduction != "none" && reduction != "sum" && reduction != "mean") {
    ctx.error() << "reduction must be none, sum or mean, got '" << reduction << "'";
    return failure();
  }
  std::optional<int64_t> ignore;
  if (ctx.hasAttr("ignore_index"))
    ignore = ctx.intAttr("ignore_index", 0);
  OpBuilder &b0 = ctx.b();
  Location loc0 = ctx.getLoc();
  // Each element's weight: weight[target] (target clamped into range), or
  // 1; 0 where the target is ignored.
  auto classAt = [&](OpBuilder &b, Location loc, ValueRange ivs) {
    Value t = tensor::ExtractOp::create(b, loc, target, ivs);
    Value ignored = arith::ConstantIntOp::create(b, loc, 0, 1);
    if (ignore)
      ignored = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, t,
                                      scalarConstant(b, loc, t.getType(), *ignore));
    Value c = arith::IndexCastOp::create(b, loc, b.getIndexType(), t);
    c = arith::MaxSIOp::create(b, loc, c, arith::ConstantIndexOp::create(b, loc, 0));
    c = arith::MinSIOp::create(b, loc, c, arith::ConstantIndexOp::create(b, loc, classes - 1));
    return std::make_pair(c, ignored);
  };
  Value weights = buildIndexed(
      b0, loc0, expected, element, [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto [c, ignored] = classAt(b, loc, ivs);
        Value w = weight ? tensor::ExtractOp::create(b, loc, weight, ValueRange{c}).getResult()
                         : scalarConstant(b, loc, element, 1);
        return arith::SelectOp::create(b, loc, ignored, scalarConstant(b, loc, element, 0), w);
      });
  Value loss = buildIndexed(
      b0, loc0, expected, element, [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto [c, ignored] = classAt(b, loc, ivs);
        SmallVector<Value> at = {ivs[0], c};
        at.append(ivs.begin() + 1, ivs.end());
        Value p = tensor::ExtractOp::create(b, loc, logProb, at);
        Value w = tensor::ExtractOp::create(b, loc, weights, ivs);
        Value l = arith::MulFOp::create(b, loc, w, arith::NegFOp::create(b, loc, p));
        return arith::SelectOp::create(b, loc, ignored, scalarConstant(b, loc, element, 0), l);
      });
  if (reduction == "none")
    return loss;
  SmallVector<bool> all(expected.size(), true);
  Value sum = buildReduce(ctx, loss, all, ReduceKind::Sum);
  if (reduction == "sum")
    return sum;
  Value total = buildReduce(ctx, weights, all, ReduceKind::Sum);
  return buildBroadcast(b0, loc0, {sum, total}, {}, element,
                        [](OpBuilder &b, Location loc, ValueRange a) -> Value {
                          return arith::DivFOp::create(b, loc, a[0], a[1]);
                        });
}

LogicalResult importNllLoss(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  FailureOr<Value> loss = buildNllLoss(ctx, x, "NegativeLogLikelihoodLoss");
  return failed(loss) ? failure() : ctx.setOutputs(*loss);
}

/// SoftmaxCrossEntropyLoss (12): the NLL loss of the log-softmax over the
/// classes (dim 1); the log-probabilities are the optional second output.
LogicalResult importSoftmaxCrossEntropy(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (!isa<FloatType>(type.getElementType()) || type.getRank() < 2)
    return ctx.error() << "SoftmaxCrossEntropyLoss takes float scores of rank >= 2, got "
                       << x.getType();
  SmallVector<bool> classAxis(type.getRank(), false);
  classAxis[1] = true;
  Value logProb = logSoftmax(ctx, x, classAxis);
  FailureOr<Value> loss = buildNllLoss(ctx, logProb, "SoftmaxCrossEntropyLoss");
  if (failed(loss))
    return failure();
  return ctx.setOutputs({*loss, logProb});
}

} // namespace

void registerNormOps(OpRegistry &registry) {
  registry.on("LogSoftmax", 1, [](NodeContext &c) { return importLogSoftmax(c, true); });
  registry.on("LogSoftmax", 13, [](NodeContext &c) { return importLogSoftmax(c, false); });
  registry.on("Hardmax", 1, [](NodeContext &c) { return importHardmax(c, true); });
  registry.on("Hardmax", 13, [](NodeContext &c) { return importHardmax(c, false); });
  registry.on("LayerNormalization", 17, importLayerNorm);
  registry.on("NegativeLogLikelihoodLoss", 12, importNllLoss);
  registry.on("SoftmaxCrossEntropyLoss", 12, importSoftmaxCrossEntropy);
  registry.on("RMSNormalization", 23, importRMSNorm);
  // onnxruntime's own ops in the ONNX domain: LayerNormalization before it
  // was standard (opset 17), with the same attributes and outputs, and
  // SimplifiedLayerNormalization (RMS; Y and a training output).
  registry.on("LayerNormalization", 1, importLayerNorm);
  registry.on("SimplifiedLayerNormalization", 1, importRMSNorm);
  // com.microsoft (kMicrosoftDomain), from onnxruntime's transformer
  // optimizer and its LLM exports.
  registry.on("com.microsoft.SkipLayerNormalization", 1, importSkipLayerNorm);
  registry.on("com.microsoft.SkipSimplifiedLayerNormalization", 1,
              importSkipSimplifiedLayerNorm);
  registry.on("com.microsoft.EmbedLayerNormalization", 1, importEmbedLayerNorm);
  registry.on("MeanVarianceNormalization", 9, importMVN);
  registry.on("InstanceNormalization", 6, importInstanceNorm);
  registry.on("GroupNormalization", 18, importGroupNorm);
  registry.on("BatchNormalization", 9, importBatchNorm);
  registry.on("LpNormalization", 1, importLpNorm);
  registry.on("GlobalAveragePool", 1, [](NodeContext &c) { return importGlobalPool(c, false); });
  registry.on("GlobalMaxPool", 1, [](NodeContext &c) { return importGlobalPool(c, true); });
}

} // namespace kiln::onnx
