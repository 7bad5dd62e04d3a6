//===- OpsLinearAttention.cpp - LinearAttention (27) by its recurrence ---===//
//
// LinearAttention keeps a state S [B, H_kv, d_k, d_v] per sequence and, for
// each time step t, decays it (gated rules: S *= exp(g_t), per head or per
// key dim), corrects the value by what S already retrieves for k_t (delta
// rules: v_t = beta_t (v_t - S^T k_t)), adds k_t v_t^T, and reads
// o_t = scale q_t^T S (a query head reads KV head h / group). The rules
// linear, gated, delta and gated_delta are the four combinations.
//
// The importer unrolls the time steps: each is a few small generics over
// the state, in f32 whatever the model's type. That is the decode step
// (T = 1 over a past state) and short prefills exactly; longer sequences
// would want a chunked kernel and are refused past kMaxSteps.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;

namespace kiln::onnx {
namespace {

constexpr int64_t kMaxSteps = 64;

LogicalResult importLinearAttention(NodeContext &ctx) {
  Value query = ctx.input(0), key = ctx.input(1), value = ctx.input(2);
  if (!query || !key || !value)
    return failure();
  auto optional = [&](int i) -> FailureOr<Value> {
    if (!ctx.hasInput(i))
      return Value();
    Value v = ctx.input(i);
    if (!v)
      return failure();
    return v;
  };
  FailureOr<Value> past = optional(3), decay = optional(4), beta = optional(5);
  if (failed(past) || failed(decay) || failed(beta))
    return failure();
  std::string rule = "gated_delta";
  if (const auto *attr = ctx.attr("update_rule"))
    rule = attr->s();
  if (rule != "linear" && rule != "gated" && rule != "delta" &&
      rule != "gated_delta")
    return ctx.error() << "unknown update_rule '" << rule
                       << "' (expected linear, gated, delta or gated_delta)";
  bool gating = rule == "gated" || rule == "gated_delta";
  bool delta = rule == "delta" || rule == "gated_delta";
  if (gating != bool(*decay))
    return ctx.error() << "update_rule '" << rule
                       << (gating ? "' needs" : "' takes no") << " decay input";
  if (delta != bool(*beta))
    return ctx.error() << "update_rule '" << rule
                       << (delta ? "' needs" : "' takes no") << " beta input";
  int64_t hq = ctx.intAttr("q_num_heads", 0), hkv = ctx.intAttr("kv_num_heads", 0);
  if (hq < 1 || hkv < 1 || hq % hkv)
    return ctx.error() << "q_num_heads " << hq
                       << " must be a positive multiple of kv_num_heads " << hkv;
  RankedTensorType qType = ctx.inputType(0), kType = ctx.inputType(1),
                   vType = ctx.inputType(2);
  for (RankedTensorType t : {qType, kType, vType})
    if (!t.hasStaticShape() || t.getRank() != 3 ||
        !isa<FloatType>(t.getElementType()))
      return ctx.error() << "LinearAttention takes float query, key and value "
                            "[B, T, heads x size] of static shapes, got "
                         << t;
  int64_t batch = qType.getDimSize(0), steps = qType.getDimSize(1);
  if (qType.getDimSize(2) % hq || vType.getDimSize(2) % hkv)
    return ctx.error() << "query and value widths must divide into their heads";
  int64_t dk = qType.getDimSize(2) / hq, dv = vType.getDimSize(2) / hkv;
  if (kType.getShape() != ArrayRef<int64_t>{batch, steps, hkv * dk} ||
      vType.getDimSize(0) != batch || vType.getDimSize(1) != steps)
    return ctx.error() << "key must be [" << batch << ", " << steps << ", "
                       << hkv * dk << "] and value [" << batch << ", " << steps
                       << ", H_kv x d_v]";
  if (steps > kMaxSteps)
    return ctx.error() << "LinearAttention over " << steps
                       << " time steps is not supported yet (up to "
                       << kMaxSteps << "): feed the sequence in chunks of at "
                                       "most "
                       << kMaxSteps
                       << " steps, each chunk's present_state the next one's "
                          "past_state";
  int64_t decayWidth = 0, betaWidth = 0;
  if (*decay) {
    RankedTensorType t = ctx.inputType(4);
    decayWidth = t.getRank() == 3 ? t.getDimSize(2) : 0;
    if (t.getRank() != 3 || t.getDimSize(0) != batch ||
        t.getDimSize(1) != steps || (decayWidth != hkv && decayWidth != hkv * dk))
      return ctx.error() << "decay must be [" << batch << ", " << steps
                         << ", " << hkv << " or " << hkv * dk << "], got " << t;
  }
  if (*beta) {
    RankedTensorType t = ctx.inputType(5);
    betaWidth = t.getRank() == 3 ? t.getDimSize(2) : 0;
    if (t.getRank() != 3 || t.getDimSize(0) != batch ||
        t.getDimSize(1) != steps || (betaWidth != hkv && betaWidth != 1))
      return ctx.error() << "beta must be [" << batch << ", " << steps
                         << ", " << hkv << " or 1], got " << t;
  }
  Type element = qType.getElementType();
  Type stateElement = element;
  if (*past) {
    RankedTensorType t = ctx.inputType(3);
    if (t.getShape() != ArrayRef<int64_t>{batch, hkv, dk, dv} ||
        !isa<FloatType>(t.getElementType()))
      return ctx.error() << "past_state must be [" << batch << ", " << hkv
                         << ", " << dk << ", " << dv << "], got " << t;
    stateElement = t.getElementType();
  }
  double scale = ctx.floatAttr("scale", 0.0f);
  if (scale == 0)
    scale = 1.0 / std::sqrt(double(dk));
  int64_t group = hq / hkv;

  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  Type f32 = b.getF32Type();
  auto c = [&](OpBuilder &nb, int64_t v) { return indexConstant(nb, loc, v); };
  auto widen = [&](OpBuilder &nb, Value v) {
    return v.getType() == f32 ? v : castScalar(nb, loc, v, f32);
  };
  // x[b, t, head * width + i], widened.
  auto read = [&](OpBuilder &nb, Value x, Value bi, int64_t t, Value head,
                  int64_t width, Value i) -> Value {
    Value col = arith::AddIOp::create(
        nb, loc, arith::MulIOp::create(nb, loc, head, c(nb, width)), i);
    return widen(nb, tensor::ExtractOp::create(nb, loc, x,
                                               ValueRange{bi, c(nb, t), col}));
  };
  // sum over d < dk of term(d), in a loop in the body.
  auto sumOver = [&](OpBuilder &nb, int64_t n,
                     function_ref<Value(OpBuilder &, Value)> term) -> Value {
    auto loop = scf::ForOp::create(nb, loc, c(nb, 0), c(nb, n), c(nb, 1),
                                   ValueRange{scalarConstant(nb, loc, f32, 0)});
    OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
    Value next = arith::AddFOp::create(lb, loc, loop.getRegionIterArgs()[0],
                                       term(lb, loop.getInductionVar()));
    scf::YieldOp::create(lb, loc, next);
    return loop.getResult(0);
  };

  SmallVector<int64_t> stateShape = {batch, hkv, dk, dv};
  Value state;
  if (*past) {
    state = convertElements(b, loc, *past, f32);
  } else {
    Value empty = tensor::EmptyOp::create(b, loc, stateShape, f32);
    state = linalg::FillOp::create(b, loc, scalarConstant(b, loc, f32, 0), empty)
                .getResult(0);
  }
  Value output = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{batch, steps, hq * dv},
                                         element);
  for (int64_t t = 0; t < steps; ++t) {
    Value s = state;
    // The corrected value v'[b, h, m] (delta rules) or v itself.
    Value corrected;
    if (delta) {
      corrected = buildIndexed(
          b, loc, {batch, hkv, dv}, f32,
          [&](OpBuilder &nb, Location, ValueRange ivs) -> Value {
            Value bi = ivs[0], h = ivs[1], m = ivs[2];
            // S decayed first (gated_delta): exp(g) scales every S[d][m].
            Value retrieved = sumOver(nb, dk, [&](OpBuilder &lb, Value d) {
              Value sv = tensor::ExtractOp::create(lb, loc, s,
                                                   ValueRange{bi, h, d, m});
              if (gating) {
                Value g = decayWidth == hkv
                              ? read(lb, *decay, bi, t, h, 1, c(lb, 0))
                              : read(lb, *decay, bi, t, h, dk, d);
                sv = arith::MulFOp::create(lb, loc, sv,
                                           math::ExpOp::create(lb, loc, g));
              }
              return arith::MulFOp::create(lb, loc, sv,
                                           read(lb, key, bi, t, h, dk, d))
                  .getResult();
            });
            Value v = read(nb, value, bi, t, h, dv, m);
            Value bt = read(nb, *beta, bi, t, betaWidth == 1 ? c(nb, 0) : h, 1,
                            c(nb, 0));
            return arith::MulFOp::create(
                nb, loc, bt, arith::SubFOp::create(nb, loc, v, retrieved));
          });
    }
    // S = S * exp(g) + k v'^T.
    state = buildIndexed(
        b, loc, stateShape, f32,
        [&](OpBuilder &nb, Location, ValueRange ivs) -> Value {
          Value bi = ivs[0], h = ivs[1], d = ivs[2], m = ivs[3];
          Value sv = tensor::ExtractOp::create(nb, loc, s, ivs);
          if (gating) {
            Value g = decayWidth == hkv ? read(nb, *decay, bi, t, h, 1, c(nb, 0))
                                        : read(nb, *decay, bi, t, h, dk, d);
            sv = arith::MulFOp::create(nb, loc, sv, math::ExpOp::create(nb, loc, g));
          }
          Value v = delta ? tensor::ExtractOp::create(nb, loc, corrected,
                                                      ValueRange{bi, h, m})
                                .getResult()
                          : read(nb, value, bi, t, h, dv, m);
          return arith::AddFOp::create(
              nb, loc, sv,
              arith::MulFOp::create(nb, loc, read(nb, key, bi, t, h, dk, d), v));
        });
    // o_t[b, hq * dv + m] = scale sum_d q[d] S[hq / group][d][m].
    Value current = state;
    Value step = buildIndexed(
        b, loc, {batch, 1, hq * dv}, element,
        [&](OpBuilder &nb, Location, ValueRange ivs) -> Value {
          Value bi = ivs[0];
          Value head = arith::DivUIOp::create(nb, loc, ivs[2], c(nb, dv));
          Value m = arith::RemUIOp::create(nb, loc, ivs[2], c(nb, dv));
          Value kvHead = arith::DivUIOp::create(nb, loc, head, c(nb, group));
          Value sum = sumOver(nb, dk, [&](OpBuilder &lb, Value d) {
            return arith::MulFOp::create(
                       lb, loc, read(lb, query, bi, t, head, dk, d),
                       tensor::ExtractOp::create(lb, loc, current,
                                                 ValueRange{bi, kvHead, d, m}))
                .getResult();
          });
          return castScalar(
              nb, loc,
              arith::MulFOp::create(nb, loc, sum,
                                    scalarConstant(nb, loc, f32, scale)),
              element);
        });
    SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), b.getIndexAttr(t),
                                         b.getIndexAttr(0)};
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(batch), b.getIndexAttr(1),
                                       b.getIndexAttr(hq * dv)};
    SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
    output = tensor::InsertSliceOp::create(b, loc, step, output, offsets, sizes,
                                           strides);
  }
  return ctx.setOutputs({output, convertElements(b, loc, state, stateElement)});
}

} // namespace

void registerLinearAttentionOps(OpRegistry &registry) {
  registry.on("LinearAttention", 27, importLinearAttention);
}

} // namespace kiln::onnx
