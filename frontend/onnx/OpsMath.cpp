//===- OpsMath.cpp - ONNX unary math, activations, comparisons, logic -----===//
//
// Every op here is one linalg.generic with numpy broadcasting
// (buildElementwise) around a scalar body; the dtype rules of each op are
// checked first and named in the error.
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/KilnDialect.h"
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/NarrowTypes.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

using UnaryBody =
    std::function<Value(NodeContext &, OpBuilder &, Location, Value)>;

enum TypeClass : unsigned {
  kFloat = 1,
  kSignedInt = 2,
  kBool = 4,
  kNumeric = kFloat | kSignedInt,
  kAny = kFloat | kSignedInt | kBool,
};

bool accepts(unsigned classes, Type type) {
  if (isa<FloatType>(type))
    return classes & kFloat;
  if (type.isInteger(1))
    return classes & kBool;
  return (classes & kSignedInt) && type.isSignlessInteger();
}

const char *describeClasses(unsigned classes) {
  switch (classes) {
  case kFloat: return "float";
  case kNumeric: return "float or integer";
  case kBool: return "bool";
  case kSignedInt: return "integer";
  case kSignedInt | kBool: return "integer or bool";
  default: return "float, integer or bool";
  }
}

/// Registers a unary op: `body` maps one element; the result has the
/// input's element type unless `resultBool`.
void onUnary(OpRegistry &registry, StringRef opType, int64_t since,
             unsigned classes, UnaryBody body, bool resultBool = false) {
  registry.on(opType, since,
              [opType = opType.str(), classes, body,
               resultBool](NodeContext &ctx) -> LogicalResult {
                Value x = ctx.input(0);
                if (!x)
                  return failure();
                Type element = ctx.inputType(0).getElementType();
                if (!accepts(classes, element))
                  return ctx.error()
                         << opType << " takes " << describeClasses(classes)
                         << " inputs, got " << x.getType();
                Type result =
                    resultBool ? ctx.b().getI1Type() : element;
                Value out = buildElementwise(
                    ctx, {x}, result,
                    [&](OpBuilder &b, Location loc, ValueRange args) {
                      return body(ctx, b, loc, args[0]);
                    });
                return out ? ctx.setOutputs(out) : failure();
              });
}

using BinaryBody = std::function<Value(OpBuilder &, Location, Value, Value)>;

/// Registers a binary op with numpy broadcasting; both inputs share an
/// element type in `classes`.
void onBinary(OpRegistry &registry, StringRef opType, int64_t since,
              unsigned classes, BinaryBody body, bool resultBool = false,
              BinaryBody unsignedBody = {}) {
  registry.on(opType, since,
              [opType = opType.str(), classes, body, resultBool,
               unsignedBody](NodeContext &ctx) -> LogicalResult {
                Value lhs = ctx.input(0), rhs = ctx.input(1);
                if (!lhs || !rhs)
                  return failure();
                Type element = ctx.inputType(0).getElementType();
                if (element != ctx.inputType(1).getElementType())
                  return ctx.error()
                         << opType << " inputs must have the same element "
                         << "type, got " << lhs.getType() << " and "
                         << rhs.getType();
                if (!accepts(classes, element))
                  return ctx.error()
                         << opType << " takes " << describeClasses(classes)
                         << " inputs, got " << lhs.getType();
                const BinaryBody &chosen =
                    unsignedBody && (ctx.inputIsUnsigned(0) || ctx.inputIsUnsigned(1))
                        ? unsignedBody
                        : body;
                Value out = buildElementwise(
                    ctx, {lhs, rhs}, resultBool ? ctx.b().getI1Type() : element,
                    [&](OpBuilder &b, Location loc, ValueRange args) {
                      return chosen(b, loc, args[0], args[1]);
                    });
                return out ? ctx.setOutputs(out) : failure();
              });
}

Value constant(OpBuilder &b, Location loc, Value like, double value) {
  return scalarConstant(b, loc, like.getType(), value);
}

bool isFloatValue(Value v) { return isa<FloatType>(v.getType()); }

/// A comparison: ordered float predicates, signed integer ones (bool
/// compares as unsigned 0/1).
BinaryBody compare(arith::CmpFPredicate fp, arith::CmpIPredicate ip,
                   arith::CmpIPredicate boolPredicate) {
  return [=](OpBuilder &b, Location loc, Value x, Value y) -> Value {
    if (isFloatValue(x))
      return arith::CmpFOp::create(b, loc, fp, x, y);
    return arith::CmpIOp::create(
        b, loc, x.getType().isInteger(1) ? boolPredicate : ip, x, y);
  };
}

/// Variadic Max/Min/Sum/Mean with broadcasting over all inputs.
void onVariadic(OpRegistry &registry, StringRef opType, int64_t since,
                bool mean, BinaryBody combine, unsigned classes,
                BinaryBody unsignedCombine = {}) {
  registry.on(opType, since,
              [opType = opType.str(), mean, combine, classes,
               unsignedCombine](NodeContext &ctx) -> LogicalResult {
                SmallVector<Value> inputs;
                for (int i = 0; i < ctx.numInputs(); ++i) {
                  Value v = ctx.input(i);
                  if (!v)
                    return failure();
                  inputs.push_back(v);
                }
                if (inputs.empty())
                  return ctx.error() << opType << " needs at least one input";
                Type element = ctx.inputType(0).getElementType();
                for (int i = 1; i < ctx.numInputs(); ++i)
                  if (ctx.inputType(i).getElementType() != element)
                    return ctx.error()
                           << opType << " inputs must share an element type";
                if (!accepts(classes, element))
                  return ctx.error()
                         << opType << " takes " << describeClasses(classes)
                         << " inputs, got " << inputs[0].getType();
                bool anyUnsigned = false;
                for (int i = 0; i < ctx.numInputs(); ++i)
                  anyUnsigned |= ctx.inputIsUnsigned(i);
                const BinaryBody &chosen =
                    unsignedCombine && anyUnsigned ? unsignedCombine : combine;
                Value out = buildElementwise(
                    ctx, inputs, element,
                    [&](OpBuilder &b, Location loc, ValueRange args) {
                      Value acc = args[0];
                      for (Value v : args.drop_front())
                        acc = chosen(b, loc, acc, v);
                      if (mean)
                        acc = arith::DivFOp::create(
                            b, loc, acc,
                            constant(b, loc, acc,
                                     static_cast<double>(args.size())));
                      return acc;
                    });
                return out ? ctx.setOutputs(out) : failure();
              });
}

Value maxOf(OpBuilder &b, Location loc, Value x, Value y) {
  if (isFloatValue(x))
    return arith::MaximumFOp::create(b, loc, x, y);
  return arith::MaxSIOp::create(b, loc, x, y);
}
Value minOf(OpBuilder &b, Location loc, Value x, Value y) {
  if (isFloatValue(x))
    return arith::MinimumFOp::create(b, loc, x, y);
  return arith::MinSIOp::create(b, loc, x, y);
}
Value addOf(OpBuilder &b, Location loc, Value x, Value y) {
  if (isFloatValue(x))
    return arith::AddFOp::create(b, loc, x, y);
  return arith::AddIOp::create(b, loc, x, y);
}

LogicalResult importWhere(NodeContext &ctx) {
  Value cond = ctx.input(0), x = ctx.input(1), y = ctx.input(2);
  if (!cond || !x || !y)
    return failure();
  if (!ctx.inputType(0).getElementType().isInteger(1))
    return ctx.error() << "Where's condition must be bool, got "
                       << cond.getType();
  Type element = ctx.inputType(1).getElementType();
  if (ctx.inputType(2).getElementType() != element)
    return ctx.error() << "Where's X and Y must share an element type, got "
                       << x.getType() << " and " << y.getType();
  Value out = buildElementwise(
      ctx, {cond, x, y}, element,
      [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
        return arith::SelectOp::create(b, loc, args[0], args[1], args[2]);
      });
  return out ? ctx.setOutputs(out) : failure();
}

/// Clip with bounds from attributes (before 11) or optional inputs.
LogicalResult importClip(NodeContext &ctx, bool boundsAreInputs) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  Type element = ctx.inputType(0).getElementType();
  if (!accepts(kNumeric, element))
    return ctx.error() << "Clip takes float or integer inputs, got "
                       << x.getType();
  SmallVector<Value> inputs = {x};
  int minIndex = -1, maxIndex = -1;
  if (boundsAreInputs) {
    for (int i : {1, 2}) {
      if (!ctx.hasInput(i))
        continue;
      Value bound = ctx.input(i);
      if (!bound)
        return failure();
      if (ctx.inputType(i).getRank() != 0 &&
          (!ctx.inputType(i).hasStaticShape() ||
           ctx.inputType(i).getNumElements() != 1))
        return ctx.error() << "Clip's bounds must be scalars, got "
                           << bound.getType();
      if (ctx.inputType(i).getRank() != 0)
        bound = buildReshape(ctx.b(), ctx.getLoc(), bound, {});
      (i == 1 ? minIndex : maxIndex) = static_cast<int>(inputs.size());
      inputs.push_back(bound);
    }
  }
  float lo = ctx.floatAttr("min", -std::numeric_limits<float>::infinity());
  float hi = ctx.floatAttr("max", std::numeric_limits<float>::infinity());
  Value out = buildElementwise(
      ctx, inputs, element,
      [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
        Value v = args[0];
        if (boundsAreInputs) {
          if (minIndex >= 0)
            v = maxOf(b, loc, v, args[minIndex]);
          if (maxIndex >= 0)
            v = minOf(b, loc, v, args[maxIndex]);
          return v;
        }
        if (lo != -std::numeric_limits<float>::infinity())
          v = maxOf(b, loc, v, constant(b, loc, v, lo));
        if (hi != std::numeric_limits<float>::infinity())
          v = minOf(b, loc, v, constant(b, loc, v, hi));
        return v;
      });
  return out ? ctx.setOutputs(out) : failure();
}

LogicalResult importPRelu(NodeContext &ctx) {
  Value x = ctx.input(0), slope = ctx.input(1);
  if (!x || !slope)
    return failure();
  Type element = ctx.inputType(0).getElementType();
  if (!isa<FloatType>(element) || ctx.inputType(1).getElementType() != element)
    return ctx.error() << "PRelu takes float X and slope of one type, got "
                       << x.getType() << " and " << slope.getType();
  Value out = buildElementwise(
      ctx, {x, slope}, element,
      [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
        Value negative = arith::CmpFOp::create(
            b, loc, arith::CmpFPredicate::OLT, args[0],
            constant(b, loc, args[0], 0));
        return arith::SelectOp::create(
            b, loc, negative, arith::MulFOp::create(b, loc, args[0], args[1]),
            args[0]);
      });
  return out ? ctx.setOutputs(out) : failure();
}

LogicalResult importMod(NodeContext &ctx) {
  Value a = ctx.input(0), d = ctx.input(1);
  if (!a || !d)
    return failure();
  Type element = ctx.inputType(0).getElementType();
  if (element != ctx.inputType(1).getElementType() || element.isInteger(1))
    return ctx.error() << "Mod takes two numeric inputs of one type, got "
                       << a.getType() << " and " << d.getType();
  bool fmod = ctx.intAttr("fmod", 0) != 0;
  bool isUnsigned = ctx.inputIsUnsigned(0) || ctx.inputIsUnsigned(1);
  Value out = buildElementwise(
      ctx, {a, d}, element,
      [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
        if (isa<FloatType>(element)) {
          Value r = arith::RemFOp::create(b, loc, args[0], args[1]);
          if (fmod)
            return r;
          // The divisor's sign, as numpy's mod.
          Value zero = constant(b, loc, r, 0);
          Value rNonZero = arith::CmpFOp::create(
              b, loc, arith::CmpFPredicate::ONE, r, zero);
          Value rNeg = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT,
                                             r, zero);
          Value dNeg = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT,
                                             args[1], zero);
          Value fix = arith::AndIOp::create(
              b, loc, rNonZero, arith::XOrIOp::create(b, loc, rNeg, dNeg));
          return arith::SelectOp::create(
              b, loc, fix, arith::AddFOp::create(b, loc, r, args[1]), r);
        }
        if (isUnsigned) // no signs to fix up
          return arith::RemUIOp::create(b, loc, args[0], args[1]);
        Value r = arith::RemSIOp::create(b, loc, args[0], args[1]);
        if (fmod)
          return r; // sign of the dividend, as C's fmod
        // Python-style: the result takes the divisor's sign.
        Value zero = constant(b, loc, r, 0);
        Value rNonZero =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, r, zero);
        Value signsDiffer = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::slt,
            arith::XOrIOp::create(b, loc, r, args[1]), zero);
        Value fix = arith::AndIOp::create(b, loc, rNonZero, signsDiffer);
        return arith::SelectOp::create(
            b, loc, fix, arith::AddIOp::create(b, loc, r, args[1]), r);
      });
  return out ? ctx.setOutputs(out) : failure();
}

LogicalResult importCastLike(NodeContext &ctx) {
  Value x = ctx.input(0), like = ctx.input(1);
  if (!x || !like)
    return failure();
  Value out = buildNarrowableCast(ctx, x, ctx.inputNarrowType(1),
                                  ctx.inputType(1).getElementType(),
                                  ctx.inputIsUnsigned(1));
  return out ? ctx.setOutputs(out) : failure();
}

/// BitCast (26): each element's bits reinterpreted as `to`, of the same
/// width (bool as a byte). The narrow types' codes are their bits; INT4
/// and INT2, held sign-extended, are masked to theirs and the narrow
/// signed targets sign-extended again.
LogicalResult importBitCast(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  int64_t to = ctx.intAttr("to", 0);
  bool toUnsigned = false;
  Type target = storageElementType(ctx.b().getContext(), to, &toUnsigned);
  if (!target)
    return ctx.error() << "bitcast to " << dataTypeName(to)
                       << " is not supported";
  Type source = ctx.inputType(0).getElementType();
  int32_t fromNarrow = ctx.inputNarrowType(0);
  int32_t toNarrow = isNarrowType(to) ? static_cast<int32_t>(to) : 0;
  auto bitsOf = [](Type type, int32_t narrow) -> unsigned {
    if (narrow)
      return narrowTypeBits(narrow);
    return type.isInteger(1) ? 8 : type.getIntOrFloatBitWidth();
  };
  unsigned width = bitsOf(source, fromNarrow);
  if (width != bitsOf(target, toNarrow))
    return ctx.error() << "BitCast needs a type of the input's width, "
                       << width << " bits; " << dataTypeName(to) << " has "
                       << bitsOf(target, toNarrow);
  auto isSignedNarrow = [](int32_t t) {
    return t == kiln_onnx::TensorProto::INT4 || t == kiln_onnx::TensorProto::INT2;
  };
  Value out = buildElementwise(
      ctx, {x}, target, [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
        Value v = args[0];
        if (source.isInteger(1))
          return arith::ExtUIOp::create(b, loc, target, v);
        if (target.isInteger(1))
          return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, v,
                                       scalarConstant(b, loc, source, 0));
        if (isa<FloatType>(source) != isa<FloatType>(target))
          return arith::BitcastOp::create(b, loc, target, v);
        if (width < 8 && isSignedNarrow(fromNarrow) != isSignedNarrow(toNarrow)) {
          Value shift = scalarConstant(b, loc, target, 8 - width);
          if (isSignedNarrow(toNarrow))
            return arith::ShRSIOp::create(
                b, loc, arith::ShLIOp::create(b, loc, v, shift), shift);
          return arith::AndIOp::create(
              b, loc, v, scalarConstant(b, loc, target, (1 << width) - 1));
        }
        return v;
      });
  ctx.setOutputUnsigned(0, toUnsigned);
  ctx.setOutputNarrowType(0, toNarrow);
  return out ? ctx.setOutputs(out) : failure();
}

} // namespace

Value scalarSoftplus(OpBuilder &b, Location loc, Value x) {
  Value zero = scalarConstant(b, loc, x.getType(), 0);
  Value absX = math::AbsFOp::create(b, loc, x);
  Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, absX));
  return arith::AddFOp::create(b, loc, arith::MaximumFOp::create(b, loc, x, zero),
                               math::Log1pOp::create(b, loc, e));
}

void registerMathOps(OpRegistry &registry) {
  using P = arith::CmpFPredicate;
  using I = arith::CmpIPredicate;
  auto floatOp = [&](StringRef name, int64_t since,
                     std::function<Value(OpBuilder &, Location, Value)> fn) {
    onUnary(registry, name, since, kFloat,
            [fn](NodeContext &, OpBuilder &b, Location loc, Value x) {
              return fn(b, loc, x);
            });
  };
  floatOp("Exp", 6, [](OpBuilder &b, Location l, Value x) { return math::ExpOp::create(b, l, x); });
  floatOp("Log", 6, [](OpBuilder &b, Location l, Value x) { return math::LogOp::create(b, l, x); });
  floatOp("Floor", 6, [](OpBuilder &b, Location l, Value x) { return math::FloorOp::create(b, l, x); });
  floatOp("Ceil", 6, [](OpBuilder &b, Location l, Value x) { return math::CeilOp::create(b, l, x); });
  floatOp("Round", 11, [](OpBuilder &b, Location l, Value x) { return math::RoundEvenOp::create(b, l, x); });
  floatOp("Sin", 7, [](OpBuilder &b, Location l, Value x) { return math::SinOp::create(b, l, x); });
  floatOp("Cos", 7, [](OpBuilder &b, Location l, Value x) { return math::CosOp::create(b, l, x); });
  floatOp("Tan", 7, [](OpBuilder &b, Location l, Value x) { return math::TanOp::create(b, l, x); });
  floatOp("Asin", 7, [](OpBuilder &b, Location l, Value x) { return math::AsinOp::create(b, l, x); });
  floatOp("Acos", 7, [](OpBuilder &b, Location l, Value x) { return math::AcosOp::create(b, l, x); });
  floatOp("Atan", 7, [](OpBuilder &b, Location l, Value x) { return math::AtanOp::create(b, l, x); });
  floatOp("Sinh", 9, [](OpBuilder &b, Location l, Value x) { return math::SinhOp::create(b, l, x); });
  floatOp("Cosh", 9, [](OpBuilder &b, Location l, Value x) { return math::CoshOp::create(b, l, x); });
  // The inverse hyperbolic functions through log and sqrt (LLVM has no
  // intrinsics for them).
  floatOp("Asinh", 9, [](OpBuilder &b, Location l, Value x) -> Value {
    // sign(x) * log(|x| + sqrt(x^2 + 1))
    Value a = math::AbsFOp::create(b, l, x);
    Value r = math::LogOp::create(
        b, l, arith::AddFOp::create(
                  b, l, a,
                  math::SqrtOp::create(
                      b, l, arith::AddFOp::create(b, l, arith::MulFOp::create(b, l, a, a),
                                                  constant(b, l, x, 1)))));
    return math::CopySignOp::create(b, l, r, x);
  });
  floatOp("Acosh", 9, [](OpBuilder &b, Location l, Value x) -> Value {
    Value s = math::SqrtOp::create(
        b, l, arith::SubFOp::create(b, l, arith::MulFOp::create(b, l, x, x),
                                    constant(b, l, x, 1)));
    return math::LogOp::create(b, l, arith::AddFOp::create(b, l, x, s));
  });
  floatOp("Atanh", 9, [](OpBuilder &b, Location l, Value x) -> Value {
    Value one = constant(b, l, x, 1);
    Value q = arith::DivFOp::create(b, l, arith::AddFOp::create(b, l, one, x),
                                    arith::SubFOp::create(b, l, one, x));
    return arith::MulFOp::create(b, l, constant(b, l, x, 0.5),
                                 math::LogOp::create(b, l, q));
  });
  floatOp("Reciprocal", 6, [](OpBuilder &b, Location l, Value x) {
    return arith::DivFOp::create(b, l, constant(b, l, x, 1), x);
  });
  floatOp("Softplus", 1, scalarSoftplus);
  floatOp("Softsign", 1, [](OpBuilder &b, Location l, Value x) {
    Value denominator = arith::AddFOp::create(b, l, constant(b, l, x, 1),
                                              math::AbsFOp::create(b, l, x));
    return arith::DivFOp::create(b, l, x, denominator);
  });
  floatOp("Mish", 18, [](OpBuilder &b, Location l, Value x) {
    return arith::MulFOp::create(b, l, x,
                                 math::TanhOp::create(b, l, scalarSoftplus(b, l, x)));
  });
  floatOp("HardSwish", 14, [](OpBuilder &b, Location l, Value x) {
    // x * max(0, min(1, x / 6 + 1 / 2))
    Value t = arith::AddFOp::create(
        b, l, arith::MulFOp::create(b, l, x, constant(b, l, x, 1.0 / 6)),
        constant(b, l, x, 0.5));
    t = arith::MinimumFOp::create(b, l, t, constant(b, l, x, 1));
    t = arith::MaximumFOp::create(b, l, t, constant(b, l, x, 0));
    return arith::MulFOp::create(b, l, x, t);
  });
  onUnary(registry, "IsNaN", 9, kFloat,
          [](NodeContext &, OpBuilder &b, Location l, Value x) -> Value {
            return arith::CmpFOp::create(b, l, P::UNO, x, x);
          },
          /*resultBool=*/true);
  onUnary(registry, "IsInf", 10, kFloat,
          [](NodeContext &ctx, OpBuilder &b, Location l, Value x) -> Value {
            bool negative = ctx.intAttr("detect_negative", 1) != 0;
            bool positive = ctx.intAttr("detect_positive", 1) != 0;
            Value inf = constant(b, l, x, INFINITY);
            Value isPos = arith::CmpFOp::create(b, l, P::OEQ, x, inf);
            Value isNeg = arith::CmpFOp::create(
                b, l, P::OEQ, x, arith::NegFOp::create(b, l, inf));
            if (negative && positive)
              return arith::OrIOp::create(b, l, isPos, isNeg);
            if (positive)
              return isPos;
            if (negative)
              return isNeg;
            return arith::ConstantOp::create(b, l, b.getBoolAttr(false));
          },
          /*resultBool=*/true);

  // Float activations with attributes.
  auto attrOp = [&](StringRef name, int64_t since,
                    std::function<Value(NodeContext &, OpBuilder &, Location,
                                        Value)>
                        fn) { onUnary(registry, name, since, kFloat, fn); };
  attrOp("Elu", 6, [](NodeContext &c, OpBuilder &b, Location l, Value x) -> Value {
    Value alpha = constant(b, l, x, c.floatAttr("alpha", 1.0f));
    Value negative = arith::CmpFOp::create(b, l, P::OLT, x, constant(b, l, x, 0));
    Value em1 = math::ExpM1Op::create(b, l, x);
    return arith::SelectOp::create(b, l, negative,
                                   arith::MulFOp::create(b, l, alpha, em1), x);
  });
  attrOp("Celu", 12, [](NodeContext &c, OpBuilder &b, Location l, Value x) -> Value {
    // max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    Value alpha = constant(b, l, x, c.floatAttr("alpha", 1.0f));
    Value zero = constant(b, l, x, 0);
    Value em1 = math::ExpM1Op::create(b, l, arith::DivFOp::create(b, l, x, alpha));
    return arith::AddFOp::create(
        b, l, arith::MaximumFOp::create(b, l, x, zero),
        arith::MinimumFOp::create(b, l, zero, arith::MulFOp::create(b, l, alpha, em1)));
  });
  attrOp("Selu", 6, [](NodeContext &c, OpBuilder &b, Location l, Value x) -> Value {
    Value alpha = constant(b, l, x, c.floatAttr("alpha", 1.67326319217681884765625f));
    Value gamma = constant(b, l, x, c.floatAttr("gamma", 1.05070102214813232421875f));
    Value negative = arith::CmpFOp::create(b, l, P::OLE, x, constant(b, l, x, 0));
    Value neg = arith::MulFOp::create(b, l, alpha, math::ExpM1Op::create(b, l, x));
    return arith::MulFOp::create(b, l, gamma,
                                 arith::SelectOp::create(b, l, negative, neg, x));
  });
  attrOp("LeakyRelu", 6, [](NodeContext &c, OpBuilder &b, Location l, Value x) -> Value {
    Value alpha = constant(b, l, x, c.floatAttr("alpha", 0.01f));
    Value negative = arith::CmpFOp::create(b, l, P::OLT, x, constant(b, l, x, 0));
    return arith::SelectOp::create(b, l, negative,
                                   arith::MulFOp::create(b, l, alpha, x), x);
  });
  attrOp("ThresholdedRelu", 10, [](NodeContext &c, OpBuilder &b, Location l, Value x) -> Value {
    Value alpha = constant(b, l, x, c.floatAttr("alpha", 1.0f));
    Value above = arith::CmpFOp::create(b, l, P::OGT, x, alpha);
    return arith::SelectOp::create(b, l, above, x, constant(b, l, x, 0));
  });
  attrOp("HardSigmoid", 6, [](NodeContext &c, OpBuilder &b, Location l, Value x) -> Value {
    Value alpha = constant(b, l, x, c.floatAttr("alpha", 0.2f));
    Value beta = constant(b, l, x, c.floatAttr("beta", 0.5f));
    Value t = arith::AddFOp::create(b, l, arith::MulFOp::create(b, l, alpha, x), beta);
    t = arith::MinimumFOp::create(b, l, t, constant(b, l, x, 1));
    return arith::MaximumFOp::create(b, l, t, constant(b, l, x, 0));
  });
  attrOp("Shrink", 9, [](NodeContext &c, OpBuilder &b, Location l, Value x) -> Value {
    Value lambd = constant(b, l, x, c.floatAttr("lambd", 0.5f));
    Value bias = constant(b, l, x, c.floatAttr("bias", 0.0f));
    Value below = arith::CmpFOp::create(b, l, P::OLT, x,
                                        arith::NegFOp::create(b, l, lambd));
    Value above = arith::CmpFOp::create(b, l, P::OGT, x, lambd);
    Value zero = constant(b, l, x, 0);
    return arith::SelectOp::create(
        b, l, below, arith::AddFOp::create(b, l, x, bias),
        arith::SelectOp::create(b, l, above, arith::SubFOp::create(b, l, x, bias),
                                zero));
  });
  // Swish (24): x * sigmoid(alpha x).
  attrOp("Swish", 24, [](NodeContext &c, OpBuilder &b, Location l, Value x) -> Value {
    Value ax = arith::MulFOp::create(b, l, constant(b, l, x, c.floatAttr("alpha", 1.0f)), x);
    return arith::MulFOp::create(b, l, x, scalarSigmoid(b, l, ax));
  });
  // SwiGLU (28): swish_alpha(a) * b, a and b of one shape (no broadcasting).
  registry.on("SwiGLU", 28, [](NodeContext &ctx) -> LogicalResult {
    Value a = ctx.input(0), g = ctx.input(1);
    if (!a || !g)
      return failure();
    if (a.getType() != g.getType() ||
        !isa<FloatType>(ctx.inputType(0).getElementType()))
      return ctx.error() << "SwiGLU takes two float inputs of one type and shape, got "
                         << a.getType() << " and " << g.getType();
    double alpha = ctx.floatAttr("alpha", 1.0f);
    return ctx.setOutputs(buildElementwise(
        ctx, {a, g}, ctx.inputType(0).getElementType(),
        [&](OpBuilder &b, Location l, ValueRange v) -> Value {
          Value ax = arith::MulFOp::create(b, l, constant(b, l, v[0], alpha), v[0]);
          Value swish = arith::MulFOp::create(b, l, v[0], scalarSigmoid(b, l, ax));
          return arith::MulFOp::create(b, l, swish, v[1]);
        }));
  });
  // com.microsoft activations (onnxruntime's transformer optimizer): GELU
  // as kiln.gelu, so the raised-activation fusions apply, after the bias
  // add of the Bias* and FastGelu forms.
  auto contribGelu = [](const char *op, bool tanh, int biasInput) {
    return [=](NodeContext &ctx) -> LogicalResult {
      Value x = ctx.input(0);
      if (!x)
        return failure();
      if (!isa<FloatType>(ctx.inputType(0).getElementType()))
        return ctx.error() << op << " takes float inputs, got " << x.getType();
      if (biasInput >= 0 && ctx.hasInput(biasInput)) {
        Value bias = ctx.input(biasInput);
        if (!bias)
          return failure();
        x = buildElementwise(ctx, {x, bias}, ctx.inputType(0).getElementType(),
                             [](OpBuilder &b, Location l, ValueRange a) -> Value {
                               return arith::AddFOp::create(b, l, a[0], a[1]);
                             });
        if (!x)
          return failure();
        if (cast<RankedTensorType>(x.getType()).getShape() !=
            ctx.inputType(0).getShape())
          return ctx.error() << "the bias " << ctx.inputType(biasInput)
                             << " must broadcast to the input "
                             << ctx.inputType(0);
      }
      auto gelu = GeluOp::create(ctx.b(), ctx.getLoc(), x);
      gelu.setTanhApproximation(tanh);
      return ctx.setOutputs(gelu.getResult());
    };
  };
  registry.on("com.microsoft.Gelu", 1, contribGelu("Gelu", false, -1));
  registry.on("com.microsoft.BiasGelu", 1, contribGelu("BiasGelu", false, 1));
  registry.on("com.microsoft.FastGelu", 1, contribGelu("FastGelu", true, 1));
  // QuickGelu: x * sigmoid(alpha x), alpha 1.702 by default.
  registry.on("com.microsoft.QuickGelu", 1, [](NodeContext &ctx) -> LogicalResult {
    Value x = ctx.input(0);
    if (!x)
      return failure();
    if (!isa<FloatType>(ctx.inputType(0).getElementType()))
      return ctx.error() << "QuickGelu takes float inputs, got " << x.getType();
    double alpha = ctx.floatAttr("alpha", 1.702f);
    return ctx.setOutputs(buildElementwise(
        ctx, {x}, ctx.inputType(0).getElementType(),
        [&](OpBuilder &b, Location l, ValueRange v) -> Value {
          Value ax = arith::MulFOp::create(b, l, constant(b, l, v[0], alpha), v[0]);
          return arith::MulFOp::create(b, l, v[0], scalarSigmoid(b, l, ax));
        }));
  });
  // BiasAdd: X [N, S, C] + bias [C] + skip [N, S, C].
  registry.on("com.microsoft.BiasAdd", 1, [](NodeContext &ctx) -> LogicalResult {
    Value x = ctx.input(0), bias = ctx.input(1), skip = ctx.input(2);
    if (!x || !bias || !skip)
      return failure();
    RankedTensorType type = ctx.inputType(0);
    if (!isa<FloatType>(type.getElementType()) || type.getRank() != 3 ||
        ctx.inputType(1).getRank() != 1 || ctx.inputType(2) != type)
      return ctx.error() << "BiasAdd takes a float X [N, S, C], a bias [C] "
                            "and a skip of X's shape, got "
                         << type << ", " << ctx.inputType(1) << " and "
                         << ctx.inputType(2);
    Value y = buildElementwise(
        ctx, {x, bias, skip}, type.getElementType(),
        [](OpBuilder &b, Location l, ValueRange a) -> Value {
          return arith::AddFOp::create(
              b, l, arith::AddFOp::create(b, l, a[0], a[1]), a[2]);
        });
    return y ? ctx.setOutputs(y) : failure();
  });
  registry.on("Gelu", 20, [](NodeContext &ctx) -> LogicalResult {
    Value x = ctx.input(0);
    if (!x)
      return failure();
    if (!isa<FloatType>(ctx.inputType(0).getElementType()))
      return ctx.error() << "Gelu takes float inputs, got " << x.getType();
    std::string approximate = "none";
    if (const kiln_onnx::AttributeProto *attr = ctx.attr("approximate"))
      approximate = attr->s();
    if (approximate != "none" && approximate != "tanh")
      return ctx.error() << "approximate must be \"none\" or \"tanh\", got \""
                         << approximate << "\"";
    auto gelu = GeluOp::create(ctx.b(), ctx.getLoc(), x);
    gelu.setTanhApproximation(approximate == "tanh");
    return ctx.setOutputs(gelu.getResult());
  });

  // Numeric unary ops that also take integers.
  onUnary(registry, "Abs", 6, kNumeric,
          [](NodeContext &, OpBuilder &b, Location l, Value x) -> Value {
            if (isFloatValue(x))
              return math::AbsFOp::create(b, l, x);
            return math::AbsIOp::create(b, l, x);
          });
  onUnary(registry, "Neg", 6, kNumeric,
          [](NodeContext &, OpBuilder &b, Location l, Value x) -> Value {
            if (isFloatValue(x))
              return arith::NegFOp::create(b, l, x);
            return arith::SubIOp::create(b, l, constant(b, l, x, 0), x);
          });
  onUnary(registry, "Sign", 9, kNumeric,
          [](NodeContext &, OpBuilder &b, Location l, Value x) -> Value {
            Value zero = constant(b, l, x, 0), one = constant(b, l, x, 1),
                  minusOne = constant(b, l, x, -1);
            Value pos, neg;
            if (isFloatValue(x)) {
              pos = arith::CmpFOp::create(b, l, P::OGT, x, zero);
              neg = arith::CmpFOp::create(b, l, P::OLT, x, zero);
            } else {
              pos = arith::CmpIOp::create(b, l, I::sgt, x, zero);
              neg = arith::CmpIOp::create(b, l, I::slt, x, zero);
            }
            return arith::SelectOp::create(
                b, l, pos, one, arith::SelectOp::create(b, l, neg, minusOne, zero));
          });
  onUnary(registry, "Relu", 14, kNumeric,
          [](NodeContext &, OpBuilder &b, Location l, Value x) -> Value {
            return maxOf(b, l, x, constant(b, l, x, 0));
          });
  onUnary(registry, "Not", 1, kBool,
          [](NodeContext &, OpBuilder &b, Location l, Value x) -> Value {
            return arith::XOrIOp::create(
                b, l, x, arith::ConstantOp::create(b, l, b.getBoolAttr(true)));
          });
  onUnary(registry, "BitwiseNot", 18, kSignedInt,
          [](NodeContext &, OpBuilder &b, Location l, Value x) -> Value {
            return arith::XOrIOp::create(b, l, x, constant(b, l, x, -1));
          });

  // Comparisons and logic.
  onBinary(registry, "Equal", 7, kAny, compare(P::OEQ, I::eq, I::eq), true);
  onBinary(registry, "Less", 7, kNumeric, compare(P::OLT, I::slt, I::ult), true,
           compare(P::OLT, I::ult, I::ult));
  onBinary(registry, "Greater", 7, kNumeric, compare(P::OGT, I::sgt, I::ugt), true,
           compare(P::OGT, I::ugt, I::ugt));
  onBinary(registry, "LessOrEqual", 12, kNumeric, compare(P::OLE, I::sle, I::ule), true,
           compare(P::OLE, I::ule, I::ule));
  onBinary(registry, "GreaterOrEqual", 12, kNumeric, compare(P::OGE, I::sge, I::uge),
           true, compare(P::OGE, I::uge, I::uge));
  auto logic = [](auto op) {
    return [op](OpBuilder &b, Location l, Value x, Value y) -> Value {
      return decltype(op)::create(b, l, x, y);
    };
  };
  onBinary(registry, "And", 7, kBool, logic(arith::AndIOp()));
  onBinary(registry, "Or", 7, kBool, logic(arith::OrIOp()));
  onBinary(registry, "Xor", 7, kBool, logic(arith::XOrIOp()));
  onBinary(registry, "BitwiseAnd", 18, kSignedInt, logic(arith::AndIOp()));
  onBinary(registry, "BitwiseOr", 18, kSignedInt, logic(arith::OrIOp()));
  onBinary(registry, "BitwiseXor", 18, kSignedInt, logic(arith::XOrIOp()));

  onVariadic(registry, "Max", 8, false, maxOf, kNumeric,
             [](OpBuilder &b, Location loc, Value x, Value y) -> Value {
               return arith::MaxUIOp::create(b, loc, x, y);
             });
  onVariadic(registry, "Min", 8, false, minOf, kNumeric,
             [](OpBuilder &b, Location loc, Value x, Value y) -> Value {
               return arith::MinUIOp::create(b, loc, x, y);
             });
  // BitShift (11; signed integers from 26): x shifted left or right by the
  // other input, arithmetically for signed x.
  registry.on("BitShift", 11, [](NodeContext &ctx) -> LogicalResult {
    Value x = ctx.input(0), s = ctx.input(1);
    if (!x || !s)
      return failure();
    Type element = ctx.inputType(0).getElementType();
    if (element != ctx.inputType(1).getElementType() || !element.isInteger() ||
        element.isInteger(1))
      return ctx.error() << "BitShift takes two integer inputs of one type, got "
                         << x.getType() << " and " << s.getType();
    std::string direction;
    if (const kiln_onnx::AttributeProto *attr = ctx.attr("direction"))
      direction = attr->s();
    if (direction != "LEFT" && direction != "RIGHT")
      return ctx.error() << "direction must be \"LEFT\" or \"RIGHT\", got \""
                         << direction << "\"";
    bool left = direction == "LEFT";
    bool isSigned = !ctx.inputIsUnsigned(0);
    unsigned width = element.getIntOrFloatBitWidth();
    Value out = buildElementwise(
        ctx, {x, s}, element, [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
          Value shifted =
              left ? arith::ShLIOp::create(b, loc, a[0], a[1]).getResult()
              : isSigned ? arith::ShRSIOp::create(b, loc, a[0], a[1]).getResult()
                         : arith::ShRUIOp::create(b, loc, a[0], a[1]).getResult();
          // Shifts by a negative amount or by the width or more (undefined
          // in arith) give 0, or -1 for a negative value shifted right.
          Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, a[1],
                                                scalarConstant(b, loc, element, width));
          Value zero = scalarConstant(b, loc, element, 0);
          Value outside = zero;
          if (!left && isSigned)
            outside = arith::SelectOp::create(
                b, loc,
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, a[0], zero),
                scalarConstant(b, loc, element, -1), zero);
          return arith::SelectOp::create(b, loc, inRange, shifted, outside);
        });
    return out ? ctx.setOutputs(out) : failure();
  });
  onVariadic(registry, "Sum", 8, false, addOf, kNumeric);
  onVariadic(registry, "Mean", 8, true, addOf, kFloat);

  registry.on("Where", 9, importWhere);
  registry.on("Clip", 6, [](NodeContext &ctx) { return importClip(ctx, false); });
  registry.on("Clip", 11, [](NodeContext &ctx) { return importClip(ctx, true); });
  registry.on("PRelu", 7, importPRelu);
  registry.on("Mod", 10, importMod);
  registry.on("CastLike", 15, importCastLike);
  registry.on("BitCast", 26, importBitCast);
}

} // namespace kiln::onnx
