//===- RaiseAttention.cpp - decomposed attention into kiln.attention ------===//
//
// Exporters write attention as its pieces: the TorchScript exporter's
// scaled_dot_product_attention is
//
//   scores = (q * s1) @ (transpose(k) * s2)      (or q @ kT / sqrt(d))
//   scores = scores + mask                        (Add; or Where(cond, scores, -big))
//   probs  = Softmax(scores, axis = -1)
//   out    = probs @ v
//
// with the heads split by Reshape/Transpose around it, and LLaMA-family
// models repeat K and V over the query heads (Unsqueeze, Expand, Reshape)
// for grouped-query attention. This pass finds that chain, from the scores
// contraction forward, and replaces it by one kiln.attention, so that a
// kernel strategy can run it without writing the scores to memory:
//
// - scale: every multiplication or division by a uniform constant of q, of
//   kT or of the scores before the first mask;
// - key: kT transposed back (a transpose of a transpose is folded into one
//   permutation of the source, usually the identity); K and V repeated over
//   heads are replaced by the tensors before the repetition (the op groups
//   query heads over KV heads itself);
// - masks: additive terms and Where(cond, scores, fill) with a fill below
//   kMaskedBelow; a term whose value the graph computes from constants and
//   that is the causal pattern (0 on and below a diagonal, masked above)
//   becomes `causal_offset`, a term of zeros is dropped, the rest are summed
//   into `bias`.
//
// Anything else in the chain (a subtraction, a mask after a scale, a value
// used outside the chain) leaves the chain alone: an attention that almost
// matches is not raised. The number raised is recorded on the function as
// `kiln.raised = {attention = N}`.
//
//===----------------------------------------------------------------------===//
#include "passes/ConstantEval.h"
#include "passes/Passes.h"
#include "passes/Raising.h"

#include "dialects/kiln/KilnDialect.h"
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/Verifier.h"

#include "llvm/ADT/SetVector.h"

#include <cmath>

namespace kiln {
#define GEN_PASS_DEF_KILNRAISEATTENTION
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// A Where's fill, or a mask term's masked value, must be at most this to
/// count as masking a key out (HF uses finfo.min, older exports -1e4).
constexpr double kMaskedBelow = -1.0e4;

/// One elementwise step between the scores and the softmax.
struct Step {
  enum Kind { Scale, AddBias, SelectBias, Widen, Tanh } kind;
  linalg::GenericOp op;
  unsigned mainIndex = 0; // the input that carries the chain
  double factor = 1;      // Scale
  Value side;             // AddBias: the term; SelectBias: the condition
  double fill = 0;        // SelectBias: the value of a masked score
  bool maskWhenTrue = false; // SelectBias: cond true masks (Where(c, fill, s))
};

class Raiser {
public:
  /// `symbolic`: chains with symbolic batch, query or key counts are
  /// raised too (for a target whose attention kernel takes them).
  Raiser(func::FuncOp func, bool halfOnly, bool symbolic, int64_t minHead = 0,
         int64_t maxHead = 0, int64_t headMultiple = 1)
      : func(func), halfOnly(halfOnly), symbolic(symbolic), minHead(minHead),
        maxHead(maxHead), headMultiple(std::max<int64_t>(headMultiple, 1)) {}

  int64_t run() {
    SmallVector<MatmulOp> candidates;
    func.walk([&](MatmulOp op) { candidates.push_back(op); });
    int64_t raised = 0;
    for (MatmulOp op : candidates)
      if (!erased.contains(op) && raise(op))
        ++raised;
    return raised;
  }

private:
  /// A uniform constant's value (an operand the evaluator can compute and
  /// whose elements are all equal, or a scalar constant in the body).
  std::optional<double> uniformValue(Value v) {
    if (const ConstTensor *t = eval.evaluate(v))
      return t->uniform();
    return std::nullopt;
  }

  /// The value a body argument or scalar stands for: operand `n` of `g`.
  std::optional<double> scalarOperand(linalg::GenericOp g, Value v) {
    if (auto arg = dyn_cast<BlockArgument>(v)) {
      if (arg.getOwner() != g.getBlock())
        return std::nullopt;
      return uniformValue(g->getOperand(arg.getArgNumber()));
    }
    if (auto c = v.getDefiningOp<arith::ConstantOp>())
      if (auto f = dyn_cast<FloatAttr>(c.getValue()))
        return f.getValueAsDouble();
    return std::nullopt;
  }

  /// `g` as one step of the chain, reading the chain's value as input
  /// `mainIndex`.
  std::optional<Step> classify(linalg::GenericOp g, unsigned mainIndex) {
    if (!isAllParallelElementwise(g))
      return std::nullopt;
    auto resultType = cast<RankedTensorType>(g->getResult(0).getType());
    OpOperand &main = g->getOpOperand(mainIndex);
    Operation *op = soleBodyOp(g);
    Value mainArg = g.getBlock()->getArgument(mainIndex);
    if (!op || !g.getMatchingIndexingMap(&main).isIdentity())
      return std::nullopt;
    // A half-precision model's scores widened to f32 for the softmax
    // (HF's softmax(dtype=float32)): one extf of the chain's value.
    auto mainType = cast<RankedTensorType>(main.get().getType());
    if (auto ext = dyn_cast<arith::ExtFOp>(op);
        ext && ext.getIn() == mainArg && g.getNumDpsInputs() == 1 &&
        mainType.getShape() == resultType.getShape() &&
        resultType.getElementType().isF32() &&
        (mainType.getElementType().isF16() ||
         mainType.getElementType().isBF16()))
      return Step{Step::Widen, g, mainIndex};
    if (main.get().getType() != resultType)
      return std::nullopt;
    // Softcapping's tanh (between scales by 1 / cap and cap).
    if (auto tanh = dyn_cast<math::TanhOp>(op);
        tanh && tanh.getOperand() == mainArg && g.getNumDpsInputs() == 1)
      return Step{Step::Tanh, g, mainIndex};
    // The operand of `g` that a body value other than the chain reads, if it
    // is a right-aligned broadcast input.
    auto sideOperand = [&](Value v) -> Value {
      auto arg = dyn_cast<BlockArgument>(v);
      if (!arg || arg.getOwner() != g.getBlock() || arg == mainArg ||
          arg.getArgNumber() >= g.getNumDpsInputs())
        return {};
      OpOperand &operand = g->getOpOperand(arg.getArgNumber());
      auto type = dyn_cast<RankedTensorType>(operand.get().getType());
      if (!type || !isRightAligned(g.getMatchingIndexingMap(&operand),
                                   type.getShape()))
        return {};
      return operand.get();
    };
    Step step;
    step.op = g;
    step.mainIndex = mainIndex;
    auto other = [&](Operation *binary) -> std::optional<Value> {
      if (binary->getOperand(0) == mainArg)
        return binary->getOperand(1);
      if (binary->getOperand(1) == mainArg)
        return binary->getOperand(0);
      return std::nullopt;
    };
    if (isa<arith::MulFOp, arith::AddFOp>(op)) {
      std::optional<Value> x = other(op);
      if (!x)
        return std::nullopt;
      if (isa<arith::MulFOp>(op)) {
        std::optional<double> c = scalarOperand(g, *x);
        if (!c)
          return std::nullopt;
        step.kind = Step::Scale;
        step.factor = *c;
        return step;
      }
      Value side = sideOperand(*x);
      if (!side || cast<ShapedType>(side.getType()).getElementType() !=
                       resultType.getElementType())
        return std::nullopt;
      step.kind = Step::AddBias;
      step.side = side;
      return step;
    }
    if (auto div = dyn_cast<arith::DivFOp>(op)) {
      if (div.getLhs() != mainArg)
        return std::nullopt;
      std::optional<double> c = scalarOperand(g, div.getRhs());
      if (!c || *c == 0)
        return std::nullopt;
      step.kind = Step::Scale;
      step.factor = 1 / *c;
      return step;
    }
    if (auto select = dyn_cast<arith::SelectOp>(op)) {
      Value cond = sideOperand(select.getCondition());
      if (!cond)
        return std::nullopt;
      Value fill;
      if (select.getTrueValue() == mainArg) {
        fill = select.getFalseValue();
        step.maskWhenTrue = false;
      } else if (select.getFalseValue() == mainArg) {
        fill = select.getTrueValue();
        step.maskWhenTrue = true;
      } else {
        return std::nullopt;
      }
      std::optional<double> f = scalarOperand(g, fill);
      if (!f || !(*f <= kMaskedBelow))
        return std::nullopt;
      step.kind = Step::SelectBias;
      step.side = cond;
      step.fill = *f;
      return step;
    }
    return std::nullopt;
  }

  /// The exporters' safe softmax after `p` (torch's SDPA export):
  /// Where(IsNaN(p), 0, p), which gives 0 for a row whose keys are all
  /// masked, as kiln.attention does. Its result and its two ops, innermost
  /// last; nothing if `p` is not used that way.
  std::optional<std::pair<Value, SmallVector<Operation *>>>
  stripSafeSoftmax(Value p) {
    SmallVector<linalg::GenericOp> users;
    for (OpOperand &use : p.getUses()) {
      if (isa<tensor::DimOp>(use.getOwner()))
        continue;
      auto g = dyn_cast<linalg::GenericOp>(use.getOwner());
      if (!g || use.getOperandNumber() >= g.getNumDpsInputs() ||
          !isAllParallelElementwise(g) ||
          !g.getMatchingIndexingMap(&use).isIdentity())
        return std::nullopt;
      users.push_back(g);
    }
    if (users.size() != 2)
      return std::nullopt;
    auto isNaNOf = [&](linalg::GenericOp g) {
      auto cmp = dyn_cast_or_null<arith::CmpFOp>(soleBodyOp(g));
      Value arg = g.getBlock()->getArgument(0);
      return g.getNumDpsInputs() == 1 && cmp &&
             cmp.getPredicate() == arith::CmpFPredicate::UNO &&
             cmp.getLhs() == arg && cmp.getRhs() == arg;
    };
    linalg::GenericOp isNaN = users[0], where = users[1];
    if (!isNaNOf(isNaN))
      std::swap(isNaN, where);
    if (!isNaNOf(isNaN) || soleUse(isNaN->getResult(0)) == nullptr ||
        where->getResult(0).getType() != p.getType())
      return std::nullopt;
    auto select = dyn_cast_or_null<arith::SelectOp>(soleBodyOp(where));
    if (!select)
      return std::nullopt;
    // The body argument that reads `v` through an identity map.
    auto reads = [&](Value arg, Value v) {
      auto a = dyn_cast<BlockArgument>(arg);
      if (!a || a.getOwner() != where.getBlock() ||
          a.getArgNumber() >= where.getNumDpsInputs())
        return false;
      OpOperand &operand = where->getOpOperand(a.getArgNumber());
      return operand.get() == v &&
             where.getMatchingIndexingMap(&operand).isIdentity();
    };
    std::optional<double> zero = scalarOperand(where, select.getTrueValue());
    if (!reads(select.getCondition(), isNaN->getResult(0)) ||
        !reads(select.getFalseValue(), p) || !zero || *zero != 0)
      return std::nullopt;
    return std::make_pair(where->getResult(0),
                          SmallVector<Operation *>{where, isNaN});
  }

  /// Whether `g` only rounds its one input to `element` (truncf).
  static bool narrowsTo(linalg::GenericOp g, Type element) {
    if (!isAllParallelElementwise(g) || g.getNumDpsInputs() != 1 ||
        !g.getMatchingIndexingMap(g.getDpsInputOperand(0)).isIdentity())
      return false;
    auto trunc = dyn_cast_or_null<arith::TruncFOp>(soleBodyOp(g));
    return trunc && trunc.getIn() == g.getBlock()->getArgument(0) &&
           trunc.getType() == element;
  }

  /// `v` with its multiplications by uniform constants peeled off (each
  /// used only here), their product folded into `scale`.
  Value peelScale(Value v, double &scale, SmallVector<Operation *> &dead) {
    while (auto g = v.getDefiningOp<linalg::GenericOp>()) {
      if (!soleUse(v) || g.getNumDpsInputs() == 0)
        break;
      std::optional<Step> step;
      for (unsigned i = 0; i < g.getNumDpsInputs() && !step; ++i)
        if (auto s = classify(g, i); s && s->kind == Step::Scale)
          step = s;
      if (!step)
        break;
      scale *= step->factor;
      dead.push_back(g);
      v = g.getDpsInputOperand(step->mainIndex)->get();
    }
    return v;
  }

  /// K ([.., L, D]) from kT ([.., D, L]).
  Value untranspose(OpBuilder &b, Location loc, Value kT,
                    SmallVector<Operation *> &dead) {
    auto type = cast<RankedTensorType>(kT.getType());
    int64_t rank = type.getRank();
    SmallVector<int64_t> swap = llvm::to_vector(llvm::seq<int64_t>(0, rank));
    std::swap(swap[rank - 1], swap[rank - 2]);
    if (auto t = kT.getDefiningOp<linalg::TransposeOp>(); t && soleUse(kT)) {
      ArrayRef<int64_t> p = t.getPermutation();
      SmallVector<int64_t> composed;
      for (int64_t i = 0; i < rank; ++i)
        composed.push_back(p[swap[i]]);
      dead.push_back(t);
      Value source = t.getInput();
      if (llvm::equal(composed, llvm::seq<int64_t>(0, rank)))
        return source;
      return transpose(b, loc, source, composed);
    }
    // [B, H, D, L] = expand(transpose3(collapse([B, H, L, D]))): the dynamo
    // exporter's K^T through a 3-D transpose.
    if (auto expand = kT.getDefiningOp<tensor::ExpandShapeOp>();
        expand && rank == 4 && soleUse(kT)) {
      auto t = expand.getSrc().getDefiningOp<linalg::TransposeOp>();
      if (t && t.getPermutation() == ArrayRef<int64_t>{0, 2, 1} &&
          expand.getReassociationIndices() ==
              SmallVector<ReassociationIndices>{{0, 1}, {2}, {3}})
        if (auto collapse = t.getInput().getDefiningOp<tensor::CollapseShapeOp>()) {
          ArrayRef<int64_t> src = shapeOf(collapse.getSrc());
          if (collapse.getReassociationIndices() ==
                  SmallVector<ReassociationIndices>{{0, 1}, {2}, {3}} &&
              src.take_front(2) == type.getShape().take_front(2)) {
            dead.append({expand, t});
            return collapse.getSrc();
          }
          // K repeated over grouped query heads, the repetition folded into
          // the 3-D batch too ([B, Hkv, g, L, D] to [B * Hkv * g, L, D]):
          // [B, Hkv * g, L, D], which stripRepeat sees through.
          if (collapse.getReassociationIndices() ==
                  SmallVector<ReassociationIndices>{{0, 1, 2}, {3}, {4}} &&
              src.size() == 5 && src[0] == type.getDimSize(0) &&
              !ShapedType::isDynamic(src[1]) &&
              !ShapedType::isDynamic(src[2]) &&
              src[1] * src[2] == type.getDimSize(1)) {
            dead.append({expand, t});
            return tensor::CollapseShapeOp::create(
                b, loc, collapse.getSrc(),
                SmallVector<ReassociationIndices>{{0}, {1, 2}, {3}, {4}});
          }
        }
    }
    return transpose(b, loc, kT, swap);
  }

  Value transpose(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> perm) {
    ArrayRef<int64_t> s = shapeOf(x);
    SmallVector<int64_t> shape;
    SmallVector<Value> dynamicSizes;
    for (int64_t p : perm) {
      shape.push_back(s[p]);
      if (ShapedType::isDynamic(s[p]))
        dynamicSizes.push_back(tensor::DimOp::create(b, loc, x, p));
    }
    Value init = tensor::EmptyOp::create(b, loc, shape, elementTypeOf(x),
                                         dynamicSizes);
    return linalg::TransposeOp::create(b, loc, x, init, perm)->getResult(0);
  }

  /// For K or V repeated over query heads ([B, Hkv * g, L, D] as
  /// collapse(broadcast([B, Hkv, 1, L, D]))): the tensor before the
  /// repetition and g.
  std::optional<std::pair<Value, int64_t>> stripRepeat(Value x) {
    auto collapse = x.getDefiningOp<tensor::CollapseShapeOp>();
    if (!collapse || collapse.getReassociationIndices() !=
                         SmallVector<ReassociationIndices>{{0}, {1, 2}, {3}, {4}})
      return std::nullopt;
    auto g = collapse.getSrc().getDefiningOp<linalg::GenericOp>();
    if (!g || !isAllParallelElementwise(g) ||
        !isa<BlockArgument>(
            cast<linalg::YieldOp>(g.getBlock()->getTerminator()).getOperand(0)))
      return std::nullopt;
    auto arg = cast<BlockArgument>(
        cast<linalg::YieldOp>(g.getBlock()->getTerminator()).getOperand(0));
    if (arg.getArgNumber() >= g.getNumDpsInputs())
      return std::nullopt;
    OpOperand &input = g->getOpOperand(arg.getArgNumber());
    ArrayRef<int64_t> rep = shapeOf(g->getResult(0));
    ArrayRef<int64_t> in = shapeOf(input.get());
    if (rep.size() != 5 || in.size() != 5 || in[2] != 1 ||
        !isRightAligned(g.getMatchingIndexingMap(&input), in))
      return std::nullopt;
    auto expand = input.get().getDefiningOp<tensor::ExpandShapeOp>();
    if (!expand || shapeOf(expand.getSrc()).size() != 4 ||
        shapeOf(expand.getSrc())[1] != in[1])
      return std::nullopt;
    return std::make_pair(expand.getSrc(), rep[2]);
  }

  /// What a mask term is: zeros, a causal pattern (its offset; with
  /// `fromEnd`, counted from the keys in front of the queries), or anything
  /// else (neither set).
  struct MaskKind {
    bool zero = false;
    std::optional<int64_t> causal;
    bool fromEnd = false;
    bool operator==(const MaskKind &o) const {
      return zero == o.zero && causal == o.causal && fromEnd == o.fromEnd;
    }
  };
  static MaskKind classifyMask(const Step &s, const ConstTensor &t, int64_t sq,
                               int64_t skv) {
    ConstTensor asBias = t;
    if (s.kind == Step::SelectBias)
      for (double &value : asBias.values)
        value = (value != 0) == s.maskWhenTrue ? s.fill : 0.0;
    if (asBias.uniform() == 0.0)
      return {true, std::nullopt};
    return {false, causalOffsetOf(asBias, sq, skv)};
  }

  /// A mask term of a symbolic chain, computed from the function's dims
  /// (an iota of the sequence length compared with another): evaluated at
  /// sample sizes of every symbolic dim within its bounds (small, middle,
  /// larger, and the bounds themselves where the tensor is small enough),
  /// it must be the same kind at each. A term that depends on an input's
  /// values (a padding mask) cannot be evaluated and stays a bias. Where
  /// the samples stop short of a dim's upper bound, a term whose slice
  /// holds an integer past the samples (a window length) or a table
  /// larger than they read must be judged at the bounds as well. A causal
  /// pattern whose offset differs between samples but is the keys minus
  /// the queries at each (a past of symbolic length in front of the
  /// queries, GPT-2's slice of its triangle) is aligned to the end.
  std::optional<MaskKind> classifySymbolicMask(const Step &s, Value q,
                                               Value kT, int64_t rank) {
    if (!sampled) {
      sampleDims();
      sampled = true;
    }
    if (samples.empty())
      return std::nullopt;
    bool needsTop = boundsPastReach && hidesThreshold(s.side, reach);
    std::optional<MaskKind> agreed;
    bool same = true, endAligned = true;
    for (Sample &sample : samples) {
      ConstantEvaluator &ev = *sample.eval;
      const ConstTensor *t = ev.evaluate(s.side);
      std::optional<int64_t> sq = ev.dimOf(q, rank - 2);
      std::optional<int64_t> skv = ev.dimOf(kT, rank - 1);
      if (!t || !sq || !skv) {
        // Too large to evaluate at the bounds: fine unless needed there.
        if (sample.atBounds && !needsTop)
          continue;
        return std::nullopt;
      }
      MaskKind kind = classifyMask(s, *t, *sq, *skv);
      if (!kind.zero && !kind.causal)
        return std::nullopt;
      endAligned &= kind.causal && *kind.causal == *skv - *sq;
      same &= !agreed || *agreed == kind;
      agreed = agreed.value_or(kind);
    }
    if (!agreed || same)
      return agreed;
    if (endAligned)
      return MaskKind{false, 0, true};
    return std::nullopt;
  }

  /// One sample of the function's symbolic dims, with an evaluator bound
  /// to it; `atBounds` for the one at their upper bounds.
  struct Sample {
    bool atBounds;
    std::unique_ptr<ConstantEvaluator> eval;
  };

  /// The samples of the function's symbolic dims (`kiln.dim_bounds`), made
  /// once per function: four below the bounds and one at them; `reach`, the
  /// largest size the ones below give, and whether the bounds go past it.
  void sampleDims() {
    auto bounds = func->getAttrOfType<DictionaryAttr>("kiln.dim_bounds");
    if (!bounds || bounds.empty())
      return;
    for (NamedAttribute entry : bounds) {
      auto range = dyn_cast<DenseI64ArrayAttr>(entry.getValue());
      if (!range || range.size() != 2)
        return;
    }
    auto add = [&](llvm::StringMap<int64_t> sizes, bool atBounds) {
      samples.push_back({atBounds, std::make_unique<ConstantEvaluator>()});
      samples.back().eval->bindDims(std::move(sizes));
    };
    // Different sizes for different dims (a sum of two dims must not look
    // like one of them), at least 2 where the bounds allow (a 1 x 1 causal
    // mask masks nothing).
    // The step between dims differs between samples too, so that the
    // difference of two dims (the keys in front of the queries) is not the
    // same at every sample and cannot pass for a fixed offset.
    for (int64_t base : {2, 7, 19, 48}) {
      llvm::StringMap<int64_t> sizes;
      int64_t i = 0, step = 3 + base % 5;
      for (NamedAttribute entry : bounds) {
        auto range = cast<DenseI64ArrayAttr>(entry.getValue());
        int64_t lo = range[0], hi = range[1];
        int64_t size = std::clamp<int64_t>(
            std::max<int64_t>(lo, base) + step * i++, lo, hi);
        sizes[entry.getName().getValue()] = size;
        reach = std::max(reach, size);
      }
      add(std::move(sizes), false);
    }
    llvm::StringMap<int64_t> top;
    for (NamedAttribute entry : bounds) {
      int64_t hi = cast<DenseI64ArrayAttr>(entry.getValue())[1];
      top[entry.getName().getValue()] = hi;
      boundsPastReach |= hi > reach;
    }
    add(std::move(top), true);
  }

  /// Whether the values `v` is computed from include an integer constant
  /// in (reach, 2^31) (a length the samples would not reach) or a dense
  /// table of more than reach² elements.
  static bool hidesThreshold(Value v, int64_t reach) {
    SmallVector<Value> work = {v};
    llvm::DenseSet<Value> seen;
    auto risky = [&](Attribute attr) {
      auto elements = dyn_cast<ElementsAttr>(attr);
      if (elements && elements.getNumElements() > reach * reach)
        return true;
      auto check = [&](const APInt &x) {
        if (x.getSignificantBits() > 32)
          return false;
        int64_t value = x.getSExtValue();
        return value > reach || value < -reach;
      };
      if (auto i = dyn_cast<IntegerAttr>(attr))
        return i.getType().isInteger(1) ? false : check(i.getValue());
      if (auto dense = dyn_cast<DenseIntElementsAttr>(attr))
        return llvm::any_of(dense.getValues<APInt>(), check);
      return false;
    };
    while (!work.empty()) {
      Value x = work.pop_back_val();
      if (!seen.insert(x).second)
        continue;
      Operation *def = x.getDefiningOp();
      if (!def)
        continue;
      if (auto constant = dyn_cast<arith::ConstantOp>(def)) {
        if (risky(constant.getValue()))
          return true;
        continue;
      }
      work.append(def->operand_begin(), def->operand_end());
      def->walk([&](Operation *inner) {
        if (auto constant = dyn_cast<arith::ConstantOp>(inner);
            constant && inner != def && risky(constant.getValue()))
          work.push_back(constant);
        for (Value operand : inner->getOperands())
          if (!def->isAncestor(operand.getParentBlock()->getParentOp()))
            work.push_back(operand);
      });
    }
    return false;
  }

  /// The offset of a causal pattern over the last two dims ([S, L]) of a
  /// mask value, the same in every leading slice: 0 at (i, j) for
  /// j <= i + offset, masked above. Nothing if the value is not one.
  static std::optional<int64_t> causalOffsetOf(const ConstTensor &t, int64_t s,
                                               int64_t l) {
    size_t rank = t.shape.size();
    if (rank < 2 || t.shape[rank - 2] != s || t.shape[rank - 1] != l || s < 1)
      return std::nullopt;
    int64_t slice = s * l;
    for (int64_t n = slice; n < t.size(); ++n)
      if (t.values[n] != t.values[n % slice])
        return std::nullopt;
    std::optional<int64_t> offset;
    for (int64_t i = 0; i < s; ++i) {
      int64_t allowed = 0;
      while (allowed < l && t.values[i * l + allowed] == 0)
        ++allowed;
      for (int64_t j = allowed; j < l; ++j)
        if (!(t.values[i * l + j] <= kMaskedBelow))
          return std::nullopt;
      if (allowed == l)
        continue; // row i allows every key: offset >= l - 1 - i
      int64_t rowOffset = allowed - 1 - i;
      if (offset && *offset != rowOffset)
        return std::nullopt;
      offset = rowOffset;
    }
    if (!offset || *offset < 0)
      return std::nullopt;
    // Rows that allowed every key must agree with it.
    for (int64_t i = 0; i < s; ++i)
      if (i + *offset + 1 < l &&
          t.values[i * l + i + *offset + 1] == 0)
        return std::nullopt;
    return offset;
  }

  bool raise(MatmulOp qk) {
    auto scoresType = cast<RankedTensorType>(qk.getType());
    int64_t rank = scoresType.getRank();
    Type element = scoresType.getElementType();
    if ((rank != 3 && rank != 4) || !isa<FloatType>(element))
      return false;
    // Symbolic batch, query and key counts, where the target takes them:
    // 4-D (heads and head sizes static); the masks are then not
    // constants the evaluator can judge, so they stay biases.
    if (halfOnly && !(element.isF16() || element.isBF16()))
      return false;
    bool dynamic = !scoresType.hasStaticShape();
    if (dynamic && (!symbolic || rank != 4 || scoresType.isDynamicDim(1)))
      return false;
    // Forward from the scores to the softmax, each value used once.
    SmallVector<Step> steps;
    Value x = qk.getResult();
    SoftmaxOp softmax;
    while (true) {
      OpOperand *sole = soleUse(x);
      if (!sole)
        return false;
      OpOperand &use = *sole;
      if (auto s = dyn_cast<SoftmaxOp>(use.getOwner())) {
        softmax = s;
        break;
      }
      auto g = dyn_cast<linalg::GenericOp>(use.getOwner());
      if (!g || use.getOperandNumber() >= g.getNumDpsInputs())
        return false;
      std::optional<Step> step = classify(g, use.getOperandNumber());
      if (!step)
        return false;
      // A scale or a softcap after a mask would apply to the mask too; one
      // widening, one softcap.
      auto isMask = [](const Step &s) {
        return s.kind == Step::AddBias || s.kind == Step::SelectBias;
      };
      if ((step->kind == Step::Scale || step->kind == Step::Tanh) &&
          llvm::any_of(steps, isMask))
        return false;
      if ((step->kind == Step::Widen || step->kind == Step::Tanh) &&
          llvm::any_of(steps,
                       [&](const Step &s) { return s.kind == step->kind; }))
        return false;
      steps.push_back(*step);
      x = g->getResult(0);
    }
    Value probs = softmax.getResult();
    SmallVector<Operation *> safeOps;
    if (std::optional<std::pair<Value, SmallVector<Operation *>>> safe =
            stripSafeSoftmax(probs)) {
      probs = safe->first;
      safeOps = safe->second;
    }
    OpOperand *probsUse = soleUse(probs);
    if (softmax.getNormalizedAxis() != rank - 1 || !probsUse)
      return false;
    // Widened scores: the probabilities are rounded back to the scores'
    // type for P V (the op's softmax_type f32 does the same).
    bool widened = llvm::any_of(
        steps, [](const Step &s) { return s.kind == Step::Widen; });
    linalg::GenericOp narrowing;
    if (widened) {
      narrowing = dyn_cast<linalg::GenericOp>(probsUse->getOwner());
      if (!narrowing || !narrowsTo(narrowing, element))
        return false;
      probs = narrowing->getResult(0);
      probsUse = soleUse(probs);
      if (!probsUse)
        return false;
    }
    auto pv = dyn_cast<MatmulOp>(probsUse->getOwner());
    if (!pv || pv.getLhs() != probs || pv.getRhs() == pv.getLhs())
      return false;
    Value v = pv.getRhs();
    auto vType = dyn_cast<RankedTensorType>(v.getType());
    if (!vType || vType.getRank() != rank || vType.getElementType() != element ||
        pv.getAccType() != qk.getAccType())
      return false;
    if (!vType.hasStaticShape() &&
        (!symbolic || rank != 4 || vType.isDynamicDim(1) ||
         vType.isDynamicDim(3)))
      return false;
    dynamic |= !vType.hasStaticShape();

    OpBuilder b(pv);
    Location loc = pv.getLoc();
    SmallVector<Operation *> dead = {pv};
    if (narrowing)
      dead.push_back(narrowing);
    dead.append(safeOps.begin(), safeOps.end());
    dead.push_back(softmax);
    for (const Step &s : llvm::reverse(steps))
      dead.push_back(s.op);
    dead.push_back(qk);
    // Scales before a softcap's tanh (and those peeled off q and k) scale
    // the scores; those after it are the cap: cap * tanh(pre * qk) is the
    // op's softcap * tanh(scale * qk / softcap) with softcap = cap and
    // scale = pre * cap.
    double scale = 1, cap = 1;
    bool capped = false;
    for (const Step &s : steps) {
      if (s.kind == Step::Tanh)
        capped = true;
      else if (s.kind == Step::Scale)
        (capped ? cap : scale) *= s.factor;
    }
    Value q = peelScale(qk.getLhs(), scale, dead);
    Value kT = peelScale(qk.getRhs(), scale, dead);
    if (capped) {
      if (!(cap > 0) || !std::isfinite(cap))
        return false;
      scale *= cap;
    }
    if (!(scale > 0) || !std::isfinite(scale))
      return false;
    ArrayRef<int64_t> qs = shapeOf(q), kts = shapeOf(kT), vs = shapeOf(v);
    // Batch dims must match (no broadcasting of q, k or v in the op).
    if (shapeOf(q).size() != size_t(rank) || shapeOf(kT).size() != size_t(rank) ||
        qs.drop_back(2) != kts.drop_back(2) || qs.drop_back(2) != vs.drop_back(2) ||
        qs.drop_back(2) != scoresType.getShape().drop_back(2) ||
        kts[rank - 1] != vs[rank - 2])
      return false;
    // The head sizes are the attention kernels' vector widths.
    if (ShapedType::isDynamic(qs[rank - 1]) ||
        ShapedType::isDynamic(kts[rank - 2]))
      return false;
    // A symbolic chain has no fallback but the target's kernel: only the
    // head sizes it takes.
    if (dynamic)
      for (int64_t head : {qs[rank - 1], vs[rank - 1]})
        if (head < minHead || (maxHead && head > maxHead) ||
            head % headMultiple)
          return false;

    // The masks: a causal pattern (the first one becomes causal_offset), a
    // term of zeros (dropped), or a bias term. With symbolic dims a mask
    // the export computes from the shapes is judged at sample sizes.
    int64_t sq = qs[rank - 2], skv = kts[rank - 1];
    std::optional<int64_t> causal;
    bool causalFromEnd = false;
    SmallVector<const Step *> kept;
    for (const Step &s : steps) {
      if (s.kind == Step::Scale || s.kind == Step::Widen ||
          s.kind == Step::Tanh)
        continue;
      std::optional<MaskKind> kind;
      if (const ConstTensor *t = eval.evaluate(s.side))
        kind = classifyMask(s, *t, sq, skv);
      else if (dynamic)
        kind = classifySymbolicMask(s, q, kT, rank);
      if (kind && kind->zero)
        continue;
      if (kind && kind->causal && !causal) {
        causal = kind->causal;
        causalFromEnd = kind->fromEnd;
        continue;
      }
      kept.push_back(&s);
    }
    // A Where's condition becomes a bias tensor, and several terms are
    // summed into one, by builders over static shapes.
    // After a widening, a bias term is in f32: rounded to the scores'
    // type (builders over static shapes too).
    auto inElement = [&](Value term) {
      return cast<ShapedType>(term.getType()).getElementType() == element;
    };
    if (dynamic && (kept.size() > 1 ||
                    llvm::any_of(kept, [&](const Step *s) {
                      return s->kind != Step::AddBias || !inElement(s->side);
                    })))
      return false;
    SmallVector<Value> bias;
    for (const Step *s : kept) {
      if (s->kind == Step::AddBias) {
        Value term = s->side;
        if (!inElement(term))
          term = buildBroadcast(
              b, loc, {term}, shapeOf(term), element,
              [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                return arith::TruncFOp::create(nb, nl, element, a[0]);
              });
        bias.push_back(term);
        continue;
      }
      Value cond = s->side;
      double fill = s->fill;
      bool whenTrue = s->maskWhenTrue;
      bias.push_back(buildBroadcast(
          b, loc, {cond}, shapeOf(cond), element,
          [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
            Value masked = scalarConstant(nb, nl, element, fill);
            Value zero = scalarConstant(nb, nl, element, 0);
            return arith::SelectOp::create(nb, nl, a[0], whenTrue ? masked : zero,
                                           whenTrue ? zero : masked);
          }));
    }
    Value biasValue;
    if (bias.size() == 1) {
      biasValue = bias.front();
    } else if (bias.size() > 1) {
      size_t biasRank = 0;
      for (Value t : bias)
        biasRank = std::max(biasRank, shapeOf(t).size());
      SmallVector<int64_t> shape(biasRank, 1);
      for (Value t : bias) {
        ArrayRef<int64_t> s = shapeOf(t);
        for (size_t i = 0; i < s.size(); ++i)
          shape[biasRank - s.size() + i] =
              std::max(shape[biasRank - s.size() + i], s[i]);
      }
      biasValue = buildBroadcast(
          b, loc, bias, shape, element,
          [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
            Value sum = a[0];
            for (Value term : a.drop_front())
              sum = arith::AddFOp::create(nb, nl, sum, term);
            return sum;
          });
    }

    Value k = untranspose(b, loc, kT, dead);
    // Grouped-query heads: K and V before their repetition, when both were
    // repeated alike.
    if (rank == 4) {
      auto kr = stripRepeat(k), vr = stripRepeat(v);
      if (kr && vr && kr->second == vr->second &&
          shapeOf(kr->first)[1] == shapeOf(vr->first)[1]) {
        k = kr->first;
        v = vr->first;
      }
    }
    // [N, S, D] operands run as one batch of N heads.
    auto toRank4 = [&](Value t) -> Value {
      if (rank == 4)
        return t;
      ArrayRef<int64_t> s = shapeOf(t);
      return buildReshape(b, loc, t, {1, s[0], s[1], s[2]});
    };
    q = toRank4(q);
    k = toRank4(k);
    v = toRank4(v);
    ArrayRef<int64_t> outShape = shapeOf(pv.getResult());
    SmallVector<int64_t> out4 = llvm::to_vector(outShape);
    if (rank == 3)
      out4.insert(out4.begin(), 1);
    auto resultType = RankedTensorType::get(out4, element);
    IntegerAttr causalAttr =
        causal ? b.getI64IntegerAttr(*causal) : IntegerAttr();
    auto attention = AttentionOp::create(
        b, loc, resultType, q, k, v, biasValue, b.getF64FloatAttr(scale),
        b.getF64FloatAttr(capped ? cap : 0.0), causalAttr,
        widened ? TypeAttr::get(b.getF32Type()) : TypeAttr(),
        causalFromEnd ? b.getUnitAttr() : UnitAttr());
    if (failed(mlir::verify(attention))) {
      attention->erase();
      return false;
    }
    Value result = attention.getResult();
    if (rank == 3)
      result = buildReshape(b, loc, result, outShape);
    pv.getResult().replaceAllUsesWith(result);
    // The chain's ops go, with the shape readers (tensor.dim, and the
    // tensor.empty they size) that only served the chain: symbolic dims
    // read them. Each erasure can free the next op's readers.
    for (bool changed = true; changed;) {
      changed = false;
      for (Operation *op : dead) {
        if (erased.contains(op))
          continue;
        eraseUnusedShapeReaders(op);
        if (!op->use_empty())
          continue;
        erased.insert(op);
        op->erase();
        changed = true;
      }
    }
    return true;
  }

  /// The one use of `v` that is not a `tensor.dim` (symbolic dims read
  /// the shapes of the chain's values), or nothing.
  static OpOperand *soleUse(Value v) {
    OpOperand *sole = nullptr;
    for (OpOperand &use : v.getUses()) {
      if (isa<tensor::DimOp>(use.getOwner()))
        continue;
      if (sole)
        return nullptr;
      sole = &use;
    }
    return sole;
  }

  /// Erases the `tensor.dim` readers of `op`'s results that size only
  /// unused `tensor.empty` ops (the inits of erased chain ops), and those.
  static void eraseUnusedShapeReaders(Operation *op) {
    for (Value result : op->getResults())
      for (Operation *user : llvm::make_early_inc_range(result.getUsers())) {
        auto dim = dyn_cast<tensor::DimOp>(user);
        if (!dim)
          continue;
        // A dim can size one tensor.empty twice (a square of scores):
        // each reader once.
        llvm::SmallSetVector<Operation *, 4> readers(dim->user_begin(),
                                                     dim->user_end());
        for (Operation *reader : readers)
          if (isa<tensor::EmptyOp>(reader) && reader->use_empty())
            reader->erase();
        if (dim->use_empty())
          dim->erase();
      }
  }

  func::FuncOp func;
  bool halfOnly, symbolic;
  int64_t minHead, maxHead, headMultiple;
  ConstantEvaluator eval;
  SmallVector<Sample> samples;
  bool sampled = false, boundsPastReach = false;
  int64_t reach = 0;
  llvm::DenseSet<Operation *> erased;
};

struct KilnRaiseAttentionPass final
    : kiln::impl::KilnRaiseAttentionBase<KilnRaiseAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (auto module = func->getParentOfType<ModuleOp>();
        module && module->hasAttr(kNoRaiseAttentionAttr))
      return;
    int64_t raised =
        Raiser(func, halfOnly, symbolicDims, symbolicMinHead, symbolicMaxHead,
               symbolicHeadMultiple)
            .run();
    recordRaised(func, "attention", raised);
  }
};

} // namespace
