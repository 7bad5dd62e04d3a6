//===- OpsRecurrent.cpp - ONNX RNN, GRU and LSTM, unrolled over time ------===//
//
// The recurrent layers are unrolled at import, like Scan: the input
// projection of every step is one GEMM over the whole sequence
// (X·Wᵀ + biases, [steps, batch, gates·hidden]); each step then adds the
// recurrent GEMM of the previous hidden state (H·Rᵀ) and applies the gate
// arithmetic elementwise, so a step is one small GEMM and a few fused
// elementwise kernels. Both directions of a bidirectional layer are built
// the same way. `sequence_lens` masks steps past a batch entry's length:
// its state stops changing and its Y rows are zero (for the reverse
// direction the state so stays initial until the entry's last valid step,
// where its reverse pass starts). The step count comes from X's static
// shape and is capped like Scan's.
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

constexpr int64_t kMaxSteps = 256;

enum class Cell { Rnn, Gru, Lstm };

/// Gate count and activation slots per direction of each cell.
int gateCount(Cell cell) { return cell == Cell::Rnn ? 1 : cell == Cell::Gru ? 3 : 4; }
int activationCount(Cell cell) {
  return cell == Cell::Rnn ? 1 : cell == Cell::Gru ? 2 : 3;
}

/// One of the activation functions the recurrent ops name, with its
/// alpha and beta (onnxruntime's defaults where the attributes run out).
struct Activation {
  enum Kind {
    Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh,
    HardSigmoid, Elu, Softsign, Softplus
  } kind;
  double alpha = 0, beta = 0;
};

/// The `activations` attribute read for `numDirections`, with
/// activation_alpha / activation_beta consumed in order by the functions
/// that take them.
std::optional<SmallVector<Activation>> readActivations(NodeContext &ctx,
                                                       Cell cell,
                                                       int numDirections) {
  int perDirection = activationCount(cell);
  std::vector<std::string> names;
  if (const kiln_onnx::AttributeProto *a = ctx.attr("activations"))
    for (const std::string &s : a->strings())
      names.push_back(s);
  if (names.empty()) {
    static const char *defaults[3][3] = {{"Tanh"},
                                         {"Sigmoid", "Tanh"},
                                         {"Sigmoid", "Tanh", "Tanh"}};
    for (int d = 0; d < numDirections; ++d)
      for (int i = 0; i < perDirection; ++i)
        names.push_back(defaults[static_cast<int>(cell)][i]);
  }
  if (static_cast<int>(names.size()) != perDirection * numDirections) {
    ctx.error() << "activations lists " << names.size() << " functions; "
                << ctx.getNode().op_type() << " takes " << perDirection
                << " per direction, " << perDirection * numDirections
                << " here";
    return std::nullopt;
  }
  std::vector<float> alphas, betas;
  if (const kiln_onnx::AttributeProto *a = ctx.attr("activation_alpha"))
    alphas.assign(a->floats().begin(), a->floats().end());
  if (const kiln_onnx::AttributeProto *a = ctx.attr("activation_beta"))
    betas.assign(a->floats().begin(), a->floats().end());
  size_t nextAlpha = 0, nextBeta = 0;
  auto take = [](const std::vector<float> &from, size_t &next,
                 double fallback) {
    return next < from.size() ? static_cast<double>(from[next++]) : fallback;
  };
  static const struct {
    const char *name;
    Activation::Kind kind;
    bool hasAlpha, hasBeta;
    double alpha, beta;
  } table[] = {
      {"relu", Activation::Relu, false, false, 0, 0},
      {"tanh", Activation::Tanh, false, false, 0, 0},
      {"sigmoid", Activation::Sigmoid, false, false, 0, 0},
      {"affine", Activation::Affine, true, true, 1, 0},
      {"leakyrelu", Activation::LeakyRelu, true, false, 0.01, 0},
      {"thresholdedrelu", Activation::ThresholdedRelu, true, false, 1, 0},
      {"scaledtanh", Activation::ScaledTanh, true, true, 1, 1},
      {"hardsigmoid", Activation::HardSigmoid, true, true, 0.2, 0.5},
      {"elu", Activation::Elu, true, false, 1, 0},
      {"softsign", Activation::Softsign, false, false, 0, 0},
      {"softplus", Activation::Softplus, false, false, 0, 0},
  };
  SmallVector<Activation> result;
  for (const std::string &name : names) {
    std::string lower = StringRef(name).lower();
    auto *entry = llvm::find_if(
        table, [&](const auto &e) { return lower == e.name; });
    if (entry == std::end(table)) {
      ctx.error() << "activation '" << name << "' is not one of Relu, Tanh, "
                  << "Sigmoid, Affine, LeakyRelu, ThresholdedRelu, "
                  << "ScaledTanh, HardSigmoid, Elu, Softsign, Softplus";
      return std::nullopt;
    }
    Activation act{entry->kind};
    act.alpha = entry->hasAlpha ? take(alphas, nextAlpha, entry->alpha) : 0;
    act.beta = entry->hasBeta ? take(betas, nextBeta, entry->beta) : 0;
    result.push_back(act);
  }
  return result;
}

Value applyActivation(OpBuilder &b, Location loc, Value x,
                      const Activation &act) {
  Type t = x.getType();
  auto c = [&](double v) { return scalarConstant(b, loc, t, v); };
  auto mul = [&](Value l, Value r) { return arith::MulFOp::create(b, loc, l, r); };
  auto add = [&](Value l, Value r) { return arith::AddFOp::create(b, loc, l, r); };
  auto select = [&](arith::CmpFPredicate p, Value l, Value r, Value yes,
                    Value no) -> Value {
    return arith::SelectOp::create(
        b, loc, arith::CmpFOp::create(b, loc, p, l, r), yes, no);
  };
  using P = arith::CmpFPredicate;
  switch (act.kind) {
  case Activation::Relu:
    return select(P::OLT, x, c(0), c(0), x);
  case Activation::Tanh:
    return math::TanhOp::create(b, loc, x);
  case Activation::Sigmoid:
    return scalarSigmoid(b, loc, x);
  case Activation::Affine:
    return add(mul(c(act.alpha), x), c(act.beta));
  case Activation::LeakyRelu:
    return select(P::OLT, x, c(0), mul(c(act.alpha), x), x);
  case Activation::ThresholdedRelu:
    return select(P::OGT, x, c(act.alpha), x, c(0));
  case Activation::ScaledTanh:
    return mul(c(act.alpha), math::TanhOp::create(b, loc, mul(c(act.beta), x)));
  case Activation::HardSigmoid: {
    Value y = add(mul(c(act.alpha), x), c(act.beta));
    return arith::MinimumFOp::create(b, loc,
                                     arith::MaximumFOp::create(b, loc, y, c(0)),
                                     c(1));
  }
  case Activation::Elu:
    return select(P::OLT, x, c(0),
                  mul(c(act.alpha), math::ExpM1Op::create(b, loc, x)),
                  x);
  case Activation::Softsign:
    return arith::DivFOp::create(b, loc, x,
                                 add(c(1), math::AbsFOp::create(b, loc, x)));
  case Activation::Softplus:
    return scalarSoftplus(b, loc, x);
  }
  llvm_unreachable("activation kind");
}

Value transpose(OpBuilder &b, Location loc, Value value,
                ArrayRef<int64_t> perm) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape;
  for (int64_t p : perm)
    shape.push_back(type.getDimSize(p));
  Value init = tensor::EmptyOp::create(b, loc, shape, type.getElementType());
  return linalg::TransposeOp::create(b, loc, value, init, perm).getResult()[0];
}

/// Columns [k·size, (k+1)·size) of the last dim of `value`.
Value columns(OpBuilder &b, Location loc, Value value, int64_t k,
              int64_t size) {
  auto type = cast<RankedTensorType>(value.getType());
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0)), sizes,
      strides(rank, b.getIndexAttr(1));
  for (int64_t d = 0; d < rank; ++d)
    sizes.push_back(b.getIndexAttr(d == rank - 1 ? size : type.getDimSize(d)));
  offsets[rank - 1] = b.getIndexAttr(k * size);
  return tensor::ExtractSliceOp::create(b, loc, value, offsets, sizes, strides);
}

/// What one direction of the layer reads and produces.
struct Direction {
  bool reverse = false;
  Value wT, rT;     // [input, gates·hidden], [hidden, gates·hidden]
  Value inBias;     // [gates·hidden] added to X·Wᵀ, or null
  Value recBias;    // GRU linear_before_reset: Rb of the h gate, or null
  Value peephole;   // LSTM: [3·hidden] (i, o, f), or null
  Value h, c;       // [batch, hidden] states
  ArrayRef<Activation> acts;
};

struct Layer {
  Cell cell;
  int64_t steps, batch, hidden;
  Type element;
  std::optional<double> clip;
  bool linearBeforeReset = false, inputForget = false;
  Value seqLens; // [batch, 1] of the lengths, or null
};

/// clip(x) then the activation.
Value gate(OpBuilder &b, Location loc, const Layer &layer, Value x,
           const Activation &act) {
  if (layer.clip) {
    Value hi = scalarConstant(b, loc, x.getType(), *layer.clip);
    Value lo = scalarConstant(b, loc, x.getType(), -*layer.clip);
    x = arith::MinimumFOp::create(b, loc,
                                  arith::MaximumFOp::create(b, loc, x, lo), hi);
  }
  return applyActivation(b, loc, x, act);
}

/// Whether step `t` is within batch entry's length (the scalar length
/// element `len`).
Value stepValid(OpBuilder &b, Location loc, Value len, int64_t t) {
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, len,
                               scalarConstant(b, loc, len.getType(), t));
}

/// `fresh` where step `t` is valid, else `otherwise` ([batch, hidden]).
Value maskStep(NodeContext &ctx, const Layer &layer, int64_t t, Value fresh,
               Value otherwise) {
  if (!layer.seqLens)
    return fresh;
  return buildElementwise(
      ctx, {fresh, otherwise, layer.seqLens}, layer.element,
      [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
        return arith::SelectOp::create(b, loc, stepValid(b, loc, a[2], t),
                                       a[0], a[1]);
      });
}

/// The steps of one direction; returns Y's rows for it in time order,
/// and leaves the final states in `dir`.
FailureOr<SmallVector<Value>> runDirection(NodeContext &ctx,
                                           const Layer &layer, Value x,
                                           Direction &dir) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  int64_t H = layer.hidden;
  Value projected = buildMatmul(ctx, x, dir.wT); // [steps, batch, G·H]
  if (!projected)
    return failure();
  if (dir.inBias)
    projected = buildElementwise(
        ctx, {projected, dir.inBias}, layer.element,
        [](OpBuilder &b, Location loc, ValueRange a) -> Value {
          return arith::AddFOp::create(b, loc, a[0], a[1]);
        });
  Type e = layer.element;
  auto zeros = [&]() -> Value {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(RankedTensorType::get({layer.batch, H}, e),
                                       b.getZeroAttr(e)));
  };
  Value rhT = dir.rT, rzrT;
  if (layer.cell == Cell::Gru && !layer.linearBeforeReset) {
    // (r ⊙ H)·Rhᵀ needs the h gate's recurrent weights apart.
    rzrT = columns(b, loc, dir.rT, 0, 2 * H);
    rhT = columns(b, loc, dir.rT, 2, H);
  }
  auto peep = [&](int k) -> Value {
    return dir.peephole ? columns(b, loc, dir.peephole, k, H) : zeros();
  };
  SmallVector<Value> ys(layer.steps);
  for (int64_t s = 0; s < layer.steps; ++s) {
    int64_t t = dir.reverse ? layer.steps - 1 - s : s;
    Value xt = sliceAlong(b, loc, projected, 0, t); // [batch, G·H]
    Value h = dir.h, fresh, freshC;
    auto ew = [&](ValueRange in, auto fn) {
      return buildElementwise(ctx, in, e,
                              [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
                                return fn(b, loc, a);
                              });
    };
    auto addf = [](OpBuilder &b, Location loc, Value l, Value r) -> Value {
      return arith::AddFOp::create(b, loc, l, r);
    };
    auto mulf = [](OpBuilder &b, Location loc, Value l, Value r) -> Value {
      return arith::MulFOp::create(b, loc, l, r);
    };
    switch (layer.cell) {
    case Cell::Rnn: {
      Value hr = buildMatmul(ctx, h, dir.rT);
      if (!hr)
        return failure();
      fresh = ew({xt, hr}, [&](OpBuilder &b, Location loc, ValueRange a) {
        return gate(b, loc, layer, addf(b, loc, a[0], a[1]), dir.acts[0]);
      });
      break;
    }
    case Cell::Gru: {
      const Activation &f = dir.acts[0], &g = dir.acts[1];
      Value xz = columns(b, loc, xt, 0, H), xr = columns(b, loc, xt, 1, H),
            xh = columns(b, loc, xt, 2, H);
      Value hzr = buildMatmul(ctx, h, layer.linearBeforeReset ? dir.rT : rzrT);
      if (!hzr)
        return failure();
      Value hz = columns(b, loc, hzr, 0, H), hr = columns(b, loc, hzr, 1, H);
      Value z = ew({xz, hz}, [&](OpBuilder &b, Location loc, ValueRange a) {
        return gate(b, loc, layer, addf(b, loc, a[0], a[1]), f);
      });
      Value r = ew({xr, hr}, [&](OpBuilder &b, Location loc, ValueRange a) {
        return gate(b, loc, layer, addf(b, loc, a[0], a[1]), f);
      });
      Value candidate;
      if (layer.linearBeforeReset) {
        // g(xh + r ⊙ (H·Rhᵀ + Rbh))
        Value hh = columns(b, loc, hzr, 2, H);
        SmallVector<Value> in = {xh, r, hh};
        if (dir.recBias)
          in.push_back(dir.recBias);
        candidate = ew(in, [&](OpBuilder &b, Location loc, ValueRange a) {
          Value rec = a.size() > 3 ? addf(b, loc, a[2], a[3]) : a[2];
          return gate(b, loc, layer, addf(b, loc, a[0], mulf(b, loc, a[1], rec)),
                      g);
        });
      } else {
        // g(xh + (r ⊙ H)·Rhᵀ), the h gate's biases in xh.
        Value rh = ew({r, h}, [&](OpBuilder &b, Location loc, ValueRange a) {
          return mulf(b, loc, a[0], a[1]);
        });
        Value rec = buildMatmul(ctx, rh, rhT);
        if (!rec)
          return failure();
        candidate = ew({xh, rec}, [&](OpBuilder &b, Location loc, ValueRange a) {
          return gate(b, loc, layer, addf(b, loc, a[0], a[1]), g);
        });
      }
      // (1 - z) ⊙ candidate + z ⊙ H
      fresh = ew({z, candidate, h}, [&](OpBuilder &b, Location loc, ValueRange a) {
        Value oneMinus = arith::SubFOp::create(
            b, loc, scalarConstant(b, loc, a[0].getType(), 1), a[0]);
        return addf(b, loc, mulf(b, loc, oneMinus, a[1]),
                    mulf(b, loc, a[0], a[2]));
      });
      break;
    }
    case Cell::Lstm: {
      const Activation &f = dir.acts[0], &g = dir.acts[1], &hAct = dir.acts[2];
      Value hr = buildMatmul(ctx, h, dir.rT);
      if (!hr)
        return failure();
      Value pre = ew({xt, hr}, [&](OpBuilder &b, Location loc, ValueRange a) {
        return addf(b, loc, a[0], a[1]);
      });
      // Gates in the order i, o, f, c; peepholes i, o, f.
      Value gi = columns(b, loc, pre, 0, H), go = columns(b, loc, pre, 1, H),
            gf = columns(b, loc, pre, 2, H), gc = columns(b, loc, pre, 3, H);
      bool coupled = layer.inputForget;
      freshC = ew({gi, gf, gc, dir.c, peep(0), peep(2)},
                  [&](OpBuilder &b, Location loc, ValueRange a) {
                    Value c = a[3];
                    Value i = gate(b, loc, layer,
                                   addf(b, loc, a[0], mulf(b, loc, a[4], c)), f);
                    Value fg =
                        coupled
                            ? Value(arith::SubFOp::create(
                                  b, loc, scalarConstant(b, loc, c.getType(), 1),
                                  i))
                            : gate(b, loc, layer,
                                   addf(b, loc, a[1], mulf(b, loc, a[5], c)), f);
                    Value cand = gate(b, loc, layer, a[2], g);
                    return addf(b, loc, mulf(b, loc, fg, c),
                                mulf(b, loc, i, cand));
                  });
      fresh = ew({go, freshC, peep(1)},
                 [&](OpBuilder &b, Location loc, ValueRange a) {
                   Value o = gate(b, loc, layer,
                                  addf(b, loc, a[0], mulf(b, loc, a[2], a[1])), f);
                   return mulf(b, loc, o, applyActivation(b, loc, a[1], hAct));
                 });
      break;
    }
    }
    if (!fresh || (layer.cell == Cell::Lstm && !freshC))
      return failure();
    ys[t] = maskStep(ctx, layer, t, fresh, zeros());
    dir.h = maskStep(ctx, layer, t, fresh, h);
    if (freshC)
      dir.c = maskStep(ctx, layer, t, freshC, dir.c);
    if (!ys[t] || !dir.h || !dir.c)
      return failure();
  }
  return ys;
}

/// RNN (7, 14), GRU (7, 14), LSTM (7, 14): inputs X, W, R, B,
/// sequence_lens, initial_h (and for LSTM initial_c, P); outputs Y, Y_h
/// (and Y_c).
LogicalResult importRecurrent(NodeContext &ctx, Cell cell) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  for (int i : {0, 1, 2})
    if (!ctx.input(i))
      return failure();
  Value x = ctx.input(0), w = ctx.input(1), r = ctx.input(2);
  for (int i = 0; i < ctx.numInputs(); ++i) {
    if (!ctx.hasInput(i))
      continue;
    if (!ctx.input(i))
      return failure();
  }
  auto xType = ctx.inputType(0);
  Type element = xType.getElementType();
  if (!isa<FloatType>(element))
    return ctx.error() << "X must hold floats, got " << xType;
  std::string direction = "forward";
  if (const kiln_onnx::AttributeProto *a = ctx.attr("direction"))
    direction = a->s();
  if (direction != "forward" && direction != "reverse" &&
      direction != "bidirectional")
    return ctx.error() << "direction '" << direction
                       << "' is not forward, reverse or bidirectional";
  int numDirections = direction == "bidirectional" ? 2 : 1;
  int64_t layout = ctx.intAttr("layout", 0);
  if (layout != 0 && layout != 1)
    return ctx.error() << "layout " << layout << " is not 0 or 1";
  if (xType.getRank() != 3)
    return ctx.error() << "X must have rank 3, got " << xType;
  if (layout == 1)
    x = transpose(b, loc, x, {1, 0, 2});
  ArrayRef<int64_t> xs = shapeOf(x);
  int64_t steps = xs[0], batch = xs[1], inputSize = xs[2];
  int gates = gateCount(cell);
  auto wType = ctx.inputType(1);
  if (wType.getRank() != 3 || wType.getDimSize(0) != numDirections ||
      wType.getDimSize(2) != inputSize || wType.getDimSize(1) % gates)
    return ctx.error() << "W " << wType << " must be [" << numDirections
                       << ", " << gates << " x hidden_size, " << inputSize
                       << "]";
  int64_t hidden = ctx.intAttr("hidden_size", wType.getDimSize(1) / gates);
  if (hidden <= 0 || wType.getDimSize(1) != gates * hidden)
    return ctx.error() << "W " << wType << " does not hold " << gates
                       << " gates of hidden_size " << hidden;
  auto expect = [&](int i, ArrayRef<int64_t> shape, StringRef name) -> bool {
    if (!ctx.hasInput(i))
      return true;
    auto type = ctx.inputType(i);
    if (type.getShape() == shape && type.getElementType() == element)
      return true;
    InFlightDiagnostic diag = ctx.error();
    diag << name << " " << type << " must be [";
    llvm::interleaveComma(shape, diag);
    diag << "] of " << element;
    return false;
  };
  SmallVector<int64_t> stateShape =
      layout == 1 ? SmallVector<int64_t>{batch, numDirections, hidden}
                  : SmallVector<int64_t>{numDirections, batch, hidden};
  if (!expect(2, {numDirections, gates * hidden, hidden}, "R") ||
      !expect(3, {numDirections, 2 * gates * hidden}, "B") ||
      !expect(5, stateShape, "initial_h") ||
      (cell == Cell::Lstm && (!expect(6, stateShape, "initial_c") ||
                              !expect(7, {numDirections, 3 * hidden}, "P"))))
    return failure();
  if (steps > kMaxSteps)
    return ctx.error() << "Kiln unrolls " << ctx.getNode().op_type()
                       << " over the sequence at compile time, up to "
                       << kMaxSteps << " steps; this one has " << steps
                       << ": run the sequence in chunks of at most " << kMaxSteps
                       << " steps, each chunk's Y_h"
                       << (cell == Cell::Lstm ? " and Y_c" : "")
                       << " the next one's initial state";
  if (steps == 0 || batch == 0)
    return ctx.error() << "X " << xType << " has no steps or no batch";

  Layer layer{cell, steps, batch, hidden, element};
  if (ctx.hasAttr("clip")) {
    float clip = ctx.floatAttr("clip", 0);
    if (!(clip > 0))
      return ctx.error() << "clip " << clip << " must be positive";
    layer.clip = clip;
  }
  if (cell == Cell::Gru)
    layer.linearBeforeReset = ctx.intAttr("linear_before_reset", 0) != 0;
  if (cell == Cell::Lstm)
    layer.inputForget = ctx.intAttr("input_forget", 0) != 0;
  if (ctx.hasInput(4)) {
    auto type = ctx.inputType(4);
    if (type.getShape() != ArrayRef<int64_t>{batch} ||
        !type.getElementType().isInteger(32))
      return ctx.error() << "sequence_lens " << type << " must be [" << batch
                         << "] of i32";
    layer.seqLens = buildReshape(b, loc, ctx.input(4), {batch, 1});
  }
  std::optional<SmallVector<Activation>> acts =
      readActivations(ctx, cell, numDirections);
  if (!acts)
    return failure();

  auto stateOf = [&](int input, int d) -> Value {
    if (!ctx.hasInput(input))
      return arith::ConstantOp::create(
          b, loc,
          DenseElementsAttr::get(RankedTensorType::get({batch, hidden}, element),
                                 b.getZeroAttr(element)));
    return sliceAlong(b, loc, ctx.input(input), layout == 1 ? 1 : 0, d);
  };
  SmallVector<SmallVector<Value>> perDirection;
  SmallVector<Value> finalH, finalC;
  for (int d = 0; d < numDirections; ++d) {
    Direction dir;
    dir.reverse = direction == "reverse" || d == 1;
    dir.wT = transpose(b, loc, sliceAlong(b, loc, w, 0, d), {1, 0});
    dir.rT = transpose(b, loc, sliceAlong(b, loc, r, 0, d), {1, 0});
    if (ctx.hasInput(3)) {
      Value bias = sliceAlong(b, loc, ctx.input(3), 0, d);
      Value wb = columns(b, loc, bias, 0, gates * hidden);
      Value rb = columns(b, loc, bias, 1, gates * hidden);
      if (layer.linearBeforeReset) {
        // Rb of the h gate is added inside r ⊙ (...); z and r take theirs.
        dir.recBias = columns(b, loc, rb, 2, hidden);
        Value zrRb = columns(b, loc, rb, 0, 2 * hidden);
        Value zero = arith::ConstantOp::create(
            b, loc,
            DenseElementsAttr::get(RankedTensorType::get({hidden}, element),
                                   b.getZeroAttr(element)));
        Value padded = tensor::EmptyOp::create(b, loc, {gates * hidden}, element);
        auto place = [&](Value part, int64_t at, int64_t size) {
          padded = tensor::InsertSliceOp::create(
              b, loc, part, padded, ArrayRef<OpFoldResult>{b.getIndexAttr(at)},
              ArrayRef<OpFoldResult>{b.getIndexAttr(size)},
              ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
        };
        place(zrRb, 0, 2 * hidden);
        place(zero, 2 * hidden, hidden);
        rb = padded;
      }
      dir.inBias = buildElementwise(
          ctx, {wb, rb}, element,
          [](OpBuilder &b, Location loc, ValueRange a) -> Value {
            return arith::AddFOp::create(b, loc, a[0], a[1]);
          });
      if (!dir.inBias)
        return failure();
    }
    if (cell == Cell::Lstm && ctx.hasInput(7))
      dir.peephole = sliceAlong(b, loc, ctx.input(7), 0, d);
    dir.h = stateOf(5, d);
    dir.c = cell == Cell::Lstm ? stateOf(6, d) : dir.h;
    int per = activationCount(cell);
    dir.acts = ArrayRef<Activation>(*acts).slice(d * per, per);
    FailureOr<SmallVector<Value>> ys = runDirection(ctx, layer, x, dir);
    if (failed(ys))
      return failure();
    perDirection.push_back(*ys);
    finalH.push_back(dir.h);
    finalC.push_back(dir.c);
  }
  // Y: [steps, directions, batch, hidden]; Y_h, Y_c: [directions, batch,
  // hidden]. Layout 1 puts the batch first.
  SmallVector<Value> stepRows;
  for (int64_t t = 0; t < steps; ++t) {
    SmallVector<Value> dirs;
    for (const auto &ys : perDirection)
      dirs.push_back(ys[t]);
    FailureOr<Value> row = stackAlong(ctx, dirs, 0, false);
    if (failed(row))
      return failure();
    stepRows.push_back(*row);
  }
  FailureOr<Value> y = stackAlong(ctx, stepRows, 0, false);
  FailureOr<Value> yh = stackAlong(ctx, finalH, 0, false);
  if (failed(y) || failed(yh))
    return failure();
  SmallVector<Value> outputs = {*y, *yh};
  if (cell == Cell::Lstm) {
    FailureOr<Value> yc = stackAlong(ctx, finalC, 0, false);
    if (failed(yc))
      return failure();
    outputs.push_back(*yc);
  }
  if (layout == 1) {
    outputs[0] = transpose(b, loc, outputs[0], {2, 0, 1, 3});
    for (size_t i = 1; i < outputs.size(); ++i)
      outputs[i] = transpose(b, loc, outputs[i], {1, 0, 2});
  }
  return ctx.setOutputs(outputs);
}

} // namespace

void registerRecurrentOps(OpRegistry &registry) {
  for (int64_t since : {7, 14}) {
    registry.on("RNN", since, [](NodeContext &ctx) {
      return importRecurrent(ctx, Cell::Rnn);
    });
    registry.on("GRU", since, [](NodeContext &ctx) {
      return importRecurrent(ctx, Cell::Gru);
    });
    registry.on("LSTM", since, [](NodeContext &ctx) {
      return importRecurrent(ctx, Cell::Lstm);
    });
  }
}

} // namespace kiln::onnx
