//===- RaiseRotary.cpp - decomposed rotary embeddings into kiln ops -------===//
//
// Exporters write a rotary embedding as `x * cos + rotate(x) * sin`, where
// rotate pairs each element of a head with a partner: the other half
// (`cat(-x2, x1)`, LLaMA and GPT-NeoX) or its neighbour (`(-x1, x0)`
// interleaved, GPT-J), on the first 2R elements of the head (partial
// rotary: the rest passes through). The Slice, Neg and Concat become index
// generics (or extract_slices), and cos and sin are tables the graph
// builds from positions: a Gather of a constant cache, or cos/sin of the
// outer product of positions and frequencies, duplicated to the head's
// width.
//
// Rather than spell each export's order of nodes, this pass asks what each
// element of a candidate root is (passes/ElementTrace.h). For a [B, H, S, D]
// root it traces all D elements of a head exactly, as polynomials of the
// tensors the region reads, and raises the root to
//
//   kiln.rotary_embedding %x, %cos, %sin [{interleaved}]
//
// when each element d < 2R is `x[d] * C[c(d)] -/+ x[p(d)] * S[s(d)]` with p
// the halves or the interleaved pairing (minus for the pair's first
// element), every other element is x[d] itself, C and S are read per batch
// and position and not per head, and both elements of a pair read the same
// angle: equal table indices, or table elements that trace to the same
// polynomial (`cos(cat(f, f))` at i and i + R), or equal columns of a
// constant cache. `%cos` and `%sin` are [B, S, R] gathers of the tables at
// the pairs' angles. Anything else (a sign folded into the sin table, a
// rotation per head, an almost-RoPE) is left alone. The function records
// the count in `kiln.raised` (rotary_embedding).
//
//===----------------------------------------------------------------------===//
#include "passes/ElementTrace.h"
#include "passes/Passes.h"
#include "passes/Raising.h"

#include "dialects/kiln/KilnDialect.h"
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"

namespace kiln {
#define GEN_PASS_DEF_KILNRAISEROTARY
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// Heads wider than this are not rotary embeddings worth tracing.
constexpr int64_t kMaxHead = 1024;

/// One term of an element: coefficient * x[partner] * table[index].
struct Term {
  double coefficient;
  int64_t partner;
  const TraceLeaf *table; // null: x alone
};

/// What a head's elements were found to be.
struct Rotation {
  int64_t half = 0; // R
  bool interleaved = false;
  SmallVector<const TraceLeaf *> cosAt, sinAt; // per element d < 2R
  // The pairs' angles: pair i reads the cos (0) or sin (1) table at
  // first + step * i.
  int64_t first[2] = {}, step[2] = {};
};

/// `e` (affine in the root's row dims, pure: sums, constant multiples,
/// divisions and remainders by constants) computed from `dims`.
Value emitIndex(OpBuilder &b, Location loc, AffineExpr e, ValueRange dims) {
  if (auto d = dyn_cast<AffineDimExpr>(e))
    return dims[d.getPosition()];
  if (auto c = dyn_cast<AffineConstantExpr>(e))
    return indexConstant(b, loc, c.getValue());
  auto bin = cast<AffineBinaryOpExpr>(e);
  Value l = emitIndex(b, loc, bin.getLHS(), dims);
  Value r = emitIndex(b, loc, bin.getRHS(), dims);
  switch (e.getKind()) {
  case AffineExprKind::Add:
    return arith::AddIOp::create(b, loc, l, r);
  case AffineExprKind::Mul:
    return arith::MulIOp::create(b, loc, l, r);
  case AffineExprKind::FloorDiv:
    return arith::FloorDivSIOp::create(b, loc, l, r);
  case AffineExprKind::Mod:
    return arith::RemSIOp::create(b, loc, l, r);
  default:
    return arith::CeilDivSIOp::create(b, loc, l, r);
  }
}

/// Points the `tensor.dim` readers of `op`'s results at the sizes the op
/// reifies (its init's, its slice sizes), before `op` is erased.
void replaceDimReaders(Operation *op) {
  bool read = llvm::any_of(op->getUsers(),
                           [](Operation *u) { return isa<tensor::DimOp>(u); });
  auto reify = dyn_cast<ReifyRankedShapedTypeOpInterface>(op);
  if (!read || !reify)
    return;
  OpBuilder b(op);
  ReifiedRankedShapedTypeDims shapes;
  if (failed(reify.reifyResultShapes(b, shapes)))
    return;
  for (OpResult result : op->getResults())
    for (OpOperand &use : llvm::make_early_inc_range(result.getUses()))
      if (auto dim = dyn_cast<tensor::DimOp>(use.getOwner()))
        if (std::optional<int64_t> i = dim.getConstantIndex()) {
          OpBuilder at(dim);
          Value size = getValueOrCreateConstantIndexOp(
              at, dim.getLoc(), shapes[result.getResultNumber()][*i]);
          dim.replaceAllUsesWith(size);
          dim.erase();
        }
}

/// Uses of `v` other than `tensor.dim` readers (which only size things).
unsigned realUses(Value v) {
  return llvm::count_if(v.getUses(), [](OpOperand &use) {
    return !isa<tensor::DimOp>(use.getOwner());
  });
}

class Raiser {
public:
  explicit Raiser(func::FuncOp func) : func(func) {}

  void run() {
    SmallVector<linalg::GenericOp> roots;
    func.walk([&](linalg::GenericOp g) { roots.push_back(g); });
    for (linalg::GenericOp root : llvm::reverse(roots))
      if (!erased.contains(root))
        raise(root);
  }

  int64_t raised = 0;

private:
  void raise(linalg::GenericOp root) {
    // The root adds the two products, or concatenates the rotated part
    // with the passed-through one (partial rotary).
    bool indexed = false;
    root.getBlock()->walk([&](tensor::ExtractOp) { indexed = true; });
    if (!isAllParallelElementwise(root) ||
        !(indexed ||
          isa_and_nonnull<arith::AddFOp, arith::SubFOp>(soleBodyOp(root))))
      return;
    Value out = root->getResult(0);
    auto type = cast<RankedTensorType>(out.getType());
    if (type.getRank() != 4 || !isa<FloatType>(type.getElementType()) ||
        type.isDynamicDim(3) || type.getDimSize(3) < 2 ||
        type.getDimSize(3) > kMaxHead)
      return;

    // First pass: single-use values are the region; x is the tensor of the
    // root's type that every term reads at the root's own row.
    Value x;
    {
      ElementTracer tracer(
          root.getContext(), 4,
          [&](Value v) { return v == out || realUses(v) == 1; }, eval);
      // (The elements past a partial rotation read x itself; the rotated
      // ones may read it through a slice read twice.)
      for (int64_t d = type.getDimSize(3) - 1; d >= 0 && !x; --d) {
        std::optional<Poly> p = tracer.element(out, tracer.rootIndex(out, d));
        if (!p || p->terms.empty())
          return;
        for (int id : p->terms.begin()->first)
          if (const TraceLeaf *l = tracer.leaf(id);
              l && l->value.getType() == type &&
              llvm::equal(l->index, tracer.rootIndex(out, l->last())))
            x = l->value;
      }
      if (!x)
        return;
    }
    // Second pass: the region is what depends on x; the tables are leaves
    // wherever they come from.
    depends.clear();
    ElementTracer tracer(
        root.getContext(), 4,
        [&](Value v) { return v != x && dependsOn(v, x); }, eval);
    SmallVector<SmallVector<Term, 2>> terms;
    for (int64_t d = 0; d < type.getDimSize(3); ++d) {
      std::optional<Poly> p = tracer.element(out, tracer.rootIndex(out, d));
      if (!p)
        return;
      std::optional<SmallVector<Term, 2>> t = split(*p, x, out, tracer);
      if (!t)
        return;
      terms.push_back(*t);
    }
    std::optional<Rotation> rotation = judge(terms);
    if (!rotation || !sameAngles(*rotation))
      return;
    replace(root, x, *rotation, tracer);
  }

  /// Whether `v` is computed from `x` through ops the tracer reads.
  bool dependsOn(Value v, Value x) {
    if (v == x)
      return true;
    auto [it, inserted] = depends.try_emplace(v, false);
    if (!inserted)
      return it->second;
    bool result = false;
    Operation *def = v.getDefiningOp();
    if (isa_and_nonnull<tensor::ExtractSliceOp, tensor::ExpandShapeOp,
                        tensor::CollapseShapeOp, linalg::TransposeOp>(def)) {
      result = dependsOn(def->getOperand(0), x);
    } else if (auto g = dyn_cast_or_null<linalg::GenericOp>(def)) {
      for (Value in : g.getDpsInputs())
        result = result || dependsOn(in, x);
      g.getBlock()->walk([&](tensor::ExtractOp e) {
        result = result || dependsOn(e.getTensor(), x);
      });
    }
    depends[v] = result;
    return result;
  }

  /// The terms of one element: each monomial is x at some position of the
  /// same head times at most one table element.
  std::optional<SmallVector<Term, 2>> split(const Poly &p, Value x, Value out,
                                            ElementTracer &tracer) {
    SmallVector<Term, 2> terms;
    for (const auto &[mono, c] : p.terms) {
      const TraceLeaf *xs = nullptr, *table = nullptr;
      for (int id : mono) {
        const TraceLeaf *l = tracer.leaf(id);
        if (!l)
          return std::nullopt;
        if (l->value == x && !xs &&
            llvm::equal(l->index, tracer.rootIndex(out, l->last())))
          xs = l;
        else if (!table && l->value != x)
          table = l;
        else
          return std::nullopt;
      }
      if (!xs || xs->last() < 0 || (table && table->last() < 0))
        return std::nullopt;
      terms.push_back({c, xs->last(), table});
    }
    return terms;
  }

  /// The pairing, the rotary width and the tables, if the terms are a
  /// rotary embedding's.
  std::optional<Rotation> judge(ArrayRef<SmallVector<Term, 2>> terms) {
    int64_t head = terms.size();
    // The rotated elements come first, the passed-through ones last.
    int64_t rotated = 0;
    while (rotated < head && terms[rotated].size() == 2)
      ++rotated;
    for (int64_t d = rotated; d < head; ++d)
      if (terms[d].size() != 1 || terms[d][0].table ||
          terms[d][0].partner != d || terms[d][0].coefficient != 1)
        return std::nullopt;
    if (rotated == 0 || rotated % 2)
      return std::nullopt;
    Rotation r;
    r.half = rotated / 2;
    for (bool interleaved : {false, true}) {
      r.interleaved = interleaved;
      r.cosAt.clear();
      r.sinAt.clear();
      bool ok = true;
      for (int64_t d = 0; d < rotated && ok; ++d) {
        bool first = interleaved ? d % 2 == 0 : d < r.half;
        int64_t partner = interleaved ? d ^ 1 : (first ? d + r.half : d - r.half);
        const Term *self = nullptr, *other = nullptr;
        for (const Term &t : terms[d])
          (t.partner == d ? self : other) = &t;
        ok = self && other && other->partner == partner && self->table &&
             other->table && self->coefficient == 1 &&
             other->coefficient == (first ? -1 : 1);
        if (ok) {
          r.cosAt.push_back(self->table);
          r.sinAt.push_back(other->table);
        }
      }
      if (ok)
        return r;
    }
    return std::nullopt;
  }

  /// Element d < 2R's pair index i and whether it is the pair's first.
  static std::pair<int64_t, bool> pairOf(const Rotation &r, int64_t d) {
    if (r.interleaved)
      return {d / 2, d % 2 == 0};
    return {d % r.half, d < r.half};
  }

  /// Every cos (and sin) term reads one table at one row, both elements of
  /// a pair read the same angle, and the pairs' angles lie at equally
  /// spaced indices (what a gather by an affine map can read).
  bool sameAngles(Rotation &r) {
    // The tables are traced as far as they go, whatever reads them.
    ElementTracer tracer(func.getContext(), 4, [](Value) { return true; },
                         eval);
    for (int table : {0, 1}) {
      ArrayRef<const TraceLeaf *> at = table ? r.sinAt : r.cosAt;
      const TraceLeaf *base = at[0];
      ArrayRef<AffineExpr> row = ArrayRef(base->index).drop_back();
      for (const AffineExpr e : row)
        if (e.isFunctionOfDim(1) || !e.isPureAffine())
          return false;
      if (llvm::any_of(row, [](AffineExpr e) {
            bool symbolic = false;
            e.walk([&](AffineExpr s) { symbolic |= isa<AffineSymbolExpr>(s); });
            return symbolic;
          }))
        return false;
      SmallVector<int64_t> first(r.half, -1);
      for (auto [d, leaf] : llvm::enumerate(at))
        if (leaf->value != base->value ||
            !llvm::equal(ArrayRef(leaf->index).drop_back(), row))
          return false;
      for (auto [d, leaf] : llvm::enumerate(at)) {
        auto [i, isFirst] = pairOf(r, d);
        if (isFirst)
          first[i] = leaf->last();
      }
      int64_t step = r.half > 1 ? first[1] - first[0] : 1;
      for (int64_t i = 0; i < r.half; ++i)
        if (first[i] != first[0] + step * i)
          return false;
      r.first[table] = first[0];
      r.step[table] = step;
      for (auto [d, leaf] : llvm::enumerate(at)) {
        auto [i, isFirst] = pairOf(r, d);
        if (isFirst || leaf->last() == first[i])
          continue;
        SmallVector<AffineExpr> a(row), b(row);
        a.push_back(getAffineConstantExpr(first[i], func.getContext()));
        b.push_back(getAffineConstantExpr(leaf->last(), func.getContext()));
        if (!tracer.sameElements(base->value, a, b))
          return false;
      }
    }
    return true;
  }

  /// The [B, S, R] table of the pairs' angles, read from `leaf`'s tensor at
  /// its row (root dims 0 and 2 become the table's batch and position).
  Value gather(OpBuilder &b, Location loc, Value x, const Rotation &r,
               const TraceLeaf &leaf, int64_t first, int64_t step) {
    // Roots share a table when they read it alike and their x have one
    // static type (a symbolic batch or sequence: the same x only).
    std::string key;
    llvm::raw_string_ostream os(key);
    os << leaf.value.getAsOpaquePointer() << "/" << first << "/" << step << "/"
       << r.half << "/" << x.getType();
    if (!cast<RankedTensorType>(x.getType()).hasStaticShape())
      os << "/" << x.getAsOpaquePointer();
    for (AffineExpr e : ArrayRef(leaf.index).drop_back())
      os << "," << e;
    // Roots are raised last first: a table built for a later root is
    // rebuilt here, before this one, and the later root reads this one.
    Value known = tables.lookup(key);
    if (known && known.getDefiningOp()->isBeforeInBlock(&*b.getInsertionPoint()))
      return known;

    auto xType = cast<RankedTensorType>(x.getType());
    Type element = xType.getElementType();
    SmallVector<int64_t> shape = {xType.getDimSize(0), xType.getDimSize(2), r.half};
    SmallVector<Value> dynamic;
    for (int64_t d : {0, 2})
      if (xType.isDynamicDim(d))
        dynamic.push_back(tensor::DimOp::create(b, loc, x, d));
    // Table element (row of the root at batch b and position s, angle
    // first + step * i) for each (b, s, i).
    Value gathered = buildIndexed(
        b, loc, shape, element,
        [&](OpBuilder &nb, Location l, ValueRange ivs) -> Value {
          Value zero = indexConstant(nb, l, 0);
          SmallVector<Value> rootIvs = {ivs[0], zero, ivs[1]};
          SmallVector<Value> at;
          for (AffineExpr e : ArrayRef(leaf.index).drop_back())
            at.push_back(emitIndex(nb, l, e, rootIvs));
          Value i = ivs[2];
          if (step != 1)
            i = arith::MulIOp::create(nb, l, i, indexConstant(nb, l, step));
          if (first != 0)
            i = arith::AddIOp::create(nb, l, i, indexConstant(nb, l, first));
          at.push_back(i);
          Value v = tensor::ExtractOp::create(nb, l, leaf.value, at);
          auto from = cast<FloatType>(v.getType());
          auto to = cast<FloatType>(element);
          if (from != to && from.getWidth() == to.getWidth())
            v = arith::ExtFOp::create(nb, l, nb.getF32Type(), v);
          if (cast<FloatType>(v.getType()).getWidth() < to.getWidth())
            v = arith::ExtFOp::create(nb, l, to, v);
          else if (v.getType() != to)
            v = arith::TruncFOp::create(nb, l, to, v);
          return v;
        },
        dynamic);
    if (known) {
      known.replaceAllUsesWith(gathered);
      known.getDefiningOp()->erase();
    }
    tables[key] = gathered;
    return gathered;
  }

  void replace(linalg::GenericOp root, Value x, const Rotation &r,
               ElementTracer &tracer) {
    OpBuilder b(root);
    Location loc = root.getLoc();
    Value cos = gather(b, loc, x, r, *r.cosAt[0], r.first[0], r.step[0]);
    Value sin = gather(b, loc, x, r, *r.sinAt[0], r.first[1], r.step[1]);
    auto rope = RotaryEmbeddingOp::create(b, loc, root->getResult(0).getType(),
                                          x, cos, sin, r.interleaved);
    root->getResult(0).replaceAllUsesWith(rope.getResult());

    // The region, readers first, as it empties.
    SmallVector<Operation *> region = {root};
    for (Operation *op : tracer.traced())
      if (op != root && llvm::any_of(op->getResults(), [&](Value v) {
            return dependsOn(v, x);
          }))
        region.push_back(op);
    llvm::sort(region, [](Operation *a, Operation *b) {
      return b->isBeforeInBlock(a);
    });
    SmallVector<Operation *> inits;
    for (Operation *op : region) {
      replaceDimReaders(op);
      if (!op->use_empty())
        continue;
      if (auto g = dyn_cast<linalg::GenericOp>(op))
        for (Value init : g.getDpsInits())
          if (auto empty = init.getDefiningOp<tensor::EmptyOp>())
            inits.push_back(empty);
      erased.insert(op);
      op->erase();
    }
    for (Operation *empty : inits)
      if (!erased.contains(empty) && empty->use_empty()) {
        erased.insert(empty);
        empty->erase();
      }
    ++raised;
  }

  func::FuncOp func;
  ConstantEvaluator eval{1 << 16};
  llvm::DenseSet<Operation *> erased;
  DenseMap<Value, bool> depends;
  llvm::StringMap<Value> tables;
};

struct KilnRaiseRotaryPass final
    : kiln::impl::KilnRaiseRotaryBase<KilnRaiseRotaryPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    Raiser raiser(func);
    raiser.run();
    recordRaised(func, "rotary_embedding", raiser.raised);
  }
};

} // namespace
