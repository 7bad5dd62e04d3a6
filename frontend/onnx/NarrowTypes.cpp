//===- NarrowTypes.cpp - float8, float4, int4 and int2 elements -----------===//
//
// Encoding an f32 into a small float format, in i32 arithmetic on its bits:
// with the significand `sig` (implicit bit included) and the exponent the
// target format would give it, `et`, the code is
//
//   max(et - 1, 0) << M  +  round_half_even(sig >> s),
//   s = 23 - M + max(1 - et, 0)
//
// which covers the target's subnormals (et <= 0) and its normals alike, a
// carry out of the mantissa stepping into the exponent as it should. A code
// past the largest finite one overflowed: the largest finite code when
// saturating, else infinity or NaN.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/NarrowTypes.h"

#include "dialects/kiln/TensorBuilders.h"
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"

using namespace mlir;
using kiln_onnx::TensorProto;

namespace kiln::onnx {
namespace {

/// A small float format: 1 sign bit, `exp` exponent bits, `man` mantissa
/// bits, and its special codes (positive forms).
struct FloatFormat {
  int bits, exp, man, bias;
  int maxCode;     // the largest finite code
  int infCode;     // -1: no infinity
  int nanCode;     // -1: no NaN (FLOAT4E2M1)
  bool unsignedZero; // FNUZ: no negative zero, 0x80 is NaN
};

std::optional<FloatFormat> floatFormat(int32_t type) {
  switch (type) {
  case TensorProto::FLOAT8E4M3FN: return FloatFormat{8, 4, 3, 7, 0x7E, -1, 0x7F, false};
  case TensorProto::FLOAT8E4M3FNUZ: return FloatFormat{8, 4, 3, 8, 0x7F, -1, 0x80, true};
  case TensorProto::FLOAT8E5M2: return FloatFormat{8, 5, 2, 15, 0x7B, 0x7C, 0x7E, false};
  case TensorProto::FLOAT8E5M2FNUZ: return FloatFormat{8, 5, 2, 16, 0x7F, -1, 0x80, true};
  case TensorProto::FLOAT4E2M1: return FloatFormat{4, 2, 1, 1, 0x7, -1, -1, false};
  default: return std::nullopt;
  }
}

/// The range of a narrow integer type.
std::pair<int, int> intRange(int32_t type) {
  switch (type) {
  case TensorProto::INT4: return {-8, 7};
  case TensorProto::UINT4: return {0, 15};
  case TensorProto::INT2: return {-2, 1};
  default: return {0, 3}; // UINT2
  }
}

/// i32 arithmetic, tersely.
struct I32 {
  OpBuilder &b;
  Location loc;
  Type i32 = b.getI32Type();
  Value c(int64_t v) { return arith::ConstantIntOp::create(b, loc, i32, v); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value band(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
  Value bor(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
  Value shl(Value x, Value y) { return arith::ShLIOp::create(b, loc, x, y); }
  Value shr(Value x, Value y) { return arith::ShRUIOp::create(b, loc, x, y); }
  Value max(Value x, Value y) { return arith::MaxSIOp::create(b, loc, x, y); }
  Value min(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value cmp(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, p, x, y);
  }
  Value select(Value cond, Value x, Value y) {
    return arith::SelectOp::create(b, loc, cond, x, y);
  }
  Value toI8(Value x) {
    return arith::TruncIOp::create(b, loc, b.getI8Type(), x);
  }
};

using P = arith::CmpIPredicate;

Value encodeFloat(I32 &m, Value x, const FloatFormat &f, bool saturate) {
  Value u = arith::BitcastOp::create(m.b, m.loc, m.i32, x);
  Value sign = m.shr(u, m.c(31));
  Value a = m.band(u, m.c(0x7FFFFFFF));
  Value isNan = m.cmp(P::sgt, a, m.c(0x7F800000));
  Value e32 = m.shr(a, m.c(23));
  Value m32 = m.band(a, m.c(0x7FFFFF));
  Value isSubnormal = m.cmp(P::eq, e32, m.c(0));
  Value sig = m.select(isSubnormal, m32, m.bor(m32, m.c(0x800000)));
  Value et = m.add(m.max(e32, m.c(1)), m.c(f.bias - 127));
  Value base = m.shl(m.max(m.sub(et, m.c(1)), m.c(0)), m.c(f.man));
  Value s = m.add(m.c(23 - f.man), m.max(m.sub(m.c(1), et), m.c(0)));
  s = m.min(s, m.c(31));
  Value q = m.shr(sig, s);
  Value half = m.shl(m.c(1), m.sub(s, m.c(1)));
  Value rem = m.band(sig, m.sub(m.shl(m.c(1), s), m.c(1)));
  Value odd = m.cmp(P::ne, m.band(q, m.c(1)), m.c(0));
  Value up = arith::OrIOp::create(
      m.b, m.loc, m.cmp(P::ugt, rem, half),
      arith::AndIOp::create(m.b, m.loc, m.cmp(P::eq, rem, half), odd));
  Value code = m.add(m.add(base, q), arith::ExtUIOp::create(m.b, m.loc, m.i32, up));
  // Past the largest finite code (infinities included).
  int overflowCode = saturate || f.nanCode < 0 ? f.maxCode
                     : f.infCode >= 0         ? f.infCode
                                              : f.nanCode;
  code = m.select(m.cmp(P::sgt, code, m.c(f.maxCode)), m.c(overflowCode), code);
  // FLOAT4E2M1 has no NaN: ml_dtypes gives a NaN the code of a zero of the
  // other sign (the sign bit flipped below).
  int nanCode = f.nanCode >= 0 ? f.nanCode : 1 << (f.bits - 1);
  code = m.select(isNan, m.c(nanCode), code);
  Value signBit = m.shl(sign, m.c(f.bits - 1));
  Value signed_ = arith::XOrIOp::create(m.b, m.loc, code, signBit);
  if (f.unsignedZero) // no negative zero; NaN is the sign bit alone
    signed_ = m.select(m.cmp(P::eq, code, m.c(0)), code, m.bor(code, signBit));
  return m.toI8(signed_);
}

/// FLOAT8E8M0: the exponent of the f32, rounded as onnx.numpy_helper's
/// to_float8e8m0 does (the reference of Cast 24); the sign is dropped.
Value encodeE8M0(I32 &m, Value x, bool saturate, StringRef roundMode) {
  Value u = arith::BitcastOp::create(m.b, m.loc, m.i32, x);
  Value exponent = m.band(m.shr(u, m.c(23)), m.c(0xFF));
  Value special = m.cmp(P::eq, exponent, m.c(0xFF));
  Value up;
  if (roundMode == "nearest") {
    Value g = m.cmp(P::ne, m.band(u, m.c(0x400000)), m.c(0));
    Value r = m.cmp(P::ne, m.band(u, m.c(0x200000)), m.c(0));
    Value st = m.cmp(P::ne, m.band(u, m.c(0x1FFFFF)), m.c(0));
    Value lsb = m.cmp(P::sgt, exponent, m.c(0));
    Value any = arith::OrIOp::create(
        m.b, m.loc, arith::OrIOp::create(m.b, m.loc, r, st), lsb);
    up = arith::AndIOp::create(m.b, m.loc, g, any);
  } else if (roundMode == "up") {
    up = m.cmp(P::ne, m.band(u, m.c(0x7FFFFF)), m.c(0));
  }
  Value code = exponent;
  if (up) {
    if (saturate)
      up = arith::AndIOp::create(m.b, m.loc, up,
                                 m.cmp(P::ne, exponent, m.c(0xFE)));
    code = m.add(code, arith::ExtUIOp::create(m.b, m.loc, m.i32, up));
  }
  return m.toI8(m.select(special, m.c(0xFF), code));
}

/// Cast of a float to a narrow integer: truncation toward zero, 0 out of
/// range or for NaN (ml_dtypes' conversion, which the ONNX tests follow).
Value encodeInt(OpBuilder &b, Location loc, Value x, int32_t to) {
  auto [lo, hi] = intRange(to);
  Type f32 = b.getF32Type();
  // trunc(x) is in [lo, hi] exactly when lo - 1 < x < hi + 1 (never for
  // NaN); fptosi truncates.
  Value inRange = arith::AndIOp::create(
      b, loc,
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x,
                            scalarConstant(b, loc, f32, lo - 1)),
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x,
                            scalarConstant(b, loc, f32, hi + 1)));
  Value t = arith::SelectOp::create(b, loc, inRange, x,
                                    scalarConstant(b, loc, f32, 0));
  return arith::FPToSIOp::create(b, loc, b.getI8Type(), t);
}

/// An integer wrapped to a narrow integer type's bits (Cast between
/// integers), sign-extended for INT4 and INT2.
Value wrapInt(OpBuilder &b, Location loc, Value v, bool fromUnsigned,
              int32_t to) {
  Type i8 = b.getI8Type();
  Value x = castScalar(b, loc, v, i8, fromUnsigned, false);
  int bits = narrowTypeBits(to);
  if (to == TensorProto::UINT4 || to == TensorProto::UINT2)
    return arith::AndIOp::create(b, loc, x,
                                 scalarConstant(b, loc, i8, (1 << bits) - 1));
  Value shift = scalarConstant(b, loc, i8, 8 - bits);
  return arith::ShRSIOp::create(b, loc,
                                arith::ShLIOp::create(b, loc, x, shift), shift);
}

} // namespace

bool isNarrowFloat(int32_t dataType) {
  return floatFormat(dataType) || dataType == TensorProto::FLOAT8E8M0;
}

Value encodeNarrow(OpBuilder &b, Location loc, Value x, int32_t to,
                   bool saturate, StringRef roundMode) {
  I32 m{b, loc};
  if (std::optional<FloatFormat> f = floatFormat(to))
    return encodeFloat(m, x, *f, saturate);
  if (to == TensorProto::FLOAT8E8M0)
    return encodeE8M0(m, x, saturate, roundMode);
  return encodeInt(b, loc, x, to);
}

Value decodeNarrow(OpBuilder &b, Location loc, Value code, int32_t from) {
  Type f32 = b.getF32Type();
  if (!isNarrowFloat(from)) // the integers hold their values
    return castScalar(b, loc, code, f32);
  I32 m{b, loc};
  Value c = m.band(arith::ExtUIOp::create(b, loc, m.i32, code), m.c(0xFF));
  auto bits = [&](Value v) -> Value {
    return arith::BitcastOp::create(b, loc, f32, v);
  };
  Value nan = scalarConstant(b, loc, f32, std::nan(""));
  if (from == TensorProto::FLOAT8E8M0) {
    // 2^(c - 127); c = 0 is the f32 subnormal 2^-127.
    Value v = m.select(m.cmp(P::eq, c, m.c(0)), m.c(0x400000),
                       m.shl(c, m.c(23)));
    return arith::SelectOp::create(b, loc, m.cmp(P::eq, c, m.c(0xFF)), nan,
                                   bits(v));
  }
  FloatFormat f = *floatFormat(from);
  Value sign = m.band(m.shr(c, m.c(f.bits - 1)), m.c(1));
  Value mag = m.band(c, m.c((1 << (f.bits - 1)) - 1));
  Value ef = m.shr(mag, m.c(f.man));
  Value mf = m.band(mag, m.c((1 << f.man) - 1));
  Value normal = bits(m.bor(m.shl(m.add(ef, m.c(127 - f.bias)), m.c(23)),
                            m.shl(mf, m.c(23 - f.man))));
  // Subnormals: mf * 2^(1 - bias - man), exact in f32.
  Value subnormal = arith::MulFOp::create(
      b, loc, arith::UIToFPOp::create(b, loc, f32, mf),
      scalarConstant(b, loc, f32, std::ldexp(1.0, 1 - f.bias - f.man)));
  Value v = arith::SelectOp::create(b, loc, m.cmp(P::eq, ef, m.c(0)),
                                    subnormal, normal);
  if (f.infCode >= 0)
    v = arith::SelectOp::create(
        b, loc, m.cmp(P::eq, mag, m.c(f.infCode)),
        scalarConstant(b, loc, f32, std::numeric_limits<float>::infinity()), v);
  v = arith::SelectOp::create(b, loc, m.cmp(P::ne, sign, m.c(0)),
                              arith::NegFOp::create(b, loc, v), v);
  if (f.unsignedZero)
    return arith::SelectOp::create(b, loc, m.cmp(P::eq, c, m.c(0x80)), nan, v);
  if (f.nanCode < 0)
    return v;
  // E4M3FN: S.1111.111; E5M2: exponent all ones with a mantissa.
  Value isNan = f.infCode >= 0
                    ? m.cmp(P::sgt, mag, m.c(f.infCode))
                    : m.cmp(P::eq, mag, m.c(f.nanCode));
  return arith::SelectOp::create(b, loc, isNan, nan, v);
}

Value castNarrow(OpBuilder &b, Location loc, Value value, int32_t from,
                 bool fromUnsigned, int32_t to, Type target, bool toUnsigned,
                 bool saturate, StringRef roundMode) {
  Type f32 = b.getF32Type();
  if (from && isNarrowFloat(from)) {
    Value v = decodeNarrow(b, loc, value, from);
    return to ? encodeNarrow(b, loc, v, to, saturate, roundMode)
              : castScalar(b, loc, v, target, false, toUnsigned);
  }
  if (from) { // a narrow integer, held as its i8 value
    if (!to)
      return castScalar(b, loc, value, target, false, toUnsigned);
    if (isNarrowFloat(to))
      return encodeNarrow(b, loc, castScalar(b, loc, value, f32), to,
                          saturate, roundMode);
    return wrapInt(b, loc, value, false, to);
  }
  // An ordinary type to a narrow one.
  if (isa<FloatType>(value.getType()))
    return encodeNarrow(b, loc, castScalar(b, loc, value, f32), to, saturate,
                        roundMode);
  if (isNarrowFloat(to))
    return encodeNarrow(b, loc, castScalar(b, loc, value, f32, fromUnsigned),
                        to, saturate, roundMode);
  return wrapInt(b, loc, value, fromUnsigned, to);
}

Value buildNarrowableCast(NodeContext &ctx, Value x, int32_t narrowTo,
                          Type target, bool toUnsigned) {
  int32_t from = ctx.inputNarrowType(0);
  bool fromUnsigned = ctx.inputIsUnsigned(0);
  bool saturate = ctx.intAttr("saturate", 1) != 0;
  std::string roundMode = "up";
  if (const kiln_onnx::AttributeProto *mode = ctx.attr("round_mode"))
    roundMode = mode->s();
  if (roundMode != "up" && roundMode != "down" && roundMode != "nearest") {
    ctx.error() << "round_mode '" << roundMode
                << "' is not one of 'up', 'down' and 'nearest'";
    return {};
  }
  Value result = buildElementwise(
      ctx, {x}, target, [&](OpBuilder &b, Location loc, ValueRange args) {
        if (!from && !narrowTo)
          return castScalar(b, loc, args[0], target, fromUnsigned, toUnsigned);
        return castNarrow(b, loc, args[0], from, fromUnsigned, narrowTo,
                          target, toUnsigned, saturate, roundMode);
      });
  ctx.setOutputUnsigned(0, toUnsigned);
  ctx.setOutputNarrowType(0, narrowTo);
  return result;
}

} // namespace kiln::onnx
