//===- RaiseNorms.cpp - decomposed LayerNorm and RMSNorm into kiln ops ----===//
//
// Exporters write the norms of models that predate ONNX's own ops, and
// RMSNorm everywhere below opset 23, node by node. LLaMA's RMSNorm is
//
//   Pow(x, 2) -> ReduceMean(-1) -> Add eps -> Sqrt -> Div(1, .) -> Mul x -> Mul w
//
// (or Reciprocal, or Rsqrt, in f32 between Casts for an f16 model; Gemma
// scales by (1 + w)); a decomposed LayerNorm subtracts the mean first and
// adds a bias last. Every norm has the same skeleton, which this pass
// matches from its sum over the last dim forward:
//
//   s = sum(u * u)                      the reduction (the square may be a
//                                       step of its own or its body)
//   r = g(s)                            a per-row chain of scalar steps
//   y = u * r   (or u / r)              the row times the factor
//   [cast] [* scale] [+ bias]           per-column scale and bias
//
// with u = x for RMSNorm and u = x - h(sum(x)) for LayerNorm. The per-row
// chains are judged by their values (ScalarRegion): h(s) must be s / D and
// g(s) must be 1 / sqrt(s / D + eps) (sqrt(s / D + eps) for a division) at
// sample points from 0 to 10^4 D, g(0) giving epsilon. Only then does the
// chain become one kiln.layer_norm or kiln.rms_norm over the last dim.
// A chain whose intermediates are read outside it, or that differs in any
// step, is left alone. The function records the counts in `kiln.raised`.
//
//===----------------------------------------------------------------------===//
#include "passes/ConstantEval.h"
#include "passes/Passes.h"
#include "passes/Raising.h"

#include "dialects/kiln/KilnDialect.h"
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

namespace kiln {
#define GEN_PASS_DEF_KILNRAISENORMS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// Where the per-row chains are compared, as multiples of D (the mean of
/// squares of a row: zero, tiny, typical, huge).
constexpr double kMeanSamples[] = {0, 1e-4, 0.01, 0.25, 1, 3, 50, 1e4};

/// A sum over the last dim of one input: `input`, or its squares when the
/// reduction's body squares it.
struct RowSum {
  linalg::GenericOp op;
  Value input;
  bool squares = false;
  int64_t width = 0; // D
};

bool isZeroInit(Value init, ConstantEvaluator &eval) {
  if (auto fill = init.getDefiningOp<linalg::FillOp>()) {
    auto c = fill.getInputs()[0].getDefiningOp<arith::ConstantOp>();
    auto f = c ? dyn_cast<FloatAttr>(c.getValue()) : FloatAttr();
    return f && f.getValueAsDouble() == 0;
  }
  const ConstTensor *t = eval.evaluate(init);
  return t && t->uniform() == 0.0;
}

std::optional<RowSum> matchRowSum(linalg::GenericOp g, ConstantEvaluator &eval) {
  if (g.getNumDpsInputs() != 1 || g.getNumDpsInits() != 1 ||
      g->getNumResults() != 1 || g.getNumReductionLoops() != 1)
    return std::nullopt;
  unsigned loops = g.getNumLoops();
  if (g.getIteratorTypesArray().back() != utils::IteratorType::reduction)
    return std::nullopt;
  OpOperand *in = g.getDpsInputOperand(0);
  auto type = dyn_cast<RankedTensorType>(in->get().getType());
  if (!type || !isa<FloatType>(type.getElementType()) ||
      type.isDynamicDim(type.getRank() - 1) ||
      !g.getMatchingIndexingMap(in).isIdentity())
    return std::nullopt;
  // The projection that drops the last loop.
  AffineMap out = g.getMatchingIndexingMap(g.getDpsInitOperand(0));
  if (out.getNumResults() != loops - 1)
    return std::nullopt;
  for (auto [i, expr] : llvm::enumerate(out.getResults())) {
    auto dim = dyn_cast<AffineDimExpr>(expr);
    if (!dim || dim.getPosition() != i)
      return std::nullopt;
  }
  if (!isZeroInit(g.getDpsInitOperand(0)->get(), eval))
    return std::nullopt;
  Block *body = g.getBlock();
  BlockArgument inArg = body->getArgument(0), outArg = body->getArgument(1);
  auto yield = cast<linalg::YieldOp>(body->getTerminator());
  auto add = yield.getOperand(0).getDefiningOp<arith::AddFOp>();
  if (!add)
    return std::nullopt;
  Value term = add.getLhs() == outArg ? add.getRhs()
               : add.getRhs() == outArg ? add.getLhs()
                                        : Value();
  RowSum sum{g, in->get(), false, type.getDimSize(type.getRank() - 1)};
  if (term == inArg)
    return sum;
  auto square = term ? term.getDefiningOp<arith::MulFOp>() : arith::MulFOp();
  if (square && square.getLhs() == inArg && square.getRhs() == inArg) {
    sum.squares = true;
    return sum;
  }
  return std::nullopt;
}

/// The body op of an all-parallel elementwise generic over `shape` that
/// is its one computing op.
template <typename OpT>
OpT soleOp(Operation *op) {
  auto g = dyn_cast_or_null<linalg::GenericOp>(op);
  if (!g || !isAllParallelElementwise(g))
    return {};
  return dyn_cast_or_null<OpT>(soleBodyOp(g));
}

/// The tensor operand of `g` that body value `v` reads, if `v` is an input
/// block argument.
OpOperand *operandOf(linalg::GenericOp g, Value v) {
  auto arg = dyn_cast<BlockArgument>(v);
  if (!arg || arg.getOwner() != g.getBlock() ||
      arg.getArgNumber() >= g.getNumDpsInputs())
    return nullptr;
  return g.getDpsInputOperand(arg.getArgNumber());
}

/// Whether `operand` of `g` is a per-row value: the row dims at identity,
/// the last dim dropped or read at 0 from a unit dim.
bool readsPerRow(linalg::GenericOp g, OpOperand *operand) {
  AffineMap map = g.getMatchingIndexingMap(operand);
  unsigned loops = map.getNumDims();
  auto type = dyn_cast<RankedTensorType>(operand->get().getType());
  if (!type)
    return false;
  ArrayRef<AffineExpr> results = map.getResults();
  if (results.size() == loops) {
    auto c = dyn_cast<AffineConstantExpr>(results.back());
    if (!c || c.getValue() != 0 || type.getShape().back() != 1)
      return false;
    results = results.drop_back();
  }
  if (results.size() != loops - 1)
    return false;
  for (auto [i, expr] : llvm::enumerate(results)) {
    auto dim = dyn_cast<AffineDimExpr>(expr);
    if (!dim || dim.getPosition() != i)
      return false;
  }
  return true;
}

/// Whether `operand` of `g` is a per-column value: everything but the
/// last dim of size 1 (or absent), the last dim read by the last loop.
bool readsPerColumn(linalg::GenericOp g, OpOperand *operand, int64_t width) {
  auto type = dyn_cast<RankedTensorType>(operand->get().getType());
  if (!type || type.getRank() == 0 || type.getShape().back() != width)
    return false;
  for (int64_t d : type.getShape().drop_back())
    if (d != 1)
      return false;
  return isRightAligned(g.getMatchingIndexingMap(operand), type.getShape());
}

class Raiser {
public:
  explicit Raiser(func::FuncOp func) : func(func) {}

  void run() {
    SmallVector<linalg::GenericOp> sums;
    func.walk([&](linalg::GenericOp g) { sums.push_back(g); });
    for (linalg::GenericOp g : sums)
      if (!erased.contains(g))
        raise(g);
  }

  int64_t layerNorms = 0, rmsNorms = 0;

private:
  /// The per-row chain from `sum` to the op that applies it to the rows:
  /// the chain's region and that op (the first reader over the row shape).
  std::optional<std::pair<ScalarRegion, linalg::GenericOp>>
  perRowChain(Value sum, ArrayRef<int64_t> rowShape) {
    Value cur = sum;
    for (int steps = 0; steps < 24; ++steps) {
      Operation *user = nullptr;
      for (Operation *u : cur.getUsers()) {
        if (isa<tensor::DimOp>(u))
          continue;
        if (user)
          return std::nullopt;
        user = u;
      }
      if (!user || user->getNumResults() != 1)
        return std::nullopt;
      auto g = dyn_cast<linalg::GenericOp>(user);
      auto type = dyn_cast<RankedTensorType>(user->getResult(0).getType());
      if (g && type && type.getShape() == rowShape) {
        if (cur == sum)
          return std::nullopt;
        std::optional<ScalarRegion> region =
            ScalarRegion::between(cur.getDefiningOp(), sum, eval);
        if (!region)
          return std::nullopt;
        return std::make_pair(std::move(*region), g);
      }
      if (!isScalarStep(user))
        return std::nullopt;
      cur = user->getResult(0);
    }
    return std::nullopt;
  }

  /// The largest relative error of `region` against `want` at the samples.
  std::optional<double> worstError(const ScalarRegion &region, int64_t width,
                                   llvm::function_ref<double(double)> want) {
    double worst = 0;
    for (double m : kMeanSamples) {
      double s = m * double(width);
      std::optional<double> got = region.evaluate(s, eval);
      double w = want(s);
      if (!got || !std::isfinite(*got))
        return std::nullopt;
      worst = std::max(worst, std::abs(*got - w) / std::max(std::abs(w), 1e-30));
    }
    return worst;
  }

  /// How far a per-row chain may be from its formula, relative, in units
  /// in the last place of the type it computes in.
  static double tolerance(const ScalarRegion &region) {
    return 8 * region.ulp();
  }

  void raise(linalg::GenericOp reduction) {
    std::optional<RowSum> sum = matchRowSum(reduction, eval);
    if (!sum)
      return;
    // Everything the norm replaces, checked for outside readers at the end.
    llvm::SetVector<Operation *> matched;
    matched.insert(reduction);
    Value u = sum->input;
    if (!sum->squares) {
      auto square = soleOp<arith::MulFOp>(u.getDefiningOp());
      if (!square)
        return;
      auto g = cast<linalg::GenericOp>(u.getDefiningOp());
      OpOperand *a = operandOf(g, square.getLhs());
      OpOperand *b = operandOf(g, square.getRhs());
      if (!a || !b || a->get() != b->get() ||
          !g.getMatchingIndexingMap(a).isIdentity() ||
          !g.getMatchingIndexingMap(b).isIdentity())
        return;
      matched.insert(g);
      u = a->get();
    }
    auto rowType = cast<RankedTensorType>(u.getType());
    int64_t width = sum->width;
    auto chain = perRowChain(reduction->getResult(0), rowType.getShape());
    if (!chain)
      return;
    auto &[factor, apply] = *chain;
    // y = u * r or u / r, u at the identity and r per row.
    Operation *op = soleBodyOp(apply);
    if (!op || !isAllParallelElementwise(apply) ||
        !isa<arith::MulFOp, arith::DivFOp>(op))
      return;
    OpOperand *lhs = operandOf(apply, op->getOperand(0));
    OpOperand *rhs = operandOf(apply, op->getOperand(1));
    if (!lhs || !rhs)
      return;
    bool divides = isa<arith::DivFOp>(op);
    if (!divides && lhs->get() != u)
      std::swap(lhs, rhs);
    if (lhs->get() != u || rhs->get() != factor.result() ||
        !apply.getMatchingIndexingMap(lhs).isIdentity() ||
        !readsPerRow(apply, rhs))
      return;
    // The factor: 1 / sqrt(s / D + eps), or sqrt(s / D + eps) divided by.
    std::optional<double> atZero = factor.evaluate(0, eval);
    if (!atZero || !std::isfinite(*atZero) || *atZero <= 0)
      return;
    double eps = divides ? *atZero * *atZero : 1 / (*atZero * *atZero);
    if (!(eps > 0 && eps < 1))
      return;
    double d = double(width);
    std::optional<double> error = worstError(factor, width, [&](double s) {
      double rms = std::sqrt(s / d + eps);
      return divides ? rms : 1 / rms;
    });
    if (!error || *error > tolerance(factor))
      return;
    matched.insert(factor.ops.begin(), factor.ops.end());
    matched.insert(apply);

    // LayerNorm: u = x - mean(x), the mean a plain row sum over D.
    Value x = u, bias, scale;
    bool layerNorm = false;
    if (auto sub = soleOp<arith::SubFOp>(u.getDefiningOp())) {
      auto g = cast<linalg::GenericOp>(u.getDefiningOp());
      OpOperand *a = operandOf(g, sub.getLhs());
      OpOperand *m = operandOf(g, sub.getRhs());
      if (a && m && g.getMatchingIndexingMap(a).isIdentity() &&
          readsPerRow(g, m)) {
        std::optional<ScalarRegion> mean = meanOf(m->get(), a->get(), width);
        if (mean) {
          layerNorm = true;
          x = a->get();
          matched.insert(g);
          matched.insert(mean->ops.begin(), mean->ops.end());
          matched.insert(mean->x.getDefiningOp());
        }
      }
    }
    // Statistics in f32 between Casts: the norm of the narrow input.
    if (auto ext = soleOp<arith::ExtFOp>(x.getDefiningOp())) {
      auto g = cast<linalg::GenericOp>(x.getDefiningOp());
      if (g.getMatchingIndexingMap(g.getDpsInputOperand(0)).isIdentity()) {
        matched.insert(g);
        x = g.getDpsInputOperand(0)->get();
      }
    }
    // The tail: [cast] [* scale] [+ bias].
    Value y = apply->getResult(0);
    auto next = [&]() -> linalg::GenericOp {
      Operation *user = nullptr;
      for (Operation *u : y.getUsers()) {
        if (isa<tensor::DimOp>(u))
          continue;
        if (user)
          return {};
        user = u;
      }
      return dyn_cast_or_null<linalg::GenericOp>(user);
    };
    if (auto g = next(); g && soleOp<arith::TruncFOp>(g) &&
                         getElementTypeOrSelf(g->getResult(0).getType()) ==
                             getElementTypeOrSelf(x.getType()) &&
                         g.getMatchingIndexingMap(g.getDpsInputOperand(0))
                             .isIdentity()) {
      matched.insert(g);
      y = g->getResult(0);
    }
    auto perColumn = [&](linalg::GenericOp g, auto kind) -> Value {
      using Kind = decltype(kind);
      auto body = soleOp<Kind>(g);
      if (!body)
        return {};
      OpOperand *a = operandOf(g, body.getLhs());
      OpOperand *b = operandOf(g, body.getRhs());
      if (!a || !b)
        return {};
      if (a->get() != y)
        std::swap(a, b);
      if (a->get() != y || !g.getMatchingIndexingMap(a).isIdentity() ||
          !readsPerColumn(g, b, width) ||
          getElementTypeOrSelf(b->get().getType()) !=
              getElementTypeOrSelf(y.getType()))
        return {};
      return b->get();
    };
    if (auto g = next()) {
      if ((scale = perColumn(g, arith::MulFOp()))) {
        matched.insert(g);
        y = g->getResult(0);
      }
    }
    if (layerNorm)
      if (auto g = next()) {
        if ((bias = perColumn(g, arith::AddFOp()))) {
          matched.insert(g);
          y = g->getResult(0);
        }
      }
    if (y.getType() != x.getType())
      return;
    // Nothing in between read elsewhere.
    Operation *last = y.getDefiningOp();
    for (Operation *m : matched)
      if (m != last)
        for (Operation *user : m->getUsers())
          if (!matched.contains(user) && !isa<tensor::DimOp>(user))
            return;

    OpBuilder b(last);
    Location loc = last->getLoc();
    Type element = getElementTypeOrSelf(x.getType());
    auto columns = [&](Value v) {
      return v ? buildReshape(b, loc, v, {width}) : Value();
    };
    scale = columns(scale);
    bias = columns(bias);
    if (!scale)
      scale = arith::ConstantOp::create(
          b, loc,
          DenseElementsAttr::get(RankedTensorType::get({width}, element),
                                 b.getFloatAttr(element, 1.0)));
    IntegerAttr axis = b.getI64IntegerAttr(-1);
    FloatAttr epsilon = b.getF32FloatAttr(float(eps));
    Value norm;
    if (layerNorm) {
      norm = LayerNormOp::create(b, loc, x.getType(), x, scale, bias, axis,
                                 epsilon);
      ++layerNorms;
    } else {
      norm = RmsNormOp::create(b, loc, x.getType(), x, scale, axis, epsilon);
      ++rmsNorms;
    }
    y.replaceAllUsesWith(norm);
    SmallVector<Operation *> ordered(matched.begin(), matched.end());
    llvm::sort(ordered, [](Operation *a, Operation *b) {
      return b->isBeforeInBlock(a);
    });
    for (Operation *m : ordered) {
      erased.insert(m);
      redirectDims(m, x);
      m->erase();
    }
  }

  /// The per-row chain `m` if it is the mean of `x` over the last dim: a
  /// plain row sum of x, then steps that make it s / D.
  std::optional<ScalarRegion> meanOf(Value m, Value x, int64_t width) {
    Operation *root = m.getDefiningOp();
    // The sum is the one row sum the chain reaches back to.
    for (Operation *op = root; op && isScalarStep(op);) {
      Value in = op->getOperand(0);
      if (auto g = dyn_cast<linalg::GenericOp>(op)) {
        Value found;
        for (OpOperand *operand : g.getDpsInputOperands()) {
          const ConstTensor *c = eval.evaluate(operand->get());
          if (c && c->uniform())
            continue;
          if (found)
            return std::nullopt;
          found = operand->get();
        }
        in = found;
      }
      if (!in)
        return std::nullopt;
      auto g = in.getDefiningOp<linalg::GenericOp>();
      std::optional<RowSum> sum = g ? matchRowSum(g, eval) : std::nullopt;
      if (sum && !sum->squares && sum->input == x && sum->width == width) {
        std::optional<ScalarRegion> region = ScalarRegion::between(root, in, eval);
        if (!region)
          return std::nullopt;
        std::optional<double> error = worstError(
            *region, width, [&](double s) { return s / double(width); });
        if (!error || *error > tolerance(*region))
          return std::nullopt;
        return region;
      }
      op = in.getDefiningOp();
    }
    return std::nullopt;
  }

  func::FuncOp func;
  ConstantEvaluator eval{1 << 16};
  llvm::DenseSet<Operation *> erased;
};

struct KilnRaiseNormsPass final
    : kiln::impl::KilnRaiseNormsBase<KilnRaiseNormsPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    Raiser raiser(func);
    raiser.run();
    recordRaised(func, "layer_norm", raiser.layerNorms);
    recordRaised(func, "rms_norm", raiser.rmsNorms);
  }
};

} // namespace
