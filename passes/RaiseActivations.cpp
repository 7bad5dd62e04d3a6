//===- RaiseActivations.cpp - decomposed GELU and SiLU into kiln ops ------===//
//
// Exporters write GELU and SiLU as their formulas: BERT's erf GELU is
// Div(x, 1.414) -> Erf -> Add 1 -> Mul x -> Mul 0.5, GPT-2's tanh GELU is
// eight nodes around Pow(x, 3) and Tanh, LLaMA's SiLU is Sigmoid -> Mul x,
// and every exporter version orders the factors its own way. Rather than
// spell each order as a pattern, this pass lets the numbers judge: it takes
// a region of elementwise generics whose only inputs are one tensor x and
// uniform constants, evaluates it as a scalar function of x at sample
// points across both tails and the knee, and raises it when it is one of
// the activations there:
//
//   erf GELU   0.5 x (1 + erf(x / sqrt 2))            -> kiln.gelu %x
//   tanh GELU  0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))
//                                                    -> kiln.gelu %x {tanh_approximation}
//   SiLU       x sigmoid(x)                           -> kiln.silu %x
//
// The tolerance is that of the element type the exporter's constants were
// stored in (an f16 model's sqrt(2/pi) is not f32's); where the two GELUs
// both fit (bf16 cannot tell them apart), the closer one is taken. A region
// whose intermediate values are read outside it, or whose function is
// anything else (a clamp, a scaled GELU), is left alone. The function
// records the counts in `kiln.raised` (gelu, silu).
//
//===----------------------------------------------------------------------===//
#include "passes/ConstantEval.h"
#include "passes/Passes.h"
#include "passes/Raising.h"

#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"

#include <cmath>

namespace kiln {
#define GEN_PASS_DEF_KILNRAISEACTIVATIONS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// Where the functions are compared: both tails (where GELU is x or 0 and
/// SiLU is x or 0), the knee, and zero.
constexpr double kSamples[] = {-9,   -6,   -4,    -3,  -2.25, -1.5, -1,
                               -0.6, -0.3, -0.05, 0,   0.05,  0.3,  0.6,
                               1,    1.5,  2.25,  3,   4,     6,    9};

/// The largest region considered: a GELU is at most ten ops in any export.
constexpr size_t kMaxRegion = 24;

double geluErf(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double geluTanh(double x) {
  return 0.5 * x *
         (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
double silu(double x) { return x / (1 + std::exp(-x)); }

/// How far from the activation the region may be, relative to max(1, |y|),
/// in units in the last place of the type it computes in.
constexpr double kUlps = 4;

enum class Activation { None, GeluErf, GeluTanh, Silu };

class Raiser {
public:
  explicit Raiser(func::FuncOp func) : func(func) {}

  void run() {
    SmallVector<linalg::GenericOp> roots;
    func.walk([&](linalg::GenericOp g) { roots.push_back(g); });
    // The last op of a region first, so a region is raised whole.
    for (linalg::GenericOp root : llvm::reverse(roots))
      if (!erased.contains(root))
        raise(root);
  }

  int64_t gelus = 0, silus = 0;

private:
  std::optional<double> uniformValue(Value v) {
    if (const ConstTensor *t = eval.evaluate(v))
      return t->uniform();
    return std::nullopt;
  }

  /// The steps reachable backwards from `root` (itself first), breadth
  /// first, and the non-constant values they read: the candidates for x.
  SmallVector<Value> candidates(linalg::GenericOp root) {
    SmallVector<Value> found;
    SmallVector<Operation *> queue = {root};
    llvm::DenseSet<Operation *> seen = {root};
    for (size_t i = 0; i < queue.size() && queue.size() <= kMaxRegion; ++i) {
      for (Value v : queue[i]->getOperands()) {
        if (auto g = dyn_cast<linalg::GenericOp>(queue[i]);
            g && llvm::is_contained(g.getDpsInits(), v))
          continue;
        if (llvm::is_contained(found, v) || uniformValue(v))
          continue;
        found.push_back(v);
        Operation *def = v.getDefiningOp();
        if (isScalarStep(def) && seen.insert(def).second)
          queue.push_back(def);
      }
    }
    return found;
  }

  /// Which activation the region computes, if any, within `tolerance`.
  Activation judge(const ScalarRegion &region, double tolerance) {
    std::pair<Activation, double (*)(double)> known[] = {
        {Activation::GeluErf, geluErf},
        {Activation::GeluTanh, geluTanh},
        {Activation::Silu, silu}};
    double worst[3] = {0, 0, 0};
    for (double t : kSamples) {
      std::optional<double> y = region.evaluate(t, eval);
      if (!y || !std::isfinite(*y))
        return Activation::None;
      for (auto [i, entry] : llvm::enumerate(known)) {
        double want = entry.second(t);
        worst[i] = std::max(worst[i], std::abs(*y - want) /
                                          std::max(1.0, std::abs(want)));
      }
    }
    size_t best = std::min_element(std::begin(worst), std::end(worst)) -
                  std::begin(worst);
    return worst[best] <= tolerance ? known[best].first : Activation::None;
  }

  void raise(linalg::GenericOp root) {
    if (!isScalarStep(root))
      return;
    auto type = dyn_cast<RankedTensorType>(root->getResult(0).getType());
    if (!type)
      return;
    for (Value x : candidates(root)) {
      if (x.getType() != type)
        continue;
      std::optional<ScalarRegion> region =
          ScalarRegion::between(root, x, eval, kMaxRegion);
      if (!region)
        continue;
      Activation activation = judge(*region, kUlps * region->ulp());
      if (activation == Activation::None)
        continue;
      replace(*region, activation);
      return;
    }
  }

  void replace(ScalarRegion &region, Activation activation) {
    Operation *root = region.ops.front();
    OpBuilder b(root);
    Value raised;
    if (activation == Activation::Silu) {
      raised = SiluOp::create(b, root->getLoc(), region.x);
      ++silus;
    } else {
      auto gelu = GeluOp::create(b, root->getLoc(), region.x);
      if (activation == Activation::GeluTanh)
        gelu.setTanhApproximation(true);
      raised = gelu;
      ++gelus;
    }
    root->getResult(0).replaceAllUsesWith(raised);
    for (Operation *op : region.ops)
      erased.insert(op);
    region.erase();
  }

  func::FuncOp func;
  ConstantEvaluator eval{1 << 16};
  llvm::DenseSet<Operation *> erased;
};

struct KilnRaiseActivationsPass final
    : kiln::impl::KilnRaiseActivationsBase<KilnRaiseActivationsPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    Raiser raiser(func);
    raiser.run();
    recordRaised(func, "gelu", raiser.gelus);
    recordRaised(func, "silu", raiser.silus);
  }
};

} // namespace
