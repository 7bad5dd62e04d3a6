//===- OpsQuant.cpp - ONNX QuantizeLinear and DequantizeLinear ------------===//
//
// Linear (de)quantization between floats and 8/16-bit integers with a
// scale and zero point per tensor, per slice along `axis`, or per block of
// `block_size` elements along it (21). Each is one indexed kernel reading
// the scale and zero point that cover the element. The arithmetic runs in
// f32, as the reference does: dequantize (x - zero_point) * scale,
// quantize clamp(round_half_even(x / scale) + zero_point).
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/NarrowTypes.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {
namespace {


/// How a scale or zero point covers the data: one value, one per slice
/// along the axis, or one per block along it.
struct Granularity {
  int64_t axis = 0;
  int64_t blockSize = 0; // 0: not blocked
};

/// Checks `param` (input #`position`) against the data's shape and works
/// out its granularity; reports on the node.
std::optional<Granularity> granularity(NodeContext &ctx, int position,
                                       RankedTensorType data) {
  RankedTensorType param = ctx.inputType(position);
  Granularity g;
  int64_t blockSize = ctx.intAttr("block_size", 0);
  if (param.getNumElements() == 1 && param.getRank() <= 1 && blockSize == 0)
    return g; // per tensor
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", 1), data.getRank());
  if (!axis)
    return std::nullopt;
  g.axis = *axis;
  int64_t extent = data.getShape()[*axis];
  if (blockSize <= 0) {
    if (param.getRank() != 1 || param.getShape()[0] != extent) {
      ctx.error() << "input #" << position << " " << param
                  << " must be a scalar or hold one value per slice along axis "
                  << *axis << " (" << extent << ")";
      return std::nullopt;
    }
    return g;
  }
  g.blockSize = blockSize;
  bool fits = param.getRank() == data.getRank();
  for (int64_t d = 0; fits && d < data.getRank(); ++d)
    fits = param.getShape()[d] == (d == *axis ? (extent + blockSize - 1) / blockSize
                                              : data.getShape()[d]);
  if (!fits) {
    ctx.error() << "input #" << position << " " << param << " must hold one value per "
                << blockSize << "-element block along axis " << *axis << " of "
                << data;
    return std::nullopt;
  }
  return g;
}

/// The element of `param` covering the data element at `ivs`.
Value paramAt(OpBuilder &b, Location loc, Value param, const Granularity &g,
              ValueRange ivs) {
  auto type = cast<RankedTensorType>(param.getType());
  SmallVector<Value> at;
  if (type.getNumElements() == 1 && g.blockSize == 0 && type.getRank() <= 1) {
    at.assign(type.getRank(), indexConstant(b, loc, 0));
  } else if (g.blockSize == 0) {
    at.push_back(ivs[g.axis]);
  } else {
    at.assign(ivs.begin(), ivs.end());
    at[g.axis] = arith::DivUIOp::create(b, loc, ivs[g.axis], indexConstant(b, loc, g.blockSize));
  }
  return tensor::ExtractOp::create(b, loc, param, at);
}

/// The integer types quantization targets, with their ranges.
std::optional<std::pair<double, double>> quantRange(Type type, bool isUnsigned) {
  if (!type.isInteger() || type.isInteger(1))
    return std::nullopt;
  unsigned width = type.getIntOrFloatBitWidth();
  if (width != 8 && width != 16)
    return std::nullopt;
  double span = std::ldexp(1.0, width);
  return isUnsigned ? std::make_pair(0.0, span - 1)
                    : std::make_pair(-span / 2, span / 2 - 1);
}

/// The range of a narrow integer type, none for the float ones.
std::optional<std::pair<double, double>> narrowRange(int32_t type) {
  using kiln_onnx::TensorProto;
  switch (type) {
  case TensorProto::INT4: return std::make_pair(-8.0, 7.0);
  case TensorProto::UINT4: return std::make_pair(0.0, 15.0);
  case TensorProto::INT2: return std::make_pair(-2.0, 1.0);
  case TensorProto::UINT2: return std::make_pair(0.0, 3.0);
  default: return std::nullopt;
  }
}

/// A zero point must have x's (or y's) narrow type: reports when not.
bool zeroPointNarrowMismatch(NodeContext &ctx, int32_t narrow) {
  if (!ctx.hasInput(2) || ctx.inputNarrowType(2) == narrow)
    return false;
  ctx.error() << "the zero point is "
              << (ctx.inputNarrowType(2) ? dataTypeName(ctx.inputNarrowType(2))
                                         : std::string("not narrow"))
              << " but x is "
              << (narrow ? dataTypeName(narrow) : std::string("not narrow"));
  return true;
}

LogicalResult importDequantize(NodeContext &ctx) {
  Value x = ctx.input(0), scale = ctx.input(1);
  if (!x || !scale)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  bool xUnsigned = ctx.inputIsUnsigned(0);
  int32_t narrow = ctx.inputNarrowType(0);
  if (zeroPointNarrowMismatch(ctx, narrow))
    return failure();
  if (!element.isInteger() || element.isInteger(1) ||
      element.getIntOrFloatBitWidth() > 32)
    return ctx.error() << "DequantizeLinear takes 8, 16 or 32-bit integers, got "
                       << x.getType();
  Type scaleType = ctx.inputType(1).getElementType();
  if (!isa<FloatType>(scaleType))
    return ctx.error() << "x_scale must be float, got " << scale.getType();
  Value zeroPoint = ctx.hasInput(2) ? ctx.input(2) : Value();
  if (ctx.hasInput(2) && !zeroPoint)
    return failure();
  if (zeroPoint && ctx.inputType(2).getElementType() != element)
    return ctx.error() << "x_zero_point " << zeroPoint.getType()
                       << " must have the element type of x " << x.getType();
  Type out = scaleType;
  if (ctx.hasAttr("output_dtype")) {
    out = toElementType(ctx.b().getContext(), ctx.intAttr("output_dtype", 1));
    if (!out || !isa<FloatType>(out))
      return ctx.error() << "output_dtype must be a float type";
  }
  std::optional<Granularity> g = granularity(ctx, 1, type);
  if (!g || (zeroPoint && !granularity(ctx, 2, type)))
    return failure();
  Type f32 = ctx.b().getF32Type();
  // The value of an element of x or the zero point, in f32.
  auto widen = [&](OpBuilder &b, Location loc, Value v) {
    return narrow ? decodeNarrow(b, loc, v, narrow)
                  : castScalar(b, loc, v, f32, xUnsigned);
  };
  Value y = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), out,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value v = widen(b, loc, tensor::ExtractOp::create(b, loc, x, ivs));
        if (zeroPoint)
          v = arith::SubFOp::create(
              b, loc, v, widen(b, loc, paramAt(b, loc, zeroPoint, *g, ivs)));
        Value s = castScalar(b, loc, paramAt(b, loc, scale, *g, ivs), f32);
        return castScalar(b, loc, arith::MulFOp::create(b, loc, v, s), out);
      });
  return ctx.setOutputs(y);
}

LogicalResult importQuantize(NodeContext &ctx) {
  Value x = ctx.input(0), scale = ctx.input(1);
  if (!x || !scale)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (!isa<FloatType>(type.getElementType()) ||
      ctx.inputType(1).getElementType() != type.getElementType())
    return ctx.error() << "QuantizeLinear takes a float x and a scale of its type, got "
                       << x.getType() << " and " << scale.getType();
  Value zeroPoint = ctx.hasInput(2) ? ctx.input(2) : Value();
  if (ctx.hasInput(2) && !zeroPoint)
    return failure();
  // The output type: the zero point's, else output_dtype, else uint8.
  Type out;
  bool outUnsigned = true;
  int32_t narrow = 0;
  if (zeroPoint) {
    out = ctx.inputType(2).getElementType();
    outUnsigned = ctx.inputIsUnsigned(2);
    narrow = ctx.inputNarrowType(2);
  } else {
    int64_t dtype = ctx.intAttr("output_dtype", kiln_onnx::TensorProto::UINT8);
    out = storageElementType(ctx.b().getContext(), dtype, &outUnsigned);
    narrow = isNarrowType(dtype) ? static_cast<int32_t>(dtype) : 0;
  }
  std::optional<std::pair<double, double>> range =
      narrow ? narrowRange(narrow)
             : out ? quantRange(out, outUnsigned) : std::nullopt;
  bool toFloat = narrow && isNarrowFloat(narrow);
  if (!range && !toFloat)
    return ctx.error() << "QuantizeLinear to "
                       << (out ? "this type" : "this output_dtype")
                       << " is not supported (8- and 16-bit integers, int4, "
                          "uint4, int2, uint2 and the float8 and float4 "
                          "types are)";
  if (ctx.hasAttr("precision"))
    return ctx.error() << "the precision attribute is not supported";
  bool saturate = ctx.intAttr("saturate", 1) != 0;
  std::optional<Granularity> g = granularity(ctx, 1, type);
  if (!g || (zeroPoint && !granularity(ctx, 2, type)))
    return failure();
  Type f32 = ctx.b().getF32Type();
  Value y = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), out,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value v = castScalar(b, loc, tensor::ExtractOp::create(b, loc, x, ivs), f32);
        Value s = castScalar(b, loc, paramAt(b, loc, scale, *g, ivs), f32);
        if (toFloat) {
          // x / scale + zero_point, rounded to the format (saturating
          // unless saturate = 0).
          Value q = arith::DivFOp::create(b, loc, v, s);
          if (zeroPoint)
            q = arith::AddFOp::create(
                b, loc, q,
                decodeNarrow(b, loc, paramAt(b, loc, zeroPoint, *g, ivs), narrow));
          return encodeNarrow(b, loc, q, narrow, saturate);
        }
        Value q = math::RoundEvenOp::create(b, loc, arith::DivFOp::create(b, loc, v, s));
        if (zeroPoint)
          q = arith::AddFOp::create(
              b, loc, q,
              castScalar(b, loc, paramAt(b, loc, zeroPoint, *g, ivs), f32,
                         outUnsigned && !narrow));
        q = arith::MaximumFOp::create(b, loc, q, scalarConstant(b, loc, f32, range->first));
        q = arith::MinimumFOp::create(b, loc, q, scalarConstant(b, loc, f32, range->second));
        return castScalar(b, loc, q, out, /*fromUnsigned=*/false, outUnsigned);
      });
  ctx.setOutputUnsigned(0, outUnsigned && !narrow);
  ctx.setOutputNarrowType(0, narrow);
  return ctx.setOutputs(y);
}

/// DynamicQuantizeLinear (11): uint8 quantization with the scale and zero
/// point that map [min(x, 0), max(x, 0)] onto [0, 255].
LogicalResult importDynamicQuantize(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (!type.getElementType().isF32())
    return ctx.error() << "DynamicQuantizeLinear takes f32, got " << x.getType();
  OpBuilder &b0 = ctx.b();
  Location loc0 = ctx.getLoc();
  Type f32 = b0.getF32Type(), u8 = b0.getIntegerType(8);
  SmallVector<bool> all(type.getRank(), true);
  Value lo = buildReduce(ctx, x, all, ReduceKind::Min);
  Value hi = buildReduce(ctx, x, all, ReduceKind::Max);
  auto scalarOf = [&](ValueRange inputs, Type element, ScalarBodyFn body) {
    return buildBroadcast(b0, loc0, inputs, {}, element, body);
  };
  auto clampRound = [](OpBuilder &b, Location loc, Value v) -> Value {
    Value r = math::RoundEvenOp::create(b, loc, v);
    r = arith::MaximumFOp::create(b, loc, r, scalarConstant(b, loc, r.getType(), 0));
    return arith::MinimumFOp::create(b, loc, r, scalarConstant(b, loc, r.getType(), 255));
  };
  // The range always includes 0, so that 0 is exact.
  Value scale = scalarOf({lo, hi}, f32, [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
    Value zero = scalarConstant(b, loc, f32, 0);
    Value span = arith::SubFOp::create(b, loc, arith::MaximumFOp::create(b, loc, a[1], zero),
                                       arith::MinimumFOp::create(b, loc, a[0], zero));
    return arith::DivFOp::create(b, loc, span, scalarConstant(b, loc, f32, 255));
  });
  Value zeroPointF = scalarOf({lo, scale}, f32, [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
    Value zero = scalarConstant(b, loc, f32, 0);
    Value minimum = arith::MinimumFOp::create(b, loc, a[0], zero);
    return clampRound(b, loc,
                      arith::SubFOp::create(b, loc, zero,
                                            arith::DivFOp::create(b, loc, minimum, a[1])));
  });
  Value zeroPoint = scalarOf({zeroPointF}, u8, [&](OpBuilder &b, Location loc, ValueRange a) {
    return castScalar(b, loc, a[0], u8, false, /*toUnsigned=*/true);
  });
  Value y = buildBroadcast(
      b0, loc0, {x, scale, zeroPointF}, type.getShape(), u8,
      [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
        Value q = math::RoundEvenOp::create(b, loc, arith::DivFOp::create(b, loc, a[0], a[1]));
        q = clampRound(b, loc, arith::AddFOp::create(b, loc, q, a[2]));
        return castScalar(b, loc, q, u8, false, /*toUnsigned=*/true);
      });
  ctx.setOutputUnsigned(0, true);
  ctx.setOutputUnsigned(1, false);
  ctx.setOutputUnsigned(2, true);
  return ctx.setOutputs({y, scale, zeroPoint});
}

} // namespace

/// com.microsoft MatMulNBits: Y = A @ W (+ bias), W [K, N] stored as
/// `bits`-bit integers in blocks of `block_size` along K, each block with a
/// scale and a zero point (2^(bits-1) unless given, packed like the weights
/// when uint8, else one of the scales' type each):
/// W[k][n] = (q(n, k) - zp(n, g(k))) * scale(n, g(k)), g(k) = k / block_size
/// or, with g_idx (act-order GPTQ), g_idx[k].
/// The packed weights stay packed in the artifact; the dequantization,
/// tagged kBlockQuantizedAttr, is decoded by the GEMM that reads it
/// (kiln-fuse-weight-decode).
LogicalResult importMatMulNBits(NodeContext &ctx) {
  Value a = ctx.input(0), packed = ctx.input(1), scales = ctx.input(2);
  if (!a || !packed || !scales)
    return failure();
  int64_t k = ctx.intAttr("K", 0), n = ctx.intAttr("N", 0),
          bits = ctx.intAttr("bits", 4), blockSize = ctx.intAttr("block_size", 0);
  Type element = elementTypeOf(a);
  if (!isa<FloatType>(element) || elementTypeOf(scales) != element)
    return ctx.error() << "MatMulNBits takes a float A and scales of its type, "
                       << "got " << a.getType() << " and " << scales.getType();
  if (k <= 0 || n <= 0 || (bits != 2 && bits != 4 && bits != 8) ||
      blockSize < 16 || (blockSize & (blockSize - 1)))
    return ctx.error() << "K " << k << ", N " << n << ", bits " << bits
                       << " and block_size " << blockSize << " must be "
                       << "positive, 2, 4 or 8 bits, and a power of two of "
                       << "at least 16";
  int64_t blocks = (k + blockSize - 1) / blockSize;
  int64_t blob = blockSize * bits / 8;
  ArrayRef<int64_t> as = shapeOf(a);
  if (as.empty() || as.back() != k)
    return ctx.error() << "A " << a.getType() << " must end in K = " << k;
  if (shapeOf(packed) != ArrayRef<int64_t>({n, blocks, blob}) ||
      !elementTypeOf(packed).isInteger(8))
    return ctx.error() << "B must be uint8 [N, K blocks, block bytes] = ["
                       << n << ", " << blocks << ", " << blob << "], got "
                       << packed.getType();
  if (cast<ShapedType>(scales.getType()).getNumElements() != n * blocks)
    return ctx.error() << "scales must have N x K blocks = " << n * blocks
                       << " elements, got " << scales.getType();
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  scales = buildReshape(b, loc, scales, {n * blocks});
  Value zeros = ctx.hasInput(3) ? ctx.input(3) : Value();
  if (ctx.hasInput(3) && !zeros)
    return failure();
  bool packedZeros = zeros && elementTypeOf(zeros).isInteger(8);
  int64_t zeroRowBytes = (blocks * bits + 7) / 8;
  if (zeros) {
    int64_t count = cast<ShapedType>(zeros.getType()).getNumElements();
    if (packedZeros ? count != n * zeroRowBytes
                    : (elementTypeOf(zeros) != element || count != n * blocks))
      return ctx.error() << "zero_points must be uint8 [" << n * zeroRowBytes
                         << "] (packed) or [" << n * blocks
                         << "] of the scales' type, got " << zeros.getType();
    zeros = buildReshape(b, loc, zeros, {count});
  }
  // g_idx (act-order GPTQ): the group of scales and zero points of each
  // row k, instead of k / block_size.
  Value groups = ctx.hasInput(4) ? ctx.input(4) : Value();
  if (ctx.hasInput(4) &&
      (!groups || shapeOf(groups) != ArrayRef<int64_t>({k}) ||
       !isa<IntegerType>(elementTypeOf(groups))))
    return groups ? ctx.error() << "g_idx must be integers [K] = [" << k
                                << "], got " << groups.getType()
                  : failure();
  // onnxruntime's CPU kernel (1.32) ignores the zero points when g_idx is
  // given; the two together have no semantics to match.
  if (groups && ctx.hasInput(3))
    return ctx.error() << "g_idx together with zero_points is not "
                       << "supported (onnxruntime ignores the zero points "
                       << "then); requantize with symmetric blocks, or "
                       << "without act-order";
  Value bias = ctx.hasInput(5) ? ctx.input(5) : Value();
  if (ctx.hasInput(5) &&
      (!bias || shapeOf(bias) != ArrayRef<int64_t>({n}) || elementTypeOf(bias) != element))
    return bias ? ctx.error() << "bias must be [" << n << "] of A's type, got "
                              << bias.getType()
                : failure();

  // The `bits`-bit field `index` of a uint8 row, as an i32.
  auto field = [&](OpBuilder &nb, Location nl, Value tensor, ValueRange prefix,
                   Value index) -> Value {
    Value bit = arith::MulIOp::create(nb, nl, index, indexConstant(nb, nl, bits));
    Value byteAt = arith::DivUIOp::create(nb, nl, bit, indexConstant(nb, nl, 8));
    Value shift = arith::RemUIOp::create(nb, nl, bit, indexConstant(nb, nl, 8));
    SmallVector<Value> at(prefix.begin(), prefix.end());
    at.push_back(byteAt);
    Value byte = tensor::ExtractOp::create(nb, nl, tensor, at);
    Value wide = arith::ExtUIOp::create(nb, nl, nb.getI32Type(), byte);
    Value s = arith::IndexCastOp::create(nb, nl, nb.getI32Type(), shift);
    Value shifted = arith::ShRUIOp::create(nb, nl, wide, s);
    return arith::AndIOp::create(
        nb, nl, shifted,
        arith::ConstantOp::create(nb, nl, nb.getI32IntegerAttr((1 << bits) - 1)));
  };
  Value w = buildIndexed(
      b, loc, {k, n}, element, [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
        Value kk = ivs[0], nn = ivs[1];
        Value block = arith::DivUIOp::create(nb, nl, kk, indexConstant(nb, nl, blockSize));
        Value inBlock = arith::RemUIOp::create(nb, nl, kk, indexConstant(nb, nl, blockSize));
        Value q = field(nb, nl, packed, {nn, block}, inBlock);
        // The row's group of scales and zero points.
        Value group = block;
        if (groups)
          group = arith::IndexCastOp::create(
              nb, nl, nb.getIndexType(),
              tensor::ExtractOp::create(nb, nl, groups, ValueRange{kk}));
        Value at = arith::AddIOp::create(
            nb, nl, arith::MulIOp::create(nb, nl, nn, indexConstant(nb, nl, blocks)), group);
        Value scale = tensor::ExtractOp::create(nb, nl, scales, ValueRange{at});
        Value qf = arith::UIToFPOp::create(nb, nl, element, q);
        Value zp;
        if (!zeros) {
          zp = scalarConstant(nb, nl, element, double(1 << (bits - 1)));
        } else if (packedZeros) {
          // Row n's zero points start at byte n * zeroRowBytes.
          Value bitAt = arith::AddIOp::create(
              nb, nl, arith::MulIOp::create(nb, nl, nn, indexConstant(nb, nl, zeroRowBytes * 8 / bits)),
              group);
          zp = arith::UIToFPOp::create(nb, nl, element,
                                       field(nb, nl, zeros, {}, bitAt));
        } else {
          zp = tensor::ExtractOp::create(nb, nl, zeros, ValueRange{at});
        }
        return arith::MulFOp::create(nb, nl, arith::SubFOp::create(nb, nl, qf, zp),
                                     scale);
      });
  // The CPU's panels take the plain layout (a row's group is its block).
  if (!groups)
    w.getDefiningOp()->setAttr(
        kBlockQuantizedAttr,
        b.getDictionaryAttr(
            {b.getNamedAttr("bits", b.getI64IntegerAttr(bits)),
             b.getNamedAttr("block_size", b.getI64IntegerAttr(blockSize))}));
  Value y = buildMatmul(ctx, a, w);
  if (!y)
    return failure();
  if (bias)
    y = buildElementwise(ctx, {y, bias}, element,
                         [](OpBuilder &nb, Location nl, ValueRange v) -> Value {
                           return arith::AddFOp::create(nb, nl, v[0], v[1]);
                         });
  return y ? ctx.setOutputs(y) : failure();
}

void registerQuantOps(OpRegistry &registry) {
  registry.on("com.microsoft.MatMulNBits", 1, importMatMulNBits);
  registry.on("DynamicQuantizeLinear", 11, importDynamicQuantize);
  registry.on("DequantizeLinear", 10, importDequantize);
  registry.on("QuantizeLinear", 10, importQuantize);
}

} // namespace kiln::onnx
