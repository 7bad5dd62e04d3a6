//===- SimArith.cpp - arith, math and vector values in the simulator ------===//
//
// Scalar arith and math ops run lane by lane for the active threads; f32
// arithmetic computes in float and rounds to f32 after every op, as the GPU
// does. Constants (scalar and vector) and the vector value ops (extract,
// insert, from_elements, broadcast, shape_cast; n-D vectors are held
// flattened in row-major order, one Lanes per element) are here too;
// vector memory accesses are in SimMemory.cpp.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "llvm/ADT/APFloat.h"

#include <cmath>
#include <cstring>

using namespace mlir;

namespace kiln::sim {

double toDouble(uint64_t bits, Type type) {
  if (type.isF32())
    return asFloat(bits);
  if (type.isF16() || type.isBF16())
    return APFloat(cast<FloatType>(type).getFloatSemantics(),
                   APInt(16, bits & 0xffff))
        .convertToDouble();
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

uint64_t fromDouble(double value, Type type) {
  if (type.isF32()) {
    float f = static_cast<float>(value);
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
  }
  if (type.isF16() || type.isBF16()) {
    // Rounded once, from double, to nearest even: what the GPU's
    // conversion instructions do.
    APFloat f(value);
    bool lost = false;
    f.convert(cast<FloatType>(type).getFloatSemantics(),
              APFloat::rmNearestTiesToEven, &lost);
    return f.bitcastToAPInt().getZExtValue();
  }
  uint64_t b;
  std::memcpy(&b, &value, 8);
  return b;
}

float asFloat(uint64_t bits) {
  float f;
  uint32_t b = static_cast<uint32_t>(bits);
  std::memcpy(&f, &b, 4);
  return f;
}

namespace {

/// The operands of one scalar op, read by thread: raw bits, as float, as
/// signed or unsigned integers of the first operand's width.
struct Scalars {
  SmallVector<const Lanes *, 3> in;
  Type type;   // the result's
  Type inType; // the first operand's (the result's when there is none)
  unsigned w = 64, inW = 64;

  uint64_t raw(unsigned k, unsigned t) const { return (*in[k])[t]; }
  double f(unsigned k, unsigned t) const { return toDouble(raw(k, t), inType); }
  int64_t s(unsigned k, unsigned t) const { return sext(raw(k, t), inW); }
  uint64_t u(unsigned k, unsigned t) const { return truncTo(raw(k, t), inW); }
  /// `v` rounded to the result type.
  uint64_t round(double v) const { return fromDouble(v, type); }
  /// `fn(a, b)` (b = 0 for unary ops) on float for f32 operands, so that
  /// f32 rounds after every op, and on double otherwise.
  template <typename Fn> uint64_t floatOp(unsigned t, Fn fn) const {
    if (inType.isF32())
      return round(
          fn(asFloat(raw(0, t)), in.size() > 1 ? asFloat(raw(1, t)) : 0.0f));
    return round(fn(f(0, t), in.size() > 1 ? f(1, t) : 0.0));
  }
};

/// Sets the one result of `op` to `fn(scalars, t)` for each active thread.
template <typename Fn>
bool mapLanes(BlockRunner &runner, Operation &op, const Mask &mask, Fn fn) {
  if (!scalarOnly(runner, op))
    return false;
  Scalars x;
  x.type = op.getResult(0).getType();
  if (!x.type.isIntOrIndexOrFloat()) {
    runner.fail(&op, "has a result type the simulator does not model");
    return false;
  }
  x.w = bitWidth(x.type);
  for (Value operand : op.getOperands())
    x.in.push_back(&runner.get(operand));
  x.inType = op.getNumOperands() ? op.getOperand(0).getType() : x.type;
  x.inW = x.inType.isIntOrIndexOrFloat() ? bitWidth(x.inType) : 64;
  Lanes out(runner.threads, 0);
  runner.forActive(mask, [&](unsigned t) { out[t] = fn(x, t); });
  runner.values[op.getResult(0)] = std::move(out);
  return true;
}

/// `Ops` computed lane by lane by `fn(const Scalars &, unsigned thread)`.
template <typename... Ops, typename Fn>
void addLanewise(HandlerTable &table, Fn fn) {
  table.add<Ops...>([fn](BlockRunner &runner, Operation &op,
                         const Mask &mask) {
    return mapLanes(runner, op, mask, fn);
  });
}
/// Float `Ops` computed by `fn(a, b)` (see Scalars::floatOp).
template <typename... Ops, typename Fn>
void addFloat(HandlerTable &table, Fn fn) {
  addLanewise<Ops...>(
      table, [fn](const Scalars &x, unsigned t) { return x.floatOp(t, fn); });
}
/// Integer `Ops` computed by `fn(a, b, width)` on the operands zero-extended.
template <typename... Ops, typename Fn>
void addUnsigned(HandlerTable &table, Fn fn) {
  addLanewise<Ops...>(table, [fn](const Scalars &x, unsigned t) {
    return fn(x.u(0, t), x.u(1, t), x.w);
  });
}
/// Integer `Ops` computed by `fn(a, b, width)` on the operands sign-extended.
template <typename... Ops, typename Fn>
void addSigned(HandlerTable &table, Fn fn) {
  addLanewise<Ops...>(table, [fn](const Scalars &x, unsigned t) {
    return fn(x.s(0, t), x.s(1, t), x.w);
  });
}

uint64_t compare(arith::CmpIPredicate pred, const Scalars &x, unsigned t) {
  using P = arith::CmpIPredicate;
  switch (pred) {
  case P::eq: return x.u(0, t) == x.u(1, t);
  case P::ne: return x.u(0, t) != x.u(1, t);
  case P::slt: return x.s(0, t) < x.s(1, t);
  case P::sle: return x.s(0, t) <= x.s(1, t);
  case P::sgt: return x.s(0, t) > x.s(1, t);
  case P::sge: return x.s(0, t) >= x.s(1, t);
  case P::ult: return x.u(0, t) < x.u(1, t);
  case P::ule: return x.u(0, t) <= x.u(1, t);
  case P::ugt: return x.u(0, t) > x.u(1, t);
  case P::uge: return x.u(0, t) >= x.u(1, t);
  }
  return 0;
}

uint64_t compare(arith::CmpFPredicate pred, const Scalars &x, unsigned t) {
  double a = x.f(0, t), b = x.f(1, t);
  bool unordered = std::isnan(a) || std::isnan(b);
  using P = arith::CmpFPredicate;
  switch (pred) {
  case P::AlwaysFalse: return 0;
  case P::OEQ: return !unordered && a == b;
  case P::OGT: return !unordered && a > b;
  case P::OGE: return !unordered && a >= b;
  case P::OLT: return !unordered && a < b;
  case P::OLE: return !unordered && a <= b;
  case P::ONE: return !unordered && a != b;
  case P::ORD: return !unordered;
  case P::UEQ: return unordered || a == b;
  case P::UGT: return unordered || a > b;
  case P::UGE: return unordered || a >= b;
  case P::ULT: return unordered || a < b;
  case P::ULE: return unordered || a <= b;
  case P::UNE: return unordered || a != b;
  case P::UNO: return unordered;
  case P::AlwaysTrue: return 1;
  }
  return 0;
}

/// arith.cmpi and arith.cmpf: the predicate is read once per op.
template <typename CmpOp> void addCompare(HandlerTable &table) {
  table.add<CmpOp>([](BlockRunner &runner, Operation &op, const Mask &mask) {
    auto pred = cast<CmpOp>(op).getPredicate();
    return mapLanes(runner, op, mask, [pred](const Scalars &x, unsigned t) {
      return compare(pred, x, t);
    });
  });
}

/// Scalar constants, and vector constants as one uniform Lanes per element
/// (row-major for n-D vectors).
bool runConstant(BlockRunner &runner, Operation &op, const Mask &) {
  auto c = cast<arith::ConstantOp>(op);
  unsigned n = runner.threads;
  uint64_t bits = 0;
  if (auto i = dyn_cast<IntegerAttr>(c.getValue())) {
    bits = i.getValue().getZExtValue();
  } else if (auto f = dyn_cast<FloatAttr>(c.getValue())) {
    bits = fromDouble(f.getValueAsDouble(), f.getType());
  } else if (auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
             dense && isa<VectorType>(dense.getType())) {
    std::vector<Lanes> elements;
    Type element = dense.getElementType();
    for (int64_t e = 0; e < dense.getNumElements(); ++e) {
      uint64_t v = 0;
      if (isa<FloatType>(element))
        v = fromDouble(dense.getValues<APFloat>()[e].convertToDouble(),
                       element);
      else
        v = dense.getValues<APInt>()[e].getZExtValue();
      elements.push_back(Lanes(n, v));
    }
    runner.vectors[c.getResult()] = std::move(elements);
    return true;
  } else {
    runner.fail(&op, "only scalar and vector constants are modelled");
    return false;
  }
  runner.def(c).assign(n, bits);
  return true;
}

/// The first flattened element and the element count of the slice of a
/// vector of `type` at a constant `position` (a prefix of its indices).
std::pair<int64_t, int64_t> sliceOf(VectorType type,
                                    ArrayRef<int64_t> position) {
  int64_t first = 0, count = 1;
  ArrayRef<int64_t> shape = type.getShape();
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d < position.size())
      first = first * shape[d] + position[d];
    else {
      first *= shape[d];
      count *= shape[d];
    }
  }
  return {first, count};
}

/// vector.extract at a constant position: an element (scalar) or a
/// sub-vector of an n-D vector.
bool runExtract(BlockRunner &runner, Operation &op, const Mask &) {
  auto extract = cast<vector::ExtractOp>(op);
  auto it = runner.vectors.find(extract.getSource());
  if (it == runner.vectors.end() || extract.hasDynamicPosition()) {
    runner.fail(&op, "only extracts at a constant position from a vector the "
                     "simulator built are modelled");
    return false;
  }
  auto [first, count] = sliceOf(extract.getSourceVectorType(),
                                extract.getStaticPosition());
  if (!isa<VectorType>(extract.getResult().getType())) {
    runner.values[extract.getResult()] = it->second[first];
    return true;
  }
  runner.vectors[extract.getResult()] = std::vector<Lanes>(
      it->second.begin() + first, it->second.begin() + first + count);
  return true;
}

/// vector.insert of an element or a sub-vector at a constant position.
bool runInsert(BlockRunner &runner, Operation &op, const Mask &mask) {
  auto insert = cast<vector::InsertOp>(op);
  auto dest = runner.vectors.find(insert.getDest());
  if (dest == runner.vectors.end() || insert.hasDynamicPosition()) {
    runner.fail(&op, "only inserts at a constant position into a vector the "
                     "simulator built are modelled");
    return false;
  }
  std::vector<Lanes> result = dest->second;
  auto [first, count] =
      sliceOf(insert.getDestVectorType(), insert.getStaticPosition());
  std::vector<const Lanes *> source;
  if (isa<VectorType>(insert.getValueToStore().getType())) {
    auto it = runner.vectors.find(insert.getValueToStore());
    if (it == runner.vectors.end()) {
      runner.fail(&op, "inserts a vector the simulator did not build");
      return false;
    }
    for (const Lanes &lanes : it->second)
      source.push_back(&lanes);
  } else {
    source.push_back(&runner.get(insert.getValueToStore()));
  }
  // Only the active threads' lanes change: an insert under a mask leaves
  // the others' values as they were.
  for (int64_t e = 0; e < count; ++e)
    runner.forActive(mask, [&](unsigned t) {
      result[first + e][t] = (*source[e])[t];
    });
  runner.vectors[insert.getResult()] = std::move(result);
  return true;
}

/// vector.shape_cast: the same elements in the same (row-major) order.
bool runShapeCast(BlockRunner &runner, Operation &op, const Mask &) {
  auto cast_ = cast<vector::ShapeCastOp>(op);
  auto it = runner.vectors.find(cast_.getSource());
  if (it == runner.vectors.end()) {
    runner.fail(&op, "casts a vector the simulator did not build");
    return false;
  }
  std::vector<Lanes> copy = it->second;
  runner.vectors[cast_.getResult()] = std::move(copy);
  return true;
}

bool runFromElements(BlockRunner &runner, Operation &op, const Mask &) {
  auto build = cast<vector::FromElementsOp>(op);
  std::vector<Lanes> elements;
  for (Value element : build.getElements())
    elements.push_back(runner.get(element));
  runner.vectors[build.getResult()] = std::move(elements);
  return true;
}

/// vector.bitcast: the same bits cut into elements of another width,
/// element 0 the lowest (the GPU is little-endian); widths that divide one
/// another, up to 64 bits.
bool runVectorBitcast(BlockRunner &runner, Operation &op, const Mask &) {
  auto cast_ = cast<vector::BitCastOp>(op);
  auto it = runner.vectors.find(cast_.getSource());
  unsigned from = bitWidth(cast_.getSourceVectorType().getElementType());
  unsigned to = bitWidth(cast_.getResultVectorType().getElementType());
  if (it == runner.vectors.end() || from == 0 || to == 0 || from > 64 ||
      to > 64 || (from % to && to % from)) {
    runner.fail(&op, "only bitcasts of a vector the simulator built, between "
                     "element widths that divide one another, are modelled");
    return false;
  }
  const std::vector<Lanes> &source = it->second;
  std::vector<Lanes> result(cast_.getResultVectorType().getNumElements(),
                            Lanes(runner.threads, 0));
  for (size_t k = 0; k < result.size(); ++k)
    for (unsigned t = 0; t < runner.threads; ++t) {
      uint64_t bits = 0;
      if (to <= from) {  // a piece of one source element
        uint64_t first = uint64_t(k) * to;
        bits = truncTo(source[first / from][t] >> (first % from), to);
      } else {  // several source elements, the first lowest
        for (unsigned p = 0; p < to / from; ++p)
          bits |= truncTo(source[k * (to / from) + p][t], from) << (p * from);
      }
      result[k][t] = bits;
    }
  runner.vectors[cast_.getResult()] = std::move(result);
  return true;
}

bool runBroadcast(BlockRunner &runner, Operation &op, const Mask &) {
  auto splat = cast<vector::BroadcastOp>(op);
  auto type = cast<VectorType>(splat.getResult().getType());
  if (isa<VectorType>(splat.getSource().getType())) {
    runner.fail(&op, "only broadcasts of a scalar to a vector are modelled");
    return false;
  }
  runner.vectors[splat.getResult()] =
      std::vector<Lanes>(type.getNumElements(), runner.get(splat.getSource()));
  return true;
}

} // namespace

void registerArithHandlers(HandlerTable &table) {
  table.add<arith::ConstantOp>(runConstant);
  table.add<vector::ExtractOp>(runExtract);
  table.add<vector::InsertOp>(runInsert);
  table.add<vector::ShapeCastOp>(runShapeCast);
  table.add<vector::FromElementsOp>(runFromElements);
  table.add<vector::BroadcastOp>(runBroadcast);
  table.add<vector::BitCastOp>(runVectorBitcast);

  // Integers.
  addUnsigned<arith::AddIOp>(table, [](auto a, auto b, unsigned w) { return truncTo(a + b, w); });
  addUnsigned<arith::SubIOp>(table, [](auto a, auto b, unsigned w) { return truncTo(a - b, w); });
  addUnsigned<arith::MulIOp>(table, [](auto a, auto b, unsigned w) { return truncTo(a * b, w); });
  addUnsigned<arith::DivUIOp>(table, [](auto a, auto b, unsigned) { return b ? a / b : 0; });
  addUnsigned<arith::RemUIOp>(table, [](auto a, auto b, unsigned) { return b ? a % b : 0; });
  addSigned<arith::DivSIOp>(table, [](auto a, auto b, unsigned w) { return truncTo(b ? a / b : 0, w); });
  addSigned<arith::RemSIOp>(table, [](auto a, auto b, unsigned w) { return truncTo(b ? a % b : 0, w); });
  addUnsigned<arith::AndIOp>(table, [](auto a, auto b, unsigned) { return a & b; });
  addUnsigned<arith::OrIOp>(table, [](auto a, auto b, unsigned) { return a | b; });
  addUnsigned<arith::XOrIOp>(table, [](auto a, auto b, unsigned) { return a ^ b; });
  addUnsigned<arith::ShLIOp>(table, [](auto a, auto b, unsigned w) { return b >= w ? 0 : truncTo(a << b, w); });
  addUnsigned<arith::ShRUIOp>(table, [](auto a, auto b, unsigned w) { return b >= w ? 0 : a >> b; });
  addLanewise<arith::ShRSIOp>(table, [](const Scalars &x, unsigned t) {
    return truncTo(x.s(0, t) >> std::min<uint64_t>(x.u(1, t), x.w - 1), x.w);
  });
  addSigned<arith::MaxSIOp>(table, [](auto a, auto b, unsigned w) { return truncTo(std::max(a, b), w); });
  addSigned<arith::MinSIOp>(table, [](auto a, auto b, unsigned w) { return truncTo(std::min(a, b), w); });
  addUnsigned<arith::MaxUIOp>(table, [](auto a, auto b, unsigned) { return std::max(a, b); });
  addUnsigned<arith::MinUIOp>(table, [](auto a, auto b, unsigned) { return std::min(a, b); });
  addLanewise<math::AbsIOp>(table, [](const Scalars &x, unsigned t) {
    int64_t a = x.s(0, t);
    return truncTo(static_cast<uint64_t>(a < 0 ? -a : a), x.w);
  });

  // Floats.
  addFloat<arith::AddFOp>(table, [](auto a, auto b) { return a + b; });
  addFloat<arith::SubFOp>(table, [](auto a, auto b) { return a - b; });
  addFloat<arith::MulFOp>(table, [](auto a, auto b) { return a * b; });
  addFloat<arith::DivFOp>(table, [](auto a, auto b) { return a / b; });
  addFloat<arith::RemFOp>(table, [](auto a, auto b) { return std::fmod(a, b); });
  addFloat<arith::NegFOp>(table, [](auto a, auto) { return -a; });
  addFloat<arith::MaximumFOp>(table, [](auto a, auto b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); });
  addFloat<arith::MinimumFOp>(table, [](auto a, auto b) { return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b); });
  addFloat<arith::MaxNumFOp>(table, [](auto a, auto b) { return std::fmax(a, b); });
  addFloat<arith::MinNumFOp>(table, [](auto a, auto b) { return std::fmin(a, b); });
  addFloat<math::AbsFOp>(table, [](auto a, auto) { return std::fabs(a); });
  addFloat<math::SqrtOp>(table, [](auto a, auto) { return std::sqrt(a); });
  addFloat<math::RsqrtOp>(table, [](auto a, auto) { return 1 / std::sqrt(a); });
  addFloat<math::FloorOp>(table, [](auto a, auto) { return std::floor(a); });
  addFloat<math::CeilOp>(table, [](auto a, auto) { return std::ceil(a); });
  addFloat<math::TruncOp>(table, [](auto a, auto) { return std::trunc(a); });
  addFloat<math::RoundOp>(table, [](auto a, auto) { return std::round(a); });
  addFloat<math::RoundEvenOp>(table, [](auto a, auto) { return std::nearbyint(a); });
  addFloat<math::ExpOp>(table, [](auto a, auto) { return std::exp(a); });
  addFloat<math::Exp2Op>(table, [](auto a, auto) { return std::exp2(a); });
  addFloat<math::ExpM1Op>(table, [](auto a, auto) { return std::expm1(a); });
  addFloat<math::LogOp>(table, [](auto a, auto) { return std::log(a); });
  addFloat<math::Log2Op>(table, [](auto a, auto) { return std::log2(a); });
  addFloat<math::Log1pOp>(table, [](auto a, auto) { return std::log1p(a); });
  addFloat<math::PowFOp>(table, [](auto a, auto b) { return std::pow(a, b); });
  addFloat<math::TanhOp>(table, [](auto a, auto) { return std::tanh(a); });
  addFloat<math::ErfOp>(table, [](auto a, auto) { return std::erf(a); });
  addFloat<math::SinOp>(table, [](auto a, auto) { return std::sin(a); });
  addFloat<math::CosOp>(table, [](auto a, auto) { return std::cos(a); });
  addFloat<math::TanOp>(table, [](auto a, auto) { return std::tan(a); });
  addFloat<math::AsinOp>(table, [](auto a, auto) { return std::asin(a); });
  addFloat<math::AcosOp>(table, [](auto a, auto) { return std::acos(a); });
  addFloat<math::AtanOp>(table, [](auto a, auto) { return std::atan(a); });
  addFloat<math::Atan2Op>(table, [](auto a, auto b) { return std::atan2(a, b); });
  addFloat<math::SinhOp>(table, [](auto a, auto) { return std::sinh(a); });
  addFloat<math::CoshOp>(table, [](auto a, auto) { return std::cosh(a); });
  addFloat<math::CopySignOp>(table, [](auto a, auto b) { return std::copysign(a, b); });
  addLanewise<math::FmaOp>(table, [](const Scalars &x, unsigned t) {
    // Fused, rounded once, as the GPU's fma.
    if (x.type.isF32())
      return x.round(std::fmaf(asFloat(x.raw(0, t)), asFloat(x.raw(1, t)),
                               asFloat(x.raw(2, t))));
    return x.round(std::fma(x.f(0, t), x.f(1, t), x.f(2, t)));
  });

  // Comparisons, select and conversions.
  addCompare<arith::CmpIOp>(table);
  addCompare<arith::CmpFOp>(table);
  addLanewise<arith::SelectOp>(table, [](const Scalars &x, unsigned t) {
    return (x.raw(0, t) & 1) ? x.raw(1, t) : x.raw(2, t);
  });
  addLanewise<arith::ExtFOp, arith::TruncFOp>(table, [](const Scalars &x, unsigned t) { return x.round(x.f(0, t)); });
  addLanewise<arith::SIToFPOp>(table, [](const Scalars &x, unsigned t) { return x.round(static_cast<double>(x.s(0, t))); });
  addLanewise<arith::UIToFPOp>(table, [](const Scalars &x, unsigned t) { return x.round(static_cast<double>(x.u(0, t))); });
  // As PTX's cvt.rzi (what NVPTX makes of fptosi/fptoui): toward zero,
  // saturating at the result type's range, NaN to 0. (A plain C++ cast of
  // NaN or of a value out of range is undefined; UBSan found one.)
  addLanewise<arith::FPToSIOp>(table, [](const Scalars &x, unsigned t) {
    double v = x.f(0, t);
    double hi = std::ldexp(1.0, int(x.w) - 1);  // 2^(w-1)
    int64_t r = std::isnan(v) ? 0
                : v <= -hi    ? (x.w >= 64 ? INT64_MIN : -(int64_t(1) << (x.w - 1)))
                : v >= hi     ? (x.w >= 64 ? INT64_MAX : (int64_t(1) << (x.w - 1)) - 1)
                              : static_cast<int64_t>(v);
    return truncTo(static_cast<uint64_t>(r), x.w);
  });
  addLanewise<arith::FPToUIOp>(table, [](const Scalars &x, unsigned t) {
    double v = x.f(0, t);
    double hi = std::ldexp(1.0, int(x.w));  // 2^w
    uint64_t r = std::isnan(v) || v <= 0 ? 0
                 : v >= hi ? (x.w >= 64 ? UINT64_MAX : (uint64_t(1) << x.w) - 1)
                           : static_cast<uint64_t>(v);
    return truncTo(r, x.w);
  });
  addLanewise<arith::ExtSIOp, arith::IndexCastOp>(table, [](const Scalars &x, unsigned t) { return truncTo(static_cast<uint64_t>(x.s(0, t)), x.w); });
  addLanewise<arith::ExtUIOp, arith::TruncIOp, arith::IndexCastUIOp>(table, [](const Scalars &x, unsigned t) { return truncTo(x.u(0, t), x.w); });
  addLanewise<arith::BitcastOp>(table, [](const Scalars &x, unsigned t) { return truncTo(x.raw(0, t), x.w); });
}

} // namespace kiln::sim
