//===- DimProgram.cpp - symbolic dims as an artifact's dim program --------===//
#include "codegen/artifact/DimProgram.h"

#include "dialects/kiln/KilnDialect.h"
#include "manifest.pb.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"

using namespace mlir;

namespace kiln::codegen {

using artifact::DimExpr;

FailureOr<DimProgram> DimProgram::create(func::FuncOp func,
                                         artifact::EntryPoint *entry) {
  DimProgram program(entry);
  program.func = func;
  auto bounds = func->getAttrOfType<DictionaryAttr>("kiln.dim_bounds");
  // Symbols in the order the inputs name them.
  for (unsigned i = 0; i < func.getNumArguments(); ++i) {
    auto names = func.getArgAttrOfType<ArrayAttr>(i, "kiln.dims");
    if (!names)
      continue;
    for (Attribute attr : names) {
      StringRef name = cast<StringAttr>(attr).getValue();
      if (name.empty() || program.symbols.count(name))
        continue;
      auto range = bounds ? bounds.getAs<DenseI64ArrayAttr>(name)
                          : DenseI64ArrayAttr();
      if (!range || range.size() != 2 || range[0] < 0 || range[1] < range[0])
        return func.emitError() << "symbolic dim '" << name
                                << "' has no bounds in kiln.dim_bounds";
      artifact::SymbolicDim *dim = entry->add_dims();
      dim->set_name(name.str());
      dim->set_min(range[0]);
      dim->set_max(range[1]);
      program.symbols[name] = entry->dims_size() - 1;
    }
  }
  return program;
}

uint32_t DimProgram::add(int op, int64_t value, uint32_t lhs, uint32_t rhs) {
  auto key = std::make_tuple(op, value, lhs, rhs);
  if (auto it = interned.find(key); it != interned.end())
    return it->second;
  // Fold constants.
  if (op > DimExpr::CONST) {
    std::optional<int64_t> a = constantValue(lhs), b = constantValue(rhs);
    if (a && b) {
      int64_t r = 0;
      bool ok = true;
      switch (op) {
      case DimExpr::ADD: ok = !__builtin_add_overflow(*a, *b, &r); break;
      case DimExpr::SUB: ok = !__builtin_sub_overflow(*a, *b, &r); break;
      case DimExpr::MUL: ok = !__builtin_mul_overflow(*a, *b, &r); break;
      case DimExpr::FLOORDIV:
        ok = *b > 0;
        r = ok ? (*a >= 0 ? *a / *b : -((-*a + *b - 1) / *b)) : 0;
        break;
      case DimExpr::CEILDIV:
        ok = *b > 0;
        r = ok ? (*a >= 0 ? (*a + *b - 1) / *b : -((-*a) / *b)) : 0;
        break;
      case DimExpr::REM: ok = *b > 0; r = ok ? ((*a % *b) + *b) % *b : 0; break;
      case DimExpr::MIN: r = std::min(*a, *b); break;
      case DimExpr::MAX: r = std::max(*a, *b); break;
      }
      if (ok)
        return constant(r);
    }
    // x * 1, x + 0, x / 1.
    if ((op == DimExpr::MUL || op == DimExpr::FLOORDIV ||
         op == DimExpr::CEILDIV) && b == 1)
      return lhs;
    if (op == DimExpr::MUL && a == 1)
      return rhs;
    if ((op == DimExpr::ADD || op == DimExpr::SUB) && b == 0)
      return lhs;
  }
  DimExpr *e = entry->add_dim_exprs();
  e->set_op(static_cast<DimExpr::Op>(op));
  e->set_value(value);
  e->set_lhs(lhs);
  e->set_rhs(rhs);
  // The range over the dims' bounds (interval arithmetic).
  std::pair<int64_t, int64_t> r{value, value};
  if (op == DimExpr::SYMBOL)
    r = {entry->dims(value).min(), entry->dims(value).max()};
  if (op > DimExpr::CONST) {
    auto [alo, ahi] = ranges[lhs];
    auto [blo, bhi] = ranges[rhs];
    switch (op) {
    case DimExpr::ADD: r = {alo + blo, ahi + bhi}; break;
    case DimExpr::SUB: r = {alo - bhi, ahi - blo}; break;
    case DimExpr::MUL: {
      int64_t p[] = {alo * blo, alo * bhi, ahi * blo, ahi * bhi};
      r = {*std::min_element(p, p + 4), *std::max_element(p, p + 4)};
      break;
    }
    case DimExpr::FLOORDIV:
    case DimExpr::CEILDIV: {
      int64_t lo = std::max<int64_t>(blo, 1), hi = std::max<int64_t>(bhi, 1);
      auto div = [&](int64_t x, int64_t y) {
        return op == DimExpr::FLOORDIV ? (x >= 0 ? x / y : -((-x + y - 1) / y))
                                       : (x >= 0 ? (x + y - 1) / y : -((-x) / y));
      };
      int64_t q[] = {div(alo, lo), div(alo, hi), div(ahi, lo), div(ahi, hi)};
      r = {*std::min_element(q, q + 4), *std::max_element(q, q + 4)};
      break;
    }
    case DimExpr::REM: r = {0, std::max<int64_t>(bhi - 1, 0)}; break;
    case DimExpr::MIN: r = {std::min(alo, blo), std::min(ahi, bhi)}; break;
    case DimExpr::MAX: r = {std::max(alo, blo), std::max(ahi, bhi)}; break;
    }
  }
  ranges.push_back(r);
  uint32_t index = entry->dim_exprs_size() - 1;
  interned[key] = index;
  return index;
}

uint32_t DimProgram::constant(int64_t value) {
  return add(DimExpr::CONST, value, 0, 0);
}
uint32_t DimProgram::mul(uint32_t lhs, uint32_t rhs) {
  return add(DimExpr::MUL, 0, lhs, rhs);
}
uint32_t DimProgram::ceilDiv(uint32_t lhs, uint32_t rhs) {
  return add(DimExpr::CEILDIV, 0, lhs, rhs);
}

std::optional<int64_t> DimProgram::constantValue(uint32_t e) const {
  const DimExpr &expr = entry->dim_exprs(e);
  if (expr.op() == DimExpr::CONST)
    return expr.value();
  return std::nullopt;
}

uint64_t DimProgram::upperBound(uint32_t e) const {
  return static_cast<uint64_t>(std::max<int64_t>(ranges[e].second, 0));
}

FailureOr<uint32_t> DimProgram::binary(int op, Value lhs, Value rhs) {
  FailureOr<uint32_t> a = exprOf(lhs);
  if (failed(a))
    return failure();
  FailureOr<uint32_t> b = exprOf(rhs);
  if (failed(b))
    return failure();
  return add(op, 0, *a, *b);
}

FailureOr<uint32_t> DimProgram::exprOf(Value index) {
  if (auto it = indices.find(index); it != indices.end())
    return it->second;
  APInt constantInt;
  if (matchPattern(index, m_ConstantInt(&constantInt)))
    return constant(constantInt.getSExtValue());
  Operation *def = index.getDefiningOp();
  if (auto dim = dyn_cast_or_null<tensor::DimOp>(def)) {
    std::optional<int64_t> d = dim.getConstantIndex();
    if (d)
      return dimOf(dim.getSource(), *d);
  }
  if (auto dim = dyn_cast_or_null<memref::DimOp>(def)) {
    std::optional<int64_t> d = dim.getConstantIndex();
    if (d)
      return dimOf(dim.getSource(), *d);
  }
  if (auto cast = dyn_cast_or_null<arith::IndexCastOp>(def))
    return exprOf(cast.getIn());
  if (isa_and_nonnull<arith::AddIOp>(def))
    return binary(DimExpr::ADD, def->getOperand(0), def->getOperand(1));
  if (isa_and_nonnull<arith::SubIOp>(def))
    return binary(DimExpr::SUB, def->getOperand(0), def->getOperand(1));
  if (isa_and_nonnull<arith::MulIOp>(def))
    return binary(DimExpr::MUL, def->getOperand(0), def->getOperand(1));
  if (isa_and_nonnull<arith::DivUIOp, arith::FloorDivSIOp, arith::DivSIOp>(def))
    return binary(DimExpr::FLOORDIV, def->getOperand(0), def->getOperand(1));
  if (isa_and_nonnull<arith::CeilDivUIOp, arith::CeilDivSIOp>(def))
    return binary(DimExpr::CEILDIV, def->getOperand(0), def->getOperand(1));
  if (isa_and_nonnull<arith::RemUIOp, arith::RemSIOp>(def))
    return binary(DimExpr::REM, def->getOperand(0), def->getOperand(1));
  if (isa_and_nonnull<arith::MinSIOp, arith::MinUIOp>(def))
    return binary(DimExpr::MIN, def->getOperand(0), def->getOperand(1));
  if (isa_and_nonnull<arith::MaxSIOp, arith::MaxUIOp>(def))
    return binary(DimExpr::MAX, def->getOperand(0), def->getOperand(1));
  if (auto apply = dyn_cast_or_null<affine::AffineApplyOp>(def)) {
    SmallVector<uint32_t> operands;
    for (Value operand : apply.getMapOperands()) {
      FailureOr<uint32_t> e = exprOf(operand);
      if (failed(e))
        return failure();
      operands.push_back(*e);
    }
    unsigned numDims = apply.getAffineMap().getNumDims();
    std::function<FailureOr<uint32_t>(AffineExpr)> walk =
        [&](AffineExpr expr) -> FailureOr<uint32_t> {
      if (auto c = dyn_cast<AffineConstantExpr>(expr))
        return constant(c.getValue());
      if (auto d = dyn_cast<AffineDimExpr>(expr))
        return operands[d.getPosition()];
      if (auto s = dyn_cast<AffineSymbolExpr>(expr))
        return operands[numDims + s.getPosition()];
      auto bin = cast<AffineBinaryOpExpr>(expr);
      FailureOr<uint32_t> l = walk(bin.getLHS()), r = walk(bin.getRHS());
      if (failed(l) || failed(r))
        return failure();
      switch (bin.getKind()) {
      case AffineExprKind::Add: return add(DimExpr::ADD, 0, *l, *r);
      case AffineExprKind::Mul: return add(DimExpr::MUL, 0, *l, *r);
      case AffineExprKind::FloorDiv: return add(DimExpr::FLOORDIV, 0, *l, *r);
      case AffineExprKind::CeilDiv: return add(DimExpr::CEILDIV, 0, *l, *r);
      case AffineExprKind::Mod: return add(DimExpr::REM, 0, *l, *r);
      default: return failure();
      }
    };
    return walk(apply.getAffineMap().getResult(0));
  }
  InFlightDiagnostic diag =
      (def ? def->emitError() : func.emitError())
      << "cannot compute this size from the symbolic dims";
  if (def)
    diag << " ('" << def->getName() << "')";
  return failure();
}

FailureOr<uint32_t> DimProgram::sizeOf(OpFoldResult size) {
  if (auto v = dyn_cast<Value>(size))
    return exprOf(v);
  return constant(cast<IntegerAttr>(cast<Attribute>(size)).getInt());
}

FailureOr<uint32_t> DimProgram::productOf(Value source,
                                          ArrayRef<int64_t> dims) {
  uint32_t product = constant(1);
  for (int64_t j : dims) {
    FailureOr<uint32_t> e = dimOf(source, j);
    if (failed(e))
      return failure();
    product = mul(product, *e);
  }
  return product;
}

FailureOr<uint32_t> DimProgram::dimOf(Value value, unsigned d) {
  auto shaped = cast<ShapedType>(value.getType());
  if (!shaped.isDynamicDim(d))
    return constant(shaped.getDimSize(d));
  auto key = std::make_pair(value, d);
  if (auto it = dims.find(key); it != dims.end())
    return it->second;
  FailureOr<uint32_t> result = failure();
  if (auto arg = dyn_cast<BlockArgument>(value)) {
    Operation *owner = arg.getOwner()->getParentOp();
    if (owner == func.getOperation()) {
      auto names =
          func.getArgAttrOfType<ArrayAttr>(arg.getArgNumber(), "kiln.dims");
      StringRef name = names && d < names.size()
                           ? cast<StringAttr>(names[d]).getValue()
                           : StringRef();
      auto it = symbols.find(name);
      if (it == symbols.end())
        return func.emitError() << "input #" << arg.getArgNumber()
                                << " has a dynamic dim " << d
                                << " without a name in kiln.dims";
      result = add(DimExpr::SYMBOL, it->second, 0, 0);
    } else if (auto dispatch = dyn_cast<DispatchOp>(owner)) {
      result = dimOf(dispatch.getInputs()[arg.getArgNumber()], d);
    } else {
      return owner->emitError() << "cannot compute a dim of a block argument "
                                   "of this op from the symbolic dims";
    }
  } else {
    Operation *def = value.getDefiningOp();
    auto index = cast<OpResult>(value).getResultNumber();
    if (auto dispatch = dyn_cast<DispatchOp>(def)) {
      auto yield = cast<YieldOp>(dispatch.getBody().front().getTerminator());
      result = dimOf(yield.getValues()[index], d);
    } else if (auto empty = dyn_cast<tensor::EmptyOp>(def)) {
      result = exprOf(empty.getDynamicSize(d));
    } else if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def)) {
      result = sizeOf(expand.getMixedOutputShape()[d]);
    } else if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(def)) {
      result = productOf(collapse.getSrc(),
                         collapse.getReassociationIndices()[d]);
    } else if (auto alloc = dyn_cast<memref::AllocOp>(def)) {
      result = exprOf(alloc.getDynamicSizes()[alloc.getType()
                                                  .getDynamicDimIndex(d)]);
    } else if (auto view = dyn_cast<memref::ReinterpretCastOp>(def)) {
      result = sizeOf(view.getMixedSizes()[d]);
    } else if (auto expand = dyn_cast<memref::ExpandShapeOp>(def)) {
      result = sizeOf(expand.getMixedOutputShape()[d]);
    } else if (auto collapse = dyn_cast<memref::CollapseShapeOp>(def)) {
      result = productOf(collapse.getSrc(),
                         collapse.getReassociationIndices()[d]);
    } else if (auto cast = dyn_cast<memref::CastOp>(def)) {
      result = dimOf(cast.getSource(), d);
    } else if (auto cast = dyn_cast<tensor::CastOp>(def)) {
      result = dimOf(cast.getSource(), d);
    } else if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def);
               slice && slice.getType().getRank() ==
                            slice.getSourceType().getRank()) {
      result = sizeOf(slice.getMixedSizes()[d]);
    } else if (auto toTensor = dyn_cast<bufferization::ToTensorOp>(def)) {
      result = dimOf(toTensor.getBuffer(), d);
    } else if (auto dps = dyn_cast<DestinationStyleOpInterface>(def)) {
      result = dimOf(dps.getDpsInitOperand(index)->get(), d);
    } else if (auto attention = dyn_cast<AttentionOp>(def)) {
      // [B, Hq, S] of the query, the value's head size.
      result = d == 3 ? dimOf(attention.getValue(), 3)
                      : dimOf(attention.getQuery(), d);
    } else if (isa<LayerNormOp, RmsNormOp>(def) && index == 0) {
      // A norm kept whole (the row-fused kernel's): its input's shape.
      result = dimOf(def->getOperand(0), d);
    } else {
      return def->emitError() << "cannot compute dim " << d
                              << " of this op's result from the symbolic "
                                 "dims";
    }
  }
  if (succeeded(result))
    dims[key] = *result;
  return result;
}

FailureOr<uint32_t> DimProgram::bytesOf(Value value, uint64_t elementBytes) {
  auto shaped = cast<ShapedType>(value.getType());
  uint32_t product = constant(static_cast<int64_t>(elementBytes));
  for (int64_t d = 0; d < shaped.getRank(); ++d) {
    FailureOr<uint32_t> e = dimOf(value, d);
    if (failed(e))
      return failure();
    product = mul(product, *e);
  }
  return product;
}

} // namespace kiln::codegen
