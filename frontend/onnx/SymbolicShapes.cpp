//===- SymbolicShapes.cpp - shape arithmetic on symbolic dims -------------===//
#include "frontend/onnx/SymbolicShapes.h"

#include "dialects/kiln/KilnDialect.h"
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"

#include <algorithm>

using namespace mlir;

namespace kiln::onnx {

//===----------------------------------------------------------------------===//
// SymPoly
//===----------------------------------------------------------------------===//

SymPoly SymPoly::constant(int64_t value) {
  SymPoly p;
  if (value != 0)
    p.terms[{}] = value;
  return p;
}

SymPoly SymPoly::symbol(StringRef name) {
  SymPoly p;
  p.terms[{name.str()}] = 1;
  return p;
}

std::optional<int64_t> SymPoly::asConstant() const {
  if (terms.empty())
    return 0;
  if (terms.size() == 1 && terms.begin()->first.empty())
    return terms.begin()->second;
  return std::nullopt;
}

SymPoly SymPoly::operator+(const SymPoly &other) const {
  SymPoly r = *this;
  for (const auto &[monomial, c] : other.terms)
    if ((r.terms[monomial] += c) == 0)
      r.terms.erase(monomial);
  return r;
}

SymPoly SymPoly::operator-(const SymPoly &other) const {
  return *this + other * constant(-1);
}

SymPoly SymPoly::operator*(const SymPoly &other) const {
  SymPoly r;
  for (const auto &[a, ca] : terms)
    for (const auto &[b, cb] : other.terms) {
      std::vector<std::string> m = a;
      m.insert(m.end(), b.begin(), b.end());
      std::sort(m.begin(), m.end());
      if ((r.terms[m] += ca * cb) == 0)
        r.terms.erase(m);
    }
  return r;
}

std::optional<SymPoly> SymPoly::divideExactly(const SymPoly &divisor) const {
  if (divisor.terms.empty())
    return std::nullopt;
  if (divisor.terms.size() > 1) {
    // A quotient that is one monomial (`(64 + 64 p) / (16 + 16 p)` = 4):
    // this's first term over each of the divisor's, checked by multiplying
    // back.
    if (terms.empty())
      return constant(0);
    const auto &[m0, c0] = *terms.begin();
    for (const auto &[dm, dc] : divisor.terms) {
      SymPoly term;
      term.terms[dm] = dc;
      std::optional<SymPoly> q = SymPoly{{{m0, c0}}}.divideExactly(term);
      if (q && divisor * *q == *this)
        return q;
    }
    return std::nullopt;
  }
  const auto &[dm, dc] = *divisor.terms.begin();
  SymPoly r;
  for (const auto &[m, c] : terms) {
    if (c % dc != 0)
      return std::nullopt;
    std::vector<std::string> rest = m;
    for (const std::string &s : dm) {
      auto it = std::find(rest.begin(), rest.end(), s);
      if (it == rest.end())
        return std::nullopt;
      rest.erase(it);
    }
    r.terms[rest] = c / dc;
  }
  return r;
}

std::string SymPoly::str() const {
  if (terms.empty())
    return "0";
  std::string s;
  for (const auto &[m, c] : terms) {
    if (!s.empty())
      s += " + ";
    bool unit = c == 1 && !m.empty();
    if (!unit)
      s += std::to_string(c);
    for (size_t i = 0; i < m.size(); ++i)
      s += (i || !unit ? "*" : "") + m[i];
  }
  return s;
}

//===----------------------------------------------------------------------===//
// SymbolicShapes
//===----------------------------------------------------------------------===//

void SymbolicShapes::beginFunction(func::FuncOp f, OpBuilder &b) {
  func = f;
  Block &entry = f.getBody().front();
  for (unsigned i = 0; i < f.getNumArguments(); ++i) {
    auto names = f.getArgAttrOfType<ArrayAttr>(i, "kiln.dims");
    if (!names)
      continue;
    for (auto [d, attr] : llvm::enumerate(names)) {
      StringRef name = cast<StringAttr>(attr).getValue();
      if (name.empty() || symbolValues.count(name))
        continue;
      Value size = tensor::DimOp::create(b, f.getLoc(), entry.getArgument(i),
                                         static_cast<int64_t>(d));
      symbolValues[name] = size;
      known[size] = SymPoly::symbol(name);
      materialized[SymPoly::symbol(name).terms] = size;
    }
  }
}

FailureOr<SymPoly> SymbolicShapes::indexPoly(Value index) {
  if (auto it = known.find(index); it != known.end())
    return it->second;
  if (std::optional<int64_t> c = getConstantIntValue(index))
    return SymPoly::constant(*c);
  Operation *def = index.getDefiningOp();
  if (!def)
    return failure();
  if (auto dim = dyn_cast<tensor::DimOp>(def)) {
    std::optional<int64_t> d = dim.getConstantIndex();
    if (!d)
      return failure();
    return dimPoly(dim.getSource(), *d);
  }
  if (isa<arith::IndexCastOp>(def))
    return indexPoly(def->getOperand(0));
  auto binary = [&](auto combine) -> FailureOr<SymPoly> {
    FailureOr<SymPoly> a = indexPoly(def->getOperand(0));
    FailureOr<SymPoly> b = indexPoly(def->getOperand(1));
    if (failed(a) || failed(b))
      return failure();
    return combine(*a, *b);
  };
  if (isa<arith::AddIOp>(def))
    return binary([](const SymPoly &a, const SymPoly &b) { return a + b; });
  if (isa<arith::SubIOp>(def))
    return binary([](const SymPoly &a, const SymPoly &b) { return a - b; });
  if (isa<arith::MulIOp>(def))
    return binary([](const SymPoly &a, const SymPoly &b) { return a * b; });
  if (isa<arith::DivSIOp, arith::DivUIOp, arith::FloorDivSIOp>(def)) {
    FailureOr<SymPoly> a = indexPoly(def->getOperand(0));
    FailureOr<SymPoly> b = indexPoly(def->getOperand(1));
    if (failed(a) || failed(b))
      return failure();
    std::optional<SymPoly> q = a->divideExactly(*b);
    if (!q)
      return failure();
    return *q;
  }
  return failure();
}

FailureOr<SymPoly> SymbolicShapes::dimPoly(Value tensor, unsigned d) {
  auto type = cast<ShapedType>(tensor.getType());
  if (!type.isDynamicDim(d))
    return SymPoly::constant(type.getDimSize(d));
  if (auto arg = dyn_cast<BlockArgument>(tensor)) {
    if (arg.getOwner()->getParentOp() != func.getOperation())
      return failure();
    auto names =
        func.getArgAttrOfType<ArrayAttr>(arg.getArgNumber(), "kiln.dims");
    if (!names || d >= names.size() ||
        cast<StringAttr>(names[d]).getValue().empty())
      return failure();
    return SymPoly::symbol(cast<StringAttr>(names[d]).getValue());
  }
  Operation *def = tensor.getDefiningOp();
  unsigned result = cast<OpResult>(tensor).getResultNumber();
  if (auto empty = dyn_cast<tensor::EmptyOp>(def))
    return indexPoly(empty.getDynamicSize(d));
  if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def)) {
    OpFoldResult size = expand.getMixedOutputShape()[d];
    if (auto v = dyn_cast<Value>(size))
      return indexPoly(v);
    return SymPoly::constant(*getConstantIntValue(size));
  }
  if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(def)) {
    SymPoly product = SymPoly::constant(1);
    // A local: ranging over an element of the returned temporary would read
    // it after its end (AddressSanitizer's stack-use-after-scope).
    SmallVector<ReassociationIndices> groups = collapse.getReassociationIndices();
    for (int64_t j : groups[d]) {
      FailureOr<SymPoly> p = dimPoly(collapse.getSrc(), j);
      if (failed(p))
        return failure();
      product = product * *p;
    }
    return product;
  }
  if (auto cast = dyn_cast<tensor::CastOp>(def))
    return dimPoly(cast.getSource(), d);
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    if (slice.getType().getRank() != slice.getSourceType().getRank())
      return failure();
    OpFoldResult size = slice.getMixedSizes()[d];
    if (auto v = dyn_cast<Value>(size))
      return indexPoly(v);
    return SymPoly::constant(*getConstantIntValue(size));
  }
  if (auto matmul = dyn_cast<MatmulOp>(def)) {
    int64_t rank = type.getRank();
    if (d == rank - 1)
      return dimPoly(matmul.getRhs(), matmul.getRhs().getType().getRank() - 1);
    if (d == rank - 2)
      return dimPoly(matmul.getLhs(), matmul.getLhs().getType().getRank() - 2);
    for (Value operand : {matmul.getLhs(), matmul.getRhs()}) {
      auto t = cast<RankedTensorType>(operand.getType());
      int64_t j = static_cast<int64_t>(d) - (rank - t.getRank());
      if (j >= 0 && t.isDynamicDim(j))
        return dimPoly(operand, j);
    }
    return failure();
  }
  if (isa<SoftmaxOp, GeluOp, SiluOp, LayerNormOp, RmsNormOp>(def))
    return dimPoly(def->getOperand(0), d);
  if (auto dps = dyn_cast<DestinationStyleOpInterface>(def))
    return dimPoly(dps.getDpsInitOperand(result)->get(), d);
  return failure();
}

Value SymbolicShapes::materialize(OpBuilder &b, Location loc,
                                  const SymPoly &poly) {
  if (std::optional<int64_t> c = poly.asConstant())
    return arith::ConstantIndexOp::create(b, loc, *c);
  if (auto it = materialized.find(poly.terms); it != materialized.end())
    return it->second;
  Value sum;
  for (const auto &[monomial, coeff] : poly.terms) {
    Value term;
    for (const std::string &s : monomial)
      term = term ? arith::MulIOp::create(b, loc, term, symbolValues[s])
                        .getResult()
                  : symbolValues[s];
    if (!term)
      term = arith::ConstantIndexOp::create(b, loc, coeff);
    else if (coeff != 1)
      term = arith::MulIOp::create(
          b, loc, term, arith::ConstantIndexOp::create(b, loc, coeff));
    sum = sum ? arith::AddIOp::create(b, loc, sum, term).getResult() : term;
  }
  known[sum] = poly;
  materialized[poly.terms] = sum;
  return sum;
}

std::optional<std::pair<int64_t, int64_t>>
SymbolicShapes::range(const SymPoly &poly) const {
  int64_t lo = 0, hi = 0;
  for (const auto &[monomial, coeff] : poly.terms) {
    if (coeff < 0)
      return std::nullopt;
    int64_t tlo = coeff, thi = coeff;
    for (const std::string &s : monomial) {
      auto it = bounds.find(s);
      if (it == bounds.end())
        return std::nullopt;
      tlo *= it->second.first;
      thi *= it->second.second;
    }
    lo += tlo;
    hi += thi;
  }
  return std::make_pair(lo, hi);
}

} // namespace kiln::onnx
