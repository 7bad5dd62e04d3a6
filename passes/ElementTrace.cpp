//===- ElementTrace.cpp - one element of a tensor, as a polynomial --------===//
#include "passes/ElementTrace.h"
#include "passes/Raising.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineExprVisitor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/Support/FormatVariadic.h"

#include <variant>

using namespace mlir;

namespace kiln {

namespace {

/// Polynomials larger than this are not worth a raising's while.
constexpr size_t kMaxTerms = 64;
constexpr size_t kMaxDegree = 4;

std::optional<Poly> add(const Poly &a, const Poly &b, double sign = 1) {
  Poly out = a;
  for (const auto &[mono, c] : b.terms) {
    double &slot = out.terms[mono];
    slot += sign * c;
    if (slot == 0)
      out.terms.erase(mono);
  }
  if (out.terms.size() > kMaxTerms)
    return std::nullopt;
  return out;
}

Poly scale(const Poly &a, double c) {
  Poly out;
  if (c == 0)
    return out;
  for (const auto &[mono, v] : a.terms)
    out.terms[mono] = v * c;
  return out;
}

std::optional<Poly> mul(const Poly &a, const Poly &b) {
  Poly out;
  for (const auto &[ma, ca] : a.terms)
    for (const auto &[mb, cb] : b.terms) {
      std::vector<int> mono = ma;
      mono.insert(mono.end(), mb.begin(), mb.end());
      if (mono.size() > kMaxDegree)
        return std::nullopt;
      llvm::sort(mono);
      double &slot = out.terms[mono];
      slot += ca * cb;
      if (slot == 0)
        out.terms.erase(mono);
    }
  if (out.terms.size() > kMaxTerms)
    return std::nullopt;
  return out;
}

std::string exprKey(AffineExpr e) {
  std::string s;
  llvm::raw_string_ostream os(s);
  e.print(os);
  return s;
}

std::optional<int64_t> constantOf(AffineExpr e) {
  if (auto c = dyn_cast<AffineConstantExpr>(e))
    return c.getValue();
  return std::nullopt;
}

/// An integer op of a body on two known operands.
std::optional<int64_t> foldIndexOp(Operation *op, int64_t a, int64_t b) {
  if (isa<arith::AddIOp>(op))
    return a + b;
  if (isa<arith::SubIOp>(op))
    return a - b;
  if (isa<arith::MulIOp>(op))
    return a * b;
  if (isa<arith::MaxSIOp>(op))
    return std::max(a, b);
  if (isa<arith::MinSIOp>(op))
    return std::min(a, b);
  if (isa<arith::MaxUIOp>(op))
    return int64_t(std::max(uint64_t(a), uint64_t(b)));
  if (isa<arith::MinUIOp>(op))
    return int64_t(std::min(uint64_t(a), uint64_t(b)));
  if (b == 0)
    return std::nullopt;
  if (isa<arith::DivSIOp>(op))
    return a / b;
  if (isa<arith::RemSIOp>(op))
    return a % b;
  if (a < 0 || b < 0)
    return std::nullopt;
  if (isa<arith::DivUIOp>(op))
    return a / b;
  if (isa<arith::RemUIOp>(op))
    return a % b;
  return std::nullopt;
}

bool compareIndices(arith::CmpIPredicate p, int64_t a, int64_t b) {
  using P = arith::CmpIPredicate;
  switch (p) {
  case P::eq: return a == b;
  case P::ne: return a != b;
  case P::slt: return a < b;
  case P::sle: return a <= b;
  case P::sgt: return a > b;
  case P::sge: return a >= b;
  case P::ult: return uint64_t(a) < uint64_t(b);
  case P::ule: return uint64_t(a) <= uint64_t(b);
  case P::ugt: return uint64_t(a) > uint64_t(b);
  case P::uge: return uint64_t(a) >= uint64_t(b);
  }
  return false;
}

/// The index of a reshape group's one dim from the indices of its dims
/// (`shape` sizes them; dims after the first non-unit one must be static).
std::optional<AffineExpr> linearize(ArrayRef<AffineExpr> index,
                                    ArrayRef<int64_t> shape,
                                    ArrayRef<int64_t> group) {
  std::optional<AffineExpr> e;
  for (int64_t d : group) {
    if (shape[d] == 1)
      continue;
    if (!e) {
      e = index[d];
      continue;
    }
    if (ShapedType::isDynamic(shape[d]))
      return std::nullopt;
    e = *e * shape[d] + index[d];
  }
  return e ? *e : getAffineConstantExpr(0, index[0].getContext());
}

/// The indices of a reshape group's dims from the index `e` of the one dim
/// they form, written into `out` (unit dims keep theirs); false when a dim
/// but the outermost non-unit one is symbolic.
bool delinearize(AffineExpr e, ArrayRef<int64_t> shape,
                 ArrayRef<int64_t> group, SmallVectorImpl<AffineExpr> &out) {
  SmallVector<int64_t> nonUnit;
  for (int64_t d : group)
    if (shape[d] != 1)
      nonUnit.push_back(d);
  // Inner dims first: each takes (e floordiv stride) mod size, the
  // outermost what is left.
  int64_t stride = 1;
  for (auto [k, d] : llvm::enumerate(llvm::reverse(nonUnit))) {
    AffineExpr part = stride == 1 ? e : e.floorDiv(stride);
    if (k + 1 == nonUnit.size()) {
      out[d] = part;
      break;
    }
    if (ShapedType::isDynamic(shape[d]))
      return false;
    out[d] = part % shape[d];
    stride *= shape[d];
  }
  return true;
}

/// The row-major offset of `at` in `t`, or nothing when it lies outside.
std::optional<int64_t> flatIndex(const ConstTensor &t, ArrayRef<int64_t> at) {
  if (at.size() != t.shape.size())
    return std::nullopt;
  int64_t flat = 0;
  for (auto [i, k] : llvm::enumerate(at)) {
    if (k < 0 || k >= t.shape[i])
      return std::nullopt;
    flat = flat * t.shape[i] + k;
  }
  return flat;
}

/// What a body value is while a generic is interpreted: a float element, an
/// index or integer (affine in the row), or a known condition.
using BodyValue = std::variant<Poly, AffineExpr, bool>;

} // namespace

Poly Poly::constant(double c) {
  Poly p;
  if (c != 0)
    p.terms[{}] = c;
  return p;
}

Poly Poly::atom(int id) {
  Poly p;
  p.terms[{id}] = 1;
  return p;
}

std::optional<double> Poly::asConstant() const {
  if (terms.empty())
    return 0.0;
  if (terms.size() == 1 && terms.begin()->first.empty())
    return terms.begin()->second;
  return std::nullopt;
}

int64_t TraceLeaf::last() const {
  if (index.empty())
    return -1;
  std::optional<int64_t> c = constantOf(index.back());
  return c ? *c : -1;
}

ElementTracer::ElementTracer(MLIRContext *ctx, int64_t rootRank,
                             std::function<bool(Value)> follow,
                             ConstantEvaluator &eval)
    : ctx(ctx), rootRank(rootRank), follow(std::move(follow)), eval(eval) {}

SmallVector<AffineExpr> ElementTracer::rootIndex(Value root,
                                                 int64_t last) const {
  auto type = cast<RankedTensorType>(root.getType());
  SmallVector<AffineExpr> index;
  for (int64_t i = 0; i + 1 < type.getRank(); ++i)
    index.push_back(type.getDimSize(i) == 1 ? getAffineConstantExpr(0, ctx)
                                            : getAffineDimExpr(i, ctx));
  index.push_back(getAffineConstantExpr(last, ctx));
  return index;
}

const TraceLeaf *ElementTracer::leaf(int id) const {
  const Atom &a = atoms[id];
  return a.leaf ? &*a.leaf : nullptr;
}

int ElementTracer::intern(std::string key, std::optional<TraceLeaf> leaf) {
  auto [it, inserted] = atomIds.try_emplace(key, int(atoms.size()));
  if (inserted)
    atoms.push_back({std::move(key), std::move(leaf)});
  return it->second;
}

std::string ElementTracer::indexKey(Value v, ArrayRef<AffineExpr> index) const {
  std::string key = llvm::formatv("{0}[", v.getAsOpaquePointer()).str();
  for (AffineExpr e : index)
    key += exprKey(e) + ",";
  return key + "]";
}

std::string ElementTracer::polyKey(const Poly &p) const {
  std::string key;
  for (const auto &[mono, c] : p.terms) {
    key += llvm::formatv("{0:e17}", c).str();
    for (int id : mono)
      key += "*" + std::to_string(id);
    key += "+";
  }
  return key;
}

AffineExpr ElementTracer::opaqueIndex(const std::string &key) {
  auto [it, inserted] = opaque.try_emplace(key, opaque.size());
  return getAffineSymbolExpr(it->second, ctx);
}

Poly ElementTracer::leafPoly(Value v, ArrayRef<AffineExpr> index) {
  return Poly::atom(intern("L" + indexKey(v, index),
                           TraceLeaf{v, SmallVector<AffineExpr>(index)}));
}

std::optional<Poly> ElementTracer::function(StringRef name,
                                            ArrayRef<Poly> args) {
  std::string key = name.str() + "(";
  for (const Poly &a : args)
    key += polyKey(a) + ";";
  return Poly::atom(intern(key + ")", std::nullopt));
}

std::optional<Poly> ElementTracer::element(Value v,
                                           ArrayRef<AffineExpr> rawIndex) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<AffineExpr> index;
  for (auto [i, e] : llvm::enumerate(rawIndex))
    index.push_back(type.getDimSize(i) == 1
                        ? getAffineConstantExpr(0, ctx)
                        : simplifyAffineExpr(e, rootRank - 1, opaque.size()));
  std::string key = indexKey(v, index);
  auto it = memo.find(key);
  if (it != memo.end())
    return it->second;
  if (--budget < 0)
    return std::nullopt;
  std::optional<Poly> result = compute(v, index);
  memo[key] = result;
  return result;
}

std::optional<Poly> ElementTracer::compute(Value v, ArrayRef<AffineExpr> index) {
  auto leafHere = [&] { return std::optional<Poly>(leafPoly(v, index)); };
  Operation *def = v.getDefiningOp();
  if (!def || (!index.empty() && !constantOf(index.back())))
    return leafHere();
  if (auto c = dyn_cast<arith::ConstantOp>(def)) {
    if (auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
        dense && dense.isSplat() && isa<FloatType>(dense.getElementType()))
      return Poly::constant(
          dense.getSplatValue<APFloat>().convertToDouble());
    SmallVector<int64_t> at;
    for (AffineExpr e : index)
      if (std::optional<int64_t> k = constantOf(e))
        at.push_back(*k);
    if (at.size() == index.size())
      if (const ConstTensor *t = eval.evaluate(v))
        if (std::optional<int64_t> flat = flatIndex(*t, at))
          return Poly::constant(t->values[*flat]);
    return leafHere();
  }
  if (!follow(v))
    return leafHere();

  // The index of the source element, or nothing when the op is not one the
  // tracer reads through.
  SmallVector<AffineExpr> source;
  Value from;
  auto zero = getAffineConstantExpr(0, ctx);
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    if (slice.getSourceType().getRank() != slice.getType().getRank() ||
        llvm::any_of(slice.getStaticOffsets(), ShapedType::isDynamic) ||
        llvm::any_of(slice.getStaticStrides(), ShapedType::isDynamic))
      return leafHere();
    for (auto [e, off, stride] : llvm::zip(index, slice.getStaticOffsets(),
                                           slice.getStaticStrides()))
      source.push_back(e * stride + off);
    from = slice.getSource();
  } else if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def)) {
    // Each source dim is its group's result dims, linearized.
    ArrayRef<int64_t> shape = expand.getResultType().getShape();
    for (const ReassociationIndices &group : expand.getReassociationIndices()) {
      std::optional<AffineExpr> e = linearize(index, shape, group);
      if (!e)
        return leafHere();
      source.push_back(*e);
    }
    from = expand.getSrc();
  } else if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(def)) {
    // Each result dim is its group's source dims, delinearized.
    ArrayRef<int64_t> shape = collapse.getSrcType().getShape();
    source.assign(shape.size(), zero);
    for (auto [r, group] : llvm::enumerate(collapse.getReassociationIndices()))
      if (!delinearize(index[r], shape, group, source))
        return leafHere();
    from = collapse.getSrc();
  } else if (auto transpose = dyn_cast<linalg::TransposeOp>(def)) {
    source.assign(index.size(), zero);
    for (auto [i, p] : llvm::enumerate(transpose.getPermutation()))
      source[p] = index[i];
    from = transpose.getInput();
  } else if (auto fill = dyn_cast<linalg::FillOp>(def)) {
    if (auto c = fill.getInputs()[0].getDefiningOp<arith::ConstantOp>())
      if (auto f = dyn_cast<FloatAttr>(c.getValue())) {
        ops.insert(def);
        return Poly::constant(f.getValueAsDouble());
      }
    return leafHere();
  } else if (isa<linalg::GenericOp>(def)) {
    std::optional<Poly> p =
        throughGeneric(def, cast<OpResult>(v).getResultNumber(), index);
    if (!p)
      return leafHere();
    ops.insert(def);
    return p;
  } else {
    return leafHere();
  }
  if (!source.empty() && !constantOf(source.back()))
    return leafHere();
  std::optional<Poly> p = element(from, source);
  if (p)
    ops.insert(def);
  return p;
}

std::optional<Poly> ElementTracer::throughGeneric(Operation *op,
                                                  unsigned result,
                                                  ArrayRef<AffineExpr> index) {
  auto g = cast<linalg::GenericOp>(op);
  if (g.getNumParallelLoops() != g.getNumLoops())
    return std::nullopt;
  OpOperand *init = g.getDpsInitOperand(result);
  AffineMap out = g.getMatchingIndexingMap(init);
  if (!out.isPermutation())
    return std::nullopt;
  SmallVector<AffineExpr> loops(g.getNumLoops());
  for (auto [i, e] : llvm::enumerate(out.getResults()))
    loops[cast<AffineDimExpr>(e).getPosition()] = index[i];

  Block *body = g.getBlock();
  DenseMap<Value, BodyValue> values;
  auto valueOf = [&](Value x) -> std::optional<BodyValue> {
    if (auto it = values.find(x); it != values.end())
      return it->second;
    if (auto arg = dyn_cast<BlockArgument>(x); arg && arg.getOwner() == body) {
      OpOperand &operand = g->getOpOperand(arg.getArgNumber());
      if (g.isDpsInit(&operand) ||
          !isa<RankedTensorType>(operand.get().getType()))
        return std::nullopt;
      AffineMap map = g.getMatchingIndexingMap(&operand);
      SmallVector<AffineExpr> at;
      for (AffineExpr e : map.getResults())
        at.push_back(e.replaceDims(loops));
      Type elementType = getElementTypeOrSelf(operand.get().getType());
      std::optional<BodyValue> bv;
      if (isa<FloatType>(elementType)) {
        if (std::optional<Poly> p = element(operand.get(), at))
          bv = *p;
      } else if (elementType.isInteger(1)) {
        return std::nullopt;
      } else {
        bv = opaqueIndex("read" + indexKey(operand.get(), at));
      }
      if (bv)
        values[x] = *bv;
      return bv;
    }
    if (auto c = x.getDefiningOp<arith::ConstantOp>()) {
      if (auto f = dyn_cast<FloatAttr>(c.getValue()))
        return BodyValue(Poly::constant(f.getValueAsDouble()));
      if (auto i = dyn_cast<IntegerAttr>(c.getValue())) {
        if (i.getType().isInteger(1))
          return BodyValue(i.getValue().getBoolValue());
        return BodyValue(getAffineConstantExpr(i.getInt(), ctx));
      }
    }
    return std::nullopt;
  };
  auto polyOf = [&](Value x) -> std::optional<Poly> {
    std::optional<BodyValue> bv = valueOf(x);
    if (!bv || !std::holds_alternative<Poly>(*bv))
      return std::nullopt;
    return std::get<Poly>(*bv);
  };
  auto exprOf = [&](Value x) -> std::optional<AffineExpr> {
    std::optional<BodyValue> bv = valueOf(x);
    if (!bv || !std::holds_alternative<AffineExpr>(*bv))
      return std::nullopt;
    return std::get<AffineExpr>(*bv);
  };

  for (Operation &bodyOp : body->without_terminator()) {
    std::optional<BodyValue> r;
    if (auto idx = dyn_cast<linalg::IndexOp>(bodyOp)) {
      r = loops[idx.getDim()];
    } else if (isa<arith::ConstantOp>(bodyOp)) {
      r = valueOf(bodyOp.getResult(0));
    } else if (isa<arith::AddIOp, arith::SubIOp, arith::MulIOp, arith::DivSIOp,
                   arith::DivUIOp, arith::RemSIOp, arith::RemUIOp,
                   arith::MaxSIOp, arith::MinSIOp, arith::MaxUIOp,
                   arith::MinUIOp>(bodyOp)) {
      std::optional<AffineExpr> a = exprOf(bodyOp.getOperand(0));
      std::optional<AffineExpr> b = exprOf(bodyOp.getOperand(1));
      if (!a || !b)
        return std::nullopt;
      std::optional<int64_t> ca = constantOf(*a), cb = constantOf(*b);
      if (ca && cb) {
        std::optional<int64_t> out = foldIndexOp(&bodyOp, *ca, *cb);
        if (!out)
          return std::nullopt;
        r = getAffineConstantExpr(*out, ctx);
      } else if (isa<arith::AddIOp>(bodyOp)) {
        r = *a + *b;
      } else if (isa<arith::SubIOp>(bodyOp)) {
        r = *a - *b;
      } else if (isa<arith::MulIOp>(bodyOp) && (ca || cb)) {
        r = *a * *b;
      } else if (*a == *b && isa<arith::MaxSIOp, arith::MinSIOp,
                                 arith::MaxUIOp, arith::MinUIOp>(bodyOp)) {
        r = *a;
      } else {
        // A clamp of a row-dependent index, or a product of two: a symbol
        // named by what it computes.
        r = opaqueIndex(bodyOp.getName().getStringRef().str() + "(" +
                        exprKey(*a) + "," + exprKey(*b) + ")");
      }
    } else if (auto cmp = dyn_cast<arith::CmpIOp>(bodyOp)) {
      std::optional<AffineExpr> a = exprOf(cmp.getLhs());
      std::optional<AffineExpr> b = exprOf(cmp.getRhs());
      if (!a || !b)
        return std::nullopt;
      std::optional<int64_t> ca = constantOf(*a), cb = constantOf(*b);
      if (ca && cb)
        r = compareIndices(cmp.getPredicate(), *ca, *cb);
      else if (*a == *b)
        r = compareIndices(cmp.getPredicate(), 0, 0);
      else // a gathered index checked for bounds: unknown, named
        r = opaqueIndex(("cmpi" + arith::stringifyCmpIPredicate(cmp.getPredicate()) +
                         "(" + exprKey(*a) + "," + exprKey(*b) + ")").str());
    } else if (auto select = dyn_cast<arith::SelectOp>(bodyOp)) {
      std::optional<BodyValue> c = valueOf(select.getCondition());
      if (!c)
        return std::nullopt;
      if (std::holds_alternative<bool>(*c)) {
        r = valueOf(std::get<bool>(*c) ? select.getTrueValue()
                                       : select.getFalseValue());
      } else if (std::holds_alternative<AffineExpr>(*c)) {
        // An unknown condition: the choice is named by the condition and
        // the two candidates.
        std::optional<BodyValue> t = valueOf(select.getTrueValue());
        std::optional<BodyValue> f = valueOf(select.getFalseValue());
        if (!t || !f)
          return std::nullopt;
        std::string cond = exprKey(std::get<AffineExpr>(*c));
        if (std::holds_alternative<AffineExpr>(*t) &&
            std::holds_alternative<AffineExpr>(*f)) {
          r = opaqueIndex("select(" + cond + "," +
                          exprKey(std::get<AffineExpr>(*t)) + "," +
                          exprKey(std::get<AffineExpr>(*f)) + ")");
        } else if (std::holds_alternative<Poly>(*t) &&
                   std::holds_alternative<Poly>(*f)) {
          r = function("select " + cond,
                       {std::get<Poly>(*t), std::get<Poly>(*f)});
        } else {
          return std::nullopt;
        }
      } else {
        return std::nullopt;
      }
    } else if (isa<arith::IndexCastOp, arith::IndexCastUIOp, arith::ExtSIOp,
                   arith::ExtUIOp, arith::TruncIOp, arith::ExtFOp,
                   arith::TruncFOp>(bodyOp)) {
      r = valueOf(bodyOp.getOperand(0));
    } else if (isa<arith::SIToFPOp, arith::UIToFPOp>(bodyOp)) {
      std::optional<AffineExpr> a = exprOf(bodyOp.getOperand(0));
      if (!a)
        return std::nullopt;
      if (std::optional<int64_t> c = constantOf(*a))
        r = Poly::constant(double(*c));
      else
        r = Poly::atom(intern("itof(" + exprKey(*a) + ")", std::nullopt));
    } else if (auto extract = dyn_cast<tensor::ExtractOp>(bodyOp)) {
      SmallVector<AffineExpr> at;
      for (Value i : extract.getIndices()) {
        std::optional<AffineExpr> e = exprOf(i);
        if (!e)
          return std::nullopt;
        at.push_back(*e);
      }
      Type element = extract.getType();
      if (isa<FloatType>(element)) {
        std::optional<Poly> p = this->element(extract.getTensor(), at);
        if (!p)
          return std::nullopt;
        r = *p;
      } else if (!element.isInteger(1)) {
        SmallVector<int64_t> known;
        for (AffineExpr e : at)
          if (std::optional<int64_t> k = constantOf(e))
            known.push_back(*k);
        const ConstTensor *t = known.size() == at.size()
                                   ? eval.evaluate(extract.getTensor())
                                   : nullptr;
        std::optional<int64_t> flat = t ? flatIndex(*t, known) : std::nullopt;
        if (t && !flat)
          return std::nullopt;
        if (t) {
          r = getAffineConstantExpr(int64_t(t->values[*flat]), ctx);
        } else {
          r = opaqueIndex("read" + indexKey(extract.getTensor(), at));
        }
      } else {
        return std::nullopt;
      }
    } else if (auto dim = dyn_cast<tensor::DimOp>(bodyOp)) {
      std::optional<int64_t> i = dim.getConstantIndex();
      auto type = dyn_cast<RankedTensorType>(dim.getSource().getType());
      if (i && type && !type.isDynamicDim(*i))
        r = getAffineConstantExpr(type.getDimSize(*i), ctx);
      else
        r = opaqueIndex("dim(" + exprKey(getAffineConstantExpr(i.value_or(-1), ctx)) +
                        indexKey(dim.getSource(), {}) + ")");
    } else if (bodyOp.getNumResults() == 1 &&
               isa<FloatType>(bodyOp.getResult(0).getType())) {
      SmallVector<Poly> args;
      for (Value operand : bodyOp.getOperands()) {
        std::optional<Poly> p = polyOf(operand);
        if (!p)
          return std::nullopt;
        args.push_back(*p);
      }
      std::optional<Poly> p;
      if (isa<arith::AddFOp>(bodyOp)) {
        p = add(args[0], args[1]);
      } else if (isa<arith::SubFOp>(bodyOp)) {
        p = add(args[0], args[1], -1);
      } else if (isa<arith::NegFOp>(bodyOp)) {
        p = scale(args[0], -1);
      } else if (isa<arith::MulFOp>(bodyOp)) {
        p = mul(args[0], args[1]);
      } else if (std::optional<double> d;
                 isa<arith::DivFOp>(bodyOp) &&
                 (d = args[1].asConstant()) && *d != 0) {
        p = scale(args[0], 1 / *d);
      } else {
        SmallVector<double> constants;
        for (const Poly &a : args)
          if (std::optional<double> c = a.asConstant())
            constants.push_back(*c);
        std::optional<double> folded =
            constants.size() == args.size() ? applyScalarOp(&bodyOp, constants)
                                            : std::nullopt;
        p = folded ? Poly::constant(*folded)
                   : function(bodyOp.getName().getStringRef(), args);
      }
      if (!p)
        return std::nullopt;
      r = *p;
    } else {
      return std::nullopt;
    }
    if (!r)
      return std::nullopt;
    values[bodyOp.getResult(0)] = *r;
  }
  auto yield = cast<linalg::YieldOp>(body->getTerminator());
  return polyOf(yield.getOperand(result));
}

bool ElementTracer::sameElements(Value v, ArrayRef<AffineExpr> a,
                                 ArrayRef<AffineExpr> b) {
  std::optional<Poly> pa = element(v, a), pb = element(v, b);
  if (!pa || !pb)
    return false;
  if (*pa == *pb)
    return true;
  // Two reads of one constant table (a cos cache sliced by position): the
  // table's columns at the two indices must hold the same numbers.
  if (pa->terms.size() != 1 || pb->terms.size() != 1)
    return false;
  const auto &[ma, ca] = *pa->terms.begin();
  const auto &[mb, cb] = *pb->terms.begin();
  if (ma.size() != 1 || mb.size() != 1 || ca != cb)
    return false;
  const TraceLeaf *la = leaf(ma[0]), *lb = leaf(mb[0]);
  if (!la || !lb || la->value != lb->value || la->last() < 0 || lb->last() < 0 ||
      !llvm::equal(ArrayRef(la->index).drop_back(),
                   ArrayRef(lb->index).drop_back()))
    return false;
  const ConstTensor *t = eval.evaluate(la->value);
  if (!t || t->shape.empty())
    return false;
  int64_t width = t->shape.back();
  for (int64_t row = 0; row < t->size() / width; ++row)
    if (t->values[row * width + la->last()] !=
        t->values[row * width + lb->last()])
      return false;
  return true;
}

} // namespace kiln
