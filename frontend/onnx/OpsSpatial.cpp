//===- OpsSpatial.cpp - sampling grids, crops and local normalization ----===//
//
// GridSample and AffineGrid (spatial transformers, deformable and
// flow-warping models), CenterCropPad and LRN. Each is one linalg.generic
// over its output whose body computes an element from the output indices
// (tensor.extract gathers), with static shapes; the semantics follow the
// ONNX specification and its reference implementation
// (onnx/reference/ops), which the node tests were generated with.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;

namespace kiln::onnx {
namespace {

/// Float arithmetic on one builder, in one compute type.
struct Fx {
  OpBuilder &b;
  Location loc;
  Type type;
  Value c(double v) { return scalarConstant(b, loc, type, v); }
  Value add(Value x, Value y) { return arith::AddFOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubFOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value div(Value x, Value y) { return arith::DivFOp::create(b, loc, x, y); }
  Value floor(Value x) { return math::FloorOp::create(b, loc, x); }
  Value abs(Value x) { return math::AbsFOp::create(b, loc, x); }
  Value lt(Value x, Value y) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, y);
  }
  Value gt(Value x, Value y) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, y);
  }
  Value eq(Value x, Value y) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, x, y);
  }
  Value select(Value cond, Value x, Value y) {
    return arith::SelectOp::create(b, loc, cond, x, y);
  }
  Value clamp(Value x, double lo, double hi) {
    return arith::MinimumFOp::create(
        b, loc, arith::MaximumFOp::create(b, loc, x, c(lo)), c(hi));
  }
  /// x truncated toward zero, as an index.
  Value toIndex(Value x) {
    Value i = arith::FPToSIOp::create(b, loc, b.getI64Type(), x);
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), i);
  }
  Value fromIndex(Value i) {
    Value n = arith::IndexCastOp::create(b, loc, b.getI64Type(), i);
    return arith::SIToFPOp::create(b, loc, type, n);
  }
  Value widen(Value x) {
    if (x.getType() == type)
      return x;
    return castScalar(b, loc, x, type);
  }
};

/// The compute type of a float element type: f32 for narrower ones.
Type computeType(Type element) {
  auto f = cast<FloatType>(element);
  return f.getWidth() >= 32 ? element : Float32Type::get(element.getContext());
}

//===----------------------------------------------------------------------===//
// GridSample
//===----------------------------------------------------------------------===//

enum class SampleMode { Nearest, Linear, Cubic };
enum class PadMode { Zeros, Border, Reflection };

/// `x` reflected by the near border until it lies in [lo, hi] (the
/// reference's _gs_reflect).
Value reflect(Fx &f, Value x, double lo, double hi) {
  double range = hi - lo;
  if (range <= 0)
    return f.c(lo);
  auto fold = [&](Value dx, Value nearEdge, Value farEdge, bool below) {
    Value n = f.floor(f.div(dx, f.c(range)));
    Value r = f.sub(dx, f.mul(n, f.c(range)));
    Value half = f.floor(f.mul(n, f.c(0.5)));
    Value even = f.eq(f.sub(n, f.mul(half, f.c(2))), f.c(0));
    Value fromNear = below ? f.add(nearEdge, r) : f.sub(nearEdge, r);
    Value fromFar = below ? f.sub(farEdge, r) : f.add(farEdge, r);
    return f.select(even, fromNear, fromFar);
  };
  Value below = fold(f.sub(f.c(lo), x), f.c(lo), f.c(hi), true);
  Value above = fold(f.sub(x, f.c(hi)), f.c(hi), f.c(lo), false);
  return f.select(f.lt(x, f.c(lo)), below,
                  f.select(f.gt(x, f.c(hi)), above, x));
}

/// Keys' cubic convolution weights (alpha -0.75) of the four taps around
/// a point at fraction `t` past the second one.
SmallVector<Value> cubicWeights(Fx &f, Value t) {
  const double a = -0.75;
  auto far = [&](Value x) { // 1 < |x| < 2
    return f.sub(f.mul(f.add(f.mul(f.sub(f.mul(f.c(a), x), f.c(5 * a)), x),
                             f.c(8 * a)),
                       x),
                 f.c(4 * a));
  };
  auto near = [&](Value x) { // |x| <= 1
    return f.add(f.mul(f.mul(f.sub(f.mul(f.c(a + 2), x), f.c(a + 3)), x), x),
                 f.c(1));
  };
  Value one = f.c(1), two = f.c(2);
  return {far(f.add(t, one)), near(t), near(f.sub(one, t)),
          far(f.sub(two, t))};
}

LogicalResult importGridSample(NodeContext &ctx) {
  Value x = ctx.input(0), grid = ctx.input(1);
  if (!x || !grid)
    return failure();
  RankedTensorType xType = ctx.inputType(0), gridType = ctx.inputType(1);
  int64_t rank = xType.getRank(), spatial = rank - 2;
  if (!xType.hasStaticShape() || !gridType.hasStaticShape())
    return ctx.error() << "GridSample needs static shapes";
  if (!isa<FloatType>(xType.getElementType()) ||
      !isa<FloatType>(gridType.getElementType()))
    return ctx.error() << "GridSample takes float data and grids";
  if ((spatial != 2 && spatial != 3) || gridType.getRank() != rank ||
      gridType.getDimSize(0) != xType.getDimSize(0) ||
      gridType.getShape().back() != spatial)
    return ctx.error() << "GridSample takes X [N, C, H, W] with a grid [N, "
                          "H_out, W_out, 2], or X [N, C, D, H, W] with a grid "
                          "[N, D_out, H_out, W_out, 3]; got "
                       << xType << " and " << gridType;
  std::string modeName = "bilinear", padName = "zeros";
  if (const auto *attr = ctx.attr("mode"))
    modeName = attr->s();
  if (const auto *attr = ctx.attr("padding_mode"))
    padName = attr->s();
  SampleMode mode;
  if (modeName == "nearest")
    mode = SampleMode::Nearest;
  else if (modeName == "bilinear" || modeName == "linear")
    mode = SampleMode::Linear;
  else if (modeName == "bicubic" || modeName == "cubic")
    mode = SampleMode::Cubic;
  else
    return ctx.error() << "unknown mode '" << modeName
                       << "' (expected nearest, linear or cubic)";
  if (mode == SampleMode::Cubic && spatial != 2)
    return ctx.error() << "cubic GridSample takes 4-D data only";
  PadMode pad;
  if (padName == "zeros")
    pad = PadMode::Zeros;
  else if (padName == "border")
    pad = PadMode::Border;
  else if (padName == "reflection")
    pad = PadMode::Reflection;
  else
    return ctx.error() << "unknown padding_mode '" << padName
                       << "' (expected zeros, border or reflection)";
  bool align = ctx.intAttr("align_corners", 0) != 0;
  ArrayRef<int64_t> dims = xType.getShape().drop_front(2);
  SmallVector<int64_t> outShape = {xType.getDimSize(0), xType.getDimSize(1)};
  for (int64_t d : gridType.getShape().drop_front().drop_back())
    outShape.push_back(d);
  Type element = xType.getElementType();

  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Fx f{b, loc, computeType(element)};
        Value n = ivs[0], ch = ivs[1];
        // Per spatial dim (D, H, W order): the source coordinate; the grid
        // holds them innermost-first (x = W, y = H, z = D).
        SmallVector<Value> coords;
        for (int64_t i = 0; i < spatial; ++i) {
          SmallVector<Value> at(ivs.begin() + 2, ivs.end());
          at.insert(at.begin(), n);
          at.push_back(indexConstant(b, loc, spatial - 1 - i));
          Value g = f.widen(tensor::ExtractOp::create(b, loc, grid, at));
          double length = double(dims[i]);
          Value c = align ? f.mul(f.mul(f.add(g, f.c(1)), f.c(0.5)),
                                  f.c(length - 1))
                          : f.mul(f.sub(f.mul(f.add(g, f.c(1)), f.c(length)),
                                        f.c(1)),
                                  f.c(0.5));
          if (mode == SampleMode::Nearest)
            c = math::RoundEvenOp::create(b, loc, c);
          double lo = align ? 0.0 : -0.5;
          double hi = align ? length - 1 : length - 0.5;
          // Outside [lo, hi] only (the reference leaves a coordinate in
          // the half pixel past an edge alone).
          if (pad == PadMode::Border)
            c = f.select(f.lt(c, f.c(lo)), f.clamp(c, 0, length - 1),
                         f.select(f.gt(c, f.c(hi)), f.clamp(c, 0, length - 1),
                                  c));
          else if (pad == PadMode::Reflection)
            c = reflect(f, c, lo, hi);
          coords.push_back(c);
        }
        // The taps of each dim: their index and weight.
        SmallVector<SmallVector<std::pair<Value, Value>>> taps(spatial);
        for (int64_t i = 0; i < spatial; ++i) {
          if (mode == SampleMode::Nearest) {
            taps[i].push_back({f.toIndex(coords[i]), f.c(1)});
            continue;
          }
          Value base = f.floor(coords[i]);
          Value t = f.sub(coords[i], base);
          Value first = f.toIndex(base);
          SmallVector<Value> weights =
              mode == SampleMode::Linear
                  ? SmallVector<Value>{f.sub(f.c(1), t), t}
                  : cubicWeights(f, t);
          int64_t start = mode == SampleMode::Linear ? 0 : -1;
          for (auto [k, w] : llvm::enumerate(weights)) {
            Value idx = arith::AddIOp::create(
                b, loc, first, indexConstant(b, loc, start + int64_t(k)));
            taps[i].push_back({idx, w});
          }
        }
        // The pixel at one tap per dim, by the padding mode.
        auto pixel = [&](ArrayRef<Value> at) -> Value {
          SmallVector<Value> index = {n, ch};
          Value inside;
          for (int64_t i = 0; i < spatial; ++i) {
            Value idx = at[i];
            int64_t length = dims[i];
            if (pad == PadMode::Reflection) {
              double lo = align ? 0.0 : -0.5;
              double hi = align ? double(length - 1) : length - 0.5;
              idx = f.toIndex(reflect(f, f.fromIndex(idx), lo, hi));
            }
            Value zero = indexConstant(b, loc, 0);
            Value last = indexConstant(b, loc, length - 1);
            if (pad == PadMode::Zeros) {
              Value ok = arith::AndIOp::create(
                  b, loc,
                  arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                        idx, zero),
                  arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                                        idx, last));
              inside = inside ? arith::AndIOp::create(b, loc, inside, ok)
                                    .getResult()
                              : ok;
            }
            idx = arith::MinSIOp::create(
                b, loc, arith::MaxSIOp::create(b, loc, idx, zero), last);
            index.push_back(idx);
          }
          Value v = f.widen(tensor::ExtractOp::create(b, loc, x, index));
          return inside ? f.select(inside, v, f.c(0)) : v;
        };
        // The weighted sum over every combination of taps.
        Value sum = f.c(0);
        SmallVector<int64_t> pick(spatial, 0);
        while (true) {
          SmallVector<Value> at;
          Value w = f.c(1);
          for (int64_t i = 0; i < spatial; ++i) {
            at.push_back(taps[i][pick[i]].first);
            w = f.mul(w, taps[i][pick[i]].second);
          }
          sum = f.add(sum, f.mul(w, pixel(at)));
          int64_t i = spatial - 1;
          while (i >= 0 && ++pick[i] == int64_t(taps[i].size()))
            pick[i--] = 0;
          if (i < 0)
            break;
        }
        return castScalar(b, loc, sum, element);
      });
  return ctx.setOutputs(out);
}

//===----------------------------------------------------------------------===//
// AffineGrid
//===----------------------------------------------------------------------===//

LogicalResult importAffineGrid(NodeContext &ctx) {
  Value theta = ctx.input(0);
  if (!theta)
    return failure();
  RankedTensorType thetaType = ctx.inputType(0);
  std::optional<std::vector<int64_t>> size = ctx.constantInts(1);
  if (!size)
    return failure();
  int64_t spatial = int64_t(size->size()) - 2;
  if ((spatial != 2 && spatial != 3) || !thetaType.hasStaticShape() ||
      thetaType.getRank() != 3 || thetaType.getDimSize(0) != (*size)[0] ||
      thetaType.getDimSize(1) != spatial ||
      thetaType.getDimSize(2) != spatial + 1 ||
      !isa<FloatType>(thetaType.getElementType()))
    return ctx.error() << "AffineGrid takes theta [N, 2, 3] with size [N, C, "
                          "H, W], or [N, 3, 4] with [N, C, D, H, W]; got "
                       << thetaType << " and " << size->size() << " sizes";
  bool align = ctx.intAttr("align_corners", 0) != 0;
  // Output [N, (D,) H, W, spatial]: component j is row j of theta times
  // (x, y, (z,) 1), x running along W.
  SmallVector<int64_t> outShape = {(*size)[0]};
  for (int64_t i = 0; i < spatial; ++i)
    outShape.push_back((*size)[2 + i]);
  outShape.push_back(spatial);
  Type element = thetaType.getElementType();
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Fx f{b, loc, computeType(element)};
        Value n = ivs[0], row = ivs[spatial + 1];
        // The base coordinate along each of x, y, (z): dims W, H, (D).
        Value sum = f.widen(tensor::ExtractOp::create(
            b, loc, theta,
            ValueRange{n, row, indexConstant(b, loc, spatial)}));
        for (int64_t j = 0; j < spatial; ++j) {
          int64_t dim = spatial - 1 - j; // x is the last spatial dim
          int64_t length = (*size)[2 + dim];
          Value i = f.fromIndex(ivs[1 + dim]);
          Value base;
          if (length == 1)
            base = f.c(align ? -1.0 : 0.0);
          else if (align)
            base = f.add(f.c(-1), f.mul(i, f.c(2.0 / double(length - 1))));
          else
            base = f.sub(f.div(f.add(f.mul(i, f.c(2)), f.c(1)),
                               f.c(double(length))),
                         f.c(1));
          Value t = f.widen(tensor::ExtractOp::create(
              b, loc, theta, ValueRange{n, row, indexConstant(b, loc, j)}));
          sum = f.add(sum, f.mul(t, base));
        }
        return castScalar(b, loc, sum, element);
      });
  return ctx.setOutputs(out);
}

//===----------------------------------------------------------------------===//
// CenterCropPad
//===----------------------------------------------------------------------===//

LogicalResult importCenterCropPad(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (!type.hasStaticShape())
    return ctx.error() << "CenterCropPad needs static shapes";
  std::optional<std::vector<int64_t>> shape = ctx.constantInts(1);
  if (!shape)
    return failure();
  int64_t rank = type.getRank();
  std::optional<std::vector<int64_t>> given = axesAttr(ctx, rank);
  if (!given)
    return failure();
  std::vector<int64_t> axes = std::move(*given);
  if (axes.size() != shape->size())
    return ctx.error() << "CenterCropPad has " << shape->size()
                       << " target sizes for " << axes.size() << " axes";
  // Per dim: the output size and the offset of the input in it (negative:
  // cropped, positive: padded), floor((out - in) / 2) either way.
  SmallVector<int64_t> outShape(type.getShape());
  SmallVector<int64_t> shift(rank, 0);
  for (auto [axis, target] : llvm::zip(axes, *shape)) {
    if (target < 0)
      return ctx.error() << "CenterCropPad target size " << target
                         << " is negative";
    int64_t in = type.getDimSize(axis);
    outShape[axis] = target;
    shift[axis] = target >= in ? (target - in) / 2 : -((in - target) / 2);
  }
  Type element = type.getElementType();
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at;
        Value inside;
        for (int64_t d = 0; d < rank; ++d) {
          Value i = arith::SubIOp::create(b, loc, ivs[d],
                                          indexConstant(b, loc, shift[d]));
          if (shift[d] > 0 || outShape[d] > type.getDimSize(d)) {
            Value ok = arith::AndIOp::create(
                b, loc,
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, i,
                                      indexConstant(b, loc, 0)),
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i,
                                      indexConstant(b, loc,
                                                    type.getDimSize(d))));
            inside = inside ? arith::AndIOp::create(b, loc, inside, ok)
                                  .getResult()
                            : ok;
            i = arith::MinSIOp::create(
                b, loc,
                arith::MaxSIOp::create(b, loc, i, indexConstant(b, loc, 0)),
                indexConstant(b, loc, type.getDimSize(d) - 1));
          }
          at.push_back(i);
        }
        Value v = tensor::ExtractOp::create(b, loc, x, at);
        if (!inside)
          return v;
        return arith::SelectOp::create(b, loc, inside, v,
                                       scalarConstant(b, loc, element, 0));
      });
  return ctx.setOutputs(out);
}

//===----------------------------------------------------------------------===//
// LRN
//===----------------------------------------------------------------------===//

LogicalResult importLRN(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (!type.hasStaticShape() || type.getRank() < 3 ||
      !isa<FloatType>(type.getElementType()))
    return ctx.error() << "LRN takes float data [N, C, ...] of static shape";
  int64_t size = ctx.intAttr("size", 0);
  if (size < 1)
    return ctx.error() << "LRN needs a positive size, got " << size;
  double alpha = ctx.floatAttr("alpha", 1e-4f);
  double beta = ctx.floatAttr("beta", 0.75f);
  double bias = ctx.floatAttr("bias", 1.0f);
  int64_t channels = type.getDimSize(1);
  int64_t before = (size - 1) / 2, after = size / 2; // ceil((size-1)/2)
  Type element = type.getElementType();
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Fx f{b, loc, computeType(element)};
        Value c = ivs[1];
        Value sum = f.c(0);
        SmallVector<Value> at(ivs.begin(), ivs.end());
        for (int64_t k = -before; k <= after; ++k) {
          Value j = arith::AddIOp::create(b, loc, c, indexConstant(b, loc, k));
          Value ok = arith::AndIOp::create(
              b, loc,
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, j,
                                    indexConstant(b, loc, 0)),
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, j,
                                    indexConstant(b, loc, channels)));
          at[1] = arith::MinSIOp::create(
              b, loc,
              arith::MaxSIOp::create(b, loc, j, indexConstant(b, loc, 0)),
              indexConstant(b, loc, channels - 1));
          Value v = f.widen(tensor::ExtractOp::create(b, loc, x, at));
          sum = f.add(sum, f.select(ok, f.mul(v, v), f.c(0)));
        }
        Value base =
            f.add(f.c(bias), f.mul(f.c(alpha / double(size)), sum));
        Value scale = math::PowFOp::create(b, loc, base, f.c(beta));
        at[1] = c;
        Value v = f.widen(tensor::ExtractOp::create(b, loc, x, at));
        return castScalar(b, loc, f.div(v, scale), element);
      });
  return ctx.setOutputs(out);
}

//===----------------------------------------------------------------------===//
// Col2Im
//===----------------------------------------------------------------------===//

/// Col2Im: blocks [N, C * prod(block), prod(L)] summed back into the image
/// [N, C, image...]: block position l along dim d covers pixel
/// l * stride - pad + k * dilation for kernel offset k. Each output pixel
/// gathers, per kernel offset (unrolled), the block that covers it, if any.
LogicalResult importCol2Im(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  std::optional<std::vector<int64_t>> image = ctx.constantInts(1);
  if (!image)
    return failure();
  std::optional<std::vector<int64_t>> block = ctx.constantInts(2);
  if (!block)
    return failure();
  int64_t spatial = image->size();
  if (!type.hasStaticShape() || type.getRank() != 3 || spatial < 1 ||
      int64_t(block->size()) != spatial)
    return ctx.error() << "Col2Im takes blocks [N, C x prod(block), L] of "
                          "static shape and image and block shapes of one "
                          "length, got "
                       << type;
  auto dilations = ctx.intsAttr("dilations")
                       .value_or(std::vector<int64_t>(spatial, 1));
  auto strides =
      ctx.intsAttr("strides").value_or(std::vector<int64_t>(spatial, 1));
  auto pads = ctx.intsAttr("pads").value_or(std::vector<int64_t>(2 * spatial, 0));
  if (int64_t(dilations.size()) != spatial || int64_t(strides.size()) != spatial ||
      int64_t(pads.size()) != 2 * spatial)
    return ctx.error() << "Col2Im's dilations and strides need " << spatial
                       << " values and its pads " << 2 * spatial;
  int64_t kernel = 1, blocks = 1;
  SmallVector<int64_t> counts;
  for (int64_t d = 0; d < spatial; ++d) {
    if ((*block)[d] < 1 || strides[d] < 1 || dilations[d] < 1)
      return ctx.error() << "Col2Im's block shape, strides and dilations "
                            "must be positive";
    int64_t count = ((*image)[d] + pads[d] + pads[spatial + d] -
                     dilations[d] * ((*block)[d] - 1) - 1) /
                        strides[d] +
                    1;
    if (count < 1)
      return ctx.error() << "Col2Im's blocks do not fit the image along dim "
                         << d;
    counts.push_back(count);
    kernel *= (*block)[d];
    blocks *= count;
  }
  if (type.getDimSize(1) % kernel || type.getDimSize(2) != blocks)
    return ctx.error() << "Col2Im input " << type << " does not hold "
                       << blocks << " blocks of " << kernel
                       << " elements per channel";
  SmallVector<int64_t> outShape = {type.getDimSize(0),
                                   type.getDimSize(1) / kernel};
  outShape.append(image->begin(), image->end());
  Type element = type.getElementType();
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto c = [&](int64_t v) { return indexConstant(b, loc, v); };
        Value sum = scalarConstant(b, loc, element, 0);
        SmallVector<int64_t> offset(spatial, 0);
        for (int64_t klin = 0; klin < kernel; ++klin) {
          // The block covering this pixel at kernel offset `offset`.
          Value valid, llin = c(0);
          for (int64_t d = 0; d < spatial; ++d) {
            Value t = arith::SubIOp::create(
                b, loc,
                arith::AddIOp::create(b, loc, ivs[2 + d], c(pads[d])),
                c(offset[d] * dilations[d]));
            Value l = arith::DivSIOp::create(b, loc, t, c(strides[d]));
            Value ok = arith::AndIOp::create(
                b, loc,
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, t,
                                      c(0)),
                arith::AndIOp::create(
                    b, loc,
                    arith::CmpIOp::create(
                        b, loc, arith::CmpIPredicate::eq,
                        arith::RemSIOp::create(b, loc, t, c(strides[d])), c(0)),
                    arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, l,
                                          c(counts[d]))));
            valid = valid ? arith::AndIOp::create(b, loc, valid, ok).getResult()
                          : ok;
            l = arith::MinSIOp::create(
                b, loc, arith::MaxSIOp::create(b, loc, l, c(0)),
                c(counts[d] - 1));
            llin = arith::AddIOp::create(
                b, loc, arith::MulIOp::create(b, loc, llin, c(counts[d])), l);
          }
          Value channel = arith::AddIOp::create(
              b, loc, arith::MulIOp::create(b, loc, ivs[1], c(kernel)),
              c(klin));
          Value v = tensor::ExtractOp::create(b, loc, x,
                                              ValueRange{ivs[0], channel, llin});
          Value term = arith::SelectOp::create(
              b, loc, valid, v, scalarConstant(b, loc, element, 0));
          sum = isa<FloatType>(element)
                    ? arith::AddFOp::create(b, loc, sum, term).getResult()
                    : arith::AddIOp::create(b, loc, sum, term).getResult();
          for (int64_t d = spatial - 1; d >= 0 && ++offset[d] == (*block)[d];
               --d)
            offset[d] = 0;
        }
        return sum;
      });
  return ctx.setOutputs(out);
}

//===----------------------------------------------------------------------===//
// MaxUnpool
//===----------------------------------------------------------------------===//

/// MaxUnpool: X's values placed at the flat positions I holds (MaxPool's
/// Indices: offsets in the whole unpooled tensor, whose shape is the
/// inverse of the pool's: (in - 1) * stride - pads + kernel), zeros
/// elsewhere; a larger `output_shape` (a constant) holds that tensor at its
/// start, as the reference places it. Each output element scans its (n, c)
/// plane of I for its own position (the last match wins): a gather,
/// O(plane) per element.
LogicalResult importMaxUnpool(NodeContext &ctx) {
  Value x = ctx.input(0), indices = ctx.input(1);
  if (!x || !indices)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank(), spatial = rank - 2;
  if (!type.hasStaticShape() || rank < 3 ||
      ctx.inputType(1).getShape() != type.getShape())
    return ctx.error() << "MaxUnpool takes X [N, C, ...] of static shape and "
                          "indices of the same shape";
  std::optional<std::vector<int64_t>> kernel = ctx.intsAttr("kernel_shape");
  if (!kernel || int64_t(kernel->size()) != spatial)
    return ctx.error() << "MaxUnpool needs kernel_shape with " << spatial
                       << " values";
  auto strides =
      ctx.intsAttr("strides").value_or(std::vector<int64_t>(spatial, 1));
  auto pads = ctx.intsAttr("pads").value_or(std::vector<int64_t>(2 * spatial, 0));
  if (int64_t(strides.size()) != spatial || int64_t(pads.size()) != 2 * spatial)
    return ctx.error() << "MaxUnpool's strides need " << spatial
                       << " values and its pads " << 2 * spatial;
  SmallVector<int64_t> inferred(type.getShape().take_front(2));
  for (int64_t d = 0; d < spatial; ++d)
    inferred.push_back((type.getDimSize(2 + d) - 1) * strides[d] - pads[d] -
                       pads[spatial + d] + (*kernel)[d]);
  SmallVector<int64_t> outShape = inferred;
  if (ctx.hasInput(2)) {
    std::optional<std::vector<int64_t>> given = ctx.constantInts(2);
    if (!given)
      return failure();
    bool fits = int64_t(given->size()) == rank &&
                (*given)[0] == type.getDimSize(0) &&
                (*given)[1] == type.getDimSize(1);
    for (int64_t d = 2; fits && d < rank; ++d)
      fits = (*given)[d] >= inferred[d];
    if (!fits)
      return ctx.error() << "output_shape must list the " << rank
                         << " dims, batch and channels as X's, each at "
                            "least the unpooled size";
    outShape.assign(given->begin(), given->end());
  }
  int64_t plane = 1;
  for (int64_t d = 0; d < spatial; ++d)
    plane *= type.getDimSize(2 + d);
  Type element = type.getElementType();
  Value flatX = buildReshape(ctx.b(), ctx.getLoc(), x,
                             {type.getDimSize(0), type.getDimSize(1), plane});
  Value flatI = buildReshape(ctx.b(), ctx.getLoc(), indices,
                             {type.getDimSize(0), type.getDimSize(1), plane});
  int64_t channels = outShape[1];
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto c = [&](int64_t v) { return indexConstant(b, loc, v); };
        // This element's flat offset in the unpooled tensor (-1 past it).
        Value flat = arith::AddIOp::create(
            b, loc, arith::MulIOp::create(b, loc, ivs[0], c(channels)), ivs[1]);
        Value inside;
        for (int64_t d = 0; d < spatial; ++d) {
          flat = arith::AddIOp::create(
              b, loc, arith::MulIOp::create(b, loc, flat, c(inferred[2 + d])),
              ivs[2 + d]);
          Value ok = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                           ivs[2 + d], c(inferred[2 + d]));
          inside =
              inside ? arith::AndIOp::create(b, loc, inside, ok).getResult() : ok;
        }
        Value target = arith::SelectOp::create(
            b, loc, inside,
            arith::IndexCastOp::create(b, loc, b.getI64Type(), flat),
            arith::ConstantIntOp::create(b, loc, -1, 64));
        auto loop = scf::ForOp::create(
            b, loc, c(0), c(plane), c(1),
            ValueRange{scalarConstant(b, loc, element, 0)});
        OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
        Value p = loop.getInductionVar();
        Value i = tensor::ExtractOp::create(lb, loc, flatI,
                                            ValueRange{ivs[0], ivs[1], p});
        Value hit = arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::eq,
                                          i, target);
        Value v = tensor::ExtractOp::create(lb, loc, flatX,
                                            ValueRange{ivs[0], ivs[1], p});
        scf::YieldOp::create(
            lb, loc,
            ValueRange{arith::SelectOp::create(lb, loc, hit, v,
                                               loop.getRegionIterArgs()[0])
                           .getResult()});
        return loop.getResult(0);
      });
  return ctx.setOutputs(out);
}

//===----------------------------------------------------------------------===//
// CausalConvWithState
//===----------------------------------------------------------------------===//

/// CausalConvWithState (27; state-space models' short convolution): a
/// depthwise causal 1-D convolution of input [B, C, L] with weight
/// [C, 1, k] over past_state [B, C, k - 1] (zeros without one) followed by
/// the input, plus bias, optionally SiLU; present_state is the last k - 1
/// positions of that padded sequence. Sums in f32 for narrower types,
/// rounded before the activation as the reference does.
LogicalResult importCausalConvWithState(NodeContext &ctx) {
  Value x = ctx.input(0), w = ctx.input(1);
  if (!x || !w)
    return failure();
  RankedTensorType type = ctx.inputType(0), wType = ctx.inputType(1);
  if (!type.hasStaticShape() || type.getRank() != 3 ||
      !isa<FloatType>(type.getElementType()) || !wType.hasStaticShape() ||
      wType.getRank() != 3 || wType.getDimSize(0) != type.getDimSize(1) ||
      wType.getDimSize(1) != 1 || wType.getDimSize(2) < 1)
    return ctx.error() << "CausalConvWithState takes float input [B, C, L] "
                          "and weight [C, 1, k] of static shapes, got "
                       << type << " and " << wType;
  Value bias = ctx.hasInput(2) ? ctx.input(2) : Value();
  Value past = ctx.hasInput(3) ? ctx.input(3) : Value();
  if ((ctx.hasInput(2) && !bias) || (ctx.hasInput(3) && !past))
    return failure();
  int64_t batch = type.getDimSize(0), channels = type.getDimSize(1),
          length = type.getDimSize(2), k = wType.getDimSize(2);
  if (bias && ctx.inputType(2).getShape() != ArrayRef<int64_t>{channels})
    return ctx.error() << "bias must be [" << channels << "], got "
                       << ctx.inputType(2);
  if (past && ctx.inputType(3).getShape() !=
                  ArrayRef<int64_t>{batch, channels, k - 1})
    return ctx.error() << "past_state must be [" << batch << ", " << channels
                       << ", " << k - 1 << "], got " << ctx.inputType(3);
  std::string activation = "none";
  if (const auto *attr = ctx.attr("activation"))
    activation = attr->s();
  if (activation != "none" && activation != "silu" && activation != "swish")
    return ctx.error() << "unknown activation '" << activation
                       << "' (expected none, silu or swish)";
  Type element = type.getElementType();
  // padded[b, c, p]: the past (or 0) for p < k - 1, then the input.
  auto padded = [&](OpBuilder &b, Location loc, Value bi, Value ci,
                    Value p) -> Value {
    Value fromInput = arith::SubIOp::create(b, loc, p, indexConstant(b, loc, k - 1));
    Value inPast = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, p,
                                         indexConstant(b, loc, k - 1));
    Value xi = arith::MinSIOp::create(
        b, loc,
        arith::MaxSIOp::create(b, loc, fromInput, indexConstant(b, loc, 0)),
        indexConstant(b, loc, length - 1));
    Value fromX = tensor::ExtractOp::create(b, loc, x, ValueRange{bi, ci, xi});
    Value before = scalarConstant(b, loc, element, 0);
    if (past && k > 1) {
      Value pi = arith::MinSIOp::create(b, loc, p, indexConstant(b, loc, k - 2));
      before = tensor::ExtractOp::create(b, loc, past, ValueRange{bi, ci, pi});
    }
    return arith::SelectOp::create(b, loc, inPast, before, fromX);
  };
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Fx f{b, loc, computeType(element)};
        Value sum = bias ? f.widen(tensor::ExtractOp::create(
                               b, loc, bias, ValueRange{ivs[1]}))
                         : f.c(0);
        for (int64_t j = 0; j < k; ++j) {
          Value p = arith::AddIOp::create(b, loc, ivs[2], indexConstant(b, loc, j));
          Value wj = tensor::ExtractOp::create(
              b, loc, w,
              ValueRange{ivs[1], indexConstant(b, loc, 0), indexConstant(b, loc, j)});
          sum = f.add(sum, f.mul(f.widen(wj),
                                 f.widen(padded(b, loc, ivs[0], ivs[1], p))));
        }
        Value y = castScalar(b, loc, sum, element);
        if (activation == "none")
          return y;
        Value v = f.widen(y);
        return castScalar(b, loc, f.mul(v, scalarSigmoid(b, loc, v)), element);
      });
  SmallVector<int64_t> stateShape = {batch, channels, k - 1};
  Value state =
      k == 1 ? buildEmptyConstant(ctx.b(), ctx.getLoc(), stateShape, element)
             : buildIndexed(ctx.b(), ctx.getLoc(), stateShape, element,
                            [&](OpBuilder &b, Location loc, ValueRange ivs) {
                              Value p = arith::AddIOp::create(
                                  b, loc, ivs[2], indexConstant(b, loc, length));
                              return padded(b, loc, ivs[0], ivs[1], p);
                            });
  return ctx.setOutputs({out, state});
}

/// DeformConv (19, 2-D): a convolution whose kernel taps are displaced per
/// output position by `offset` [N, offset_group * kH * kW * 2, oH, oW]
/// ((dy, dx) per tap) and optionally weighted by `mask` [N, offset_group *
/// kH * kW, oH, oW]; X is read bilinearly at the displaced points, zero
/// outside. Each output element sums its group's channels and taps in a
/// loop (scf.for), in f32 for narrower types.
LogicalResult importDeformConv(NodeContext &ctx) {
  Value x = ctx.input(0), w = ctx.input(1), offset = ctx.input(2);
  if (!x || !w || !offset)
    return failure();
  RankedTensorType xType = ctx.inputType(0), wType = ctx.inputType(1),
                   oType = ctx.inputType(2);
  Type element = xType.getElementType();
  if (!isa<FloatType>(element) || xType.getRank() != 4 || wType.getRank() != 4 ||
      oType.getRank() != 4 || wType.getElementType() != element ||
      oType.getElementType() != element)
    return ctx.error() << "DeformConv takes float X [N, C, H, W], W [M, C/group, "
                          "kH, kW] and offset [N, offset_group * kH * kW * 2, "
                          "oH, oW] of one type (2-D only), got "
                       << xType << ", " << wType << " and " << oType;
  ArrayRef<int64_t> xs = xType.getShape(), ws = wType.getShape(),
                    os = oType.getShape();
  int64_t group = ctx.intAttr("group", 1),
          offsetGroup = ctx.intAttr("offset_group", 1);
  int64_t channels = xs[1], filters = ws[0], kh = ws[2], kw = ws[3];
  if (group <= 0 || offsetGroup <= 0 || channels % group || filters % group ||
      ws[1] * group != channels || channels % offsetGroup)
    return ctx.error() << "group " << group << " and offset_group "
                       << offsetGroup << " do not split X's " << channels
                       << " channels and W's " << filters << " filters";
  if (os[0] != xs[0] || os[1] != offsetGroup * kh * kw * 2)
    return ctx.error() << "offset " << oType << " must be [" << xs[0] << ", "
                       << offsetGroup * kh * kw * 2 << ", oH, oW]";
  std::optional<WindowAttrs> window = readWindowAttrs(ctx, 2);
  if (!window)
    return failure();
  const std::vector<int64_t> &strides = window->strides,
                             &dilations = window->dilations, &pads = window->pads;
  int64_t oh = os[2], ow = os[3];
  for (int64_t i = 0; i < 2; ++i) {
    int64_t extent = dilations[i] * ((i ? kw : kh) - 1) + 1;
    int64_t out = (xs[2 + i] + pads[i] + pads[2 + i] - extent) / strides[i] + 1;
    if (out != os[2 + i])
      return ctx.error() << "offset's spatial size " << os[2 + i] << " (dim "
                         << i << ") is not the convolution's " << out;
  }
  Value bias, mask;
  if (ctx.hasInput(3)) {
    bias = ctx.input(3);
    if (!bias)
      return failure();
    if (ctx.inputType(3) != RankedTensorType::get({filters}, element))
      return ctx.error() << "B must be [" << filters << "] of " << element;
  }
  if (ctx.hasInput(4)) {
    mask = ctx.input(4);
    if (!mask)
      return failure();
    if (ctx.inputType(4) !=
        RankedTensorType::get({xs[0], offsetGroup * kh * kw, oh, ow}, element))
      return ctx.error() << "mask " << ctx.inputType(4) << " must be ["
                         << xs[0] << ", " << offsetGroup * kh * kw << ", "
                         << oh << ", " << ow << "]";
  }
  int64_t perGroup = channels / group, filtersPerGroup = filters / group,
          perOffsetGroup = channels / offsetGroup;
  Type compute = computeType(element);
  Value y = buildIndexed(
      ctx.b(), ctx.getLoc(), {xs[0], filters, oh, ow}, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Fx f{b, loc, compute};
        auto idx = [&](int64_t v) { return indexConstant(b, loc, v); };
        Value n = ivs[0], m = ivs[1], i = ivs[2], j = ivs[3];
        Value firstChannel = arith::MulIOp::create(
            b, loc, arith::DivUIOp::create(b, loc, m, idx(filtersPerGroup)),
            idx(perGroup));
        Value init = bias ? f.widen(tensor::ExtractOp::create(b, loc, bias, ValueRange{m}))
                          : f.c(0);
        auto loop = scf::ForOp::create(b, loc, idx(0), idx(perGroup * kh * kw),
                                       idx(1), ValueRange{init});
        OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
        Fx g{lb, loc, compute};
        auto lidx = [&](int64_t v) { return indexConstant(lb, loc, v); };
        Value step = loop.getInductionVar();
        Value tap = arith::RemUIOp::create(lb, loc, step, lidx(kh * kw));
        Value c = arith::DivUIOp::create(lb, loc, step, lidx(kh * kw));
        Value ty = arith::DivUIOp::create(lb, loc, tap, lidx(kw));
        Value tx = arith::RemUIOp::create(lb, loc, tap, lidx(kw));
        Value channel = arith::AddIOp::create(lb, loc, firstChannel, c);
        Value og = arith::DivUIOp::create(lb, loc, channel, lidx(perOffsetGroup));
        // Tap (og, ty, tx): offset channels 2 t and 2 t + 1, mask channel t.
        Value t = arith::AddIOp::create(
            lb, loc, arith::MulIOp::create(lb, loc, og, lidx(kh * kw)), tap);
        Value t2 = arith::MulIOp::create(lb, loc, t, lidx(2));
        Value dy = g.widen(tensor::ExtractOp::create(lb, loc, offset, ValueRange{n, t2, i, j}));
        Value dx = g.widen(tensor::ExtractOp::create(
            lb, loc, offset,
            ValueRange{n, arith::AddIOp::create(lb, loc, t2, lidx(1)), i, j}));
        // The displaced point: o * stride - pad + k * dilation + d.
        auto base = [&](Value o, Value k, int64_t dim) {
          Value p = arith::AddIOp::create(
              lb, loc, arith::MulIOp::create(lb, loc, o, lidx(strides[dim])),
              arith::MulIOp::create(lb, loc, k, lidx(dilations[dim])));
          return g.sub(g.fromIndex(p), g.c(double(pads[dim])));
        };
        Value py = g.add(base(i, ty, 0), dy), px = g.add(base(j, tx, 1), dx);
        Value y0 = g.floor(py), x0 = g.floor(px);
        Value fy = g.sub(py, y0), fx = g.sub(px, x0);
        // Bilinear over the four corners, zero outside X.
        Value sum = g.c(0);
        for (int64_t cy = 0; cy < 2; ++cy)
          for (int64_t cx = 0; cx < 2; ++cx) {
            Value yy = g.add(y0, g.c(double(cy))), xx = g.add(x0, g.c(double(cx)));
            Value inside = arith::AndIOp::create(
                lb, loc,
                arith::AndIOp::create(lb, loc, g.lt(yy, g.c(double(xs[2]))),
                                      arith::CmpFOp::create(lb, loc, arith::CmpFPredicate::OGE,
                                                            yy, g.c(0))),
                arith::AndIOp::create(lb, loc, g.lt(xx, g.c(double(xs[3]))),
                                      arith::CmpFOp::create(lb, loc, arith::CmpFPredicate::OGE,
                                                            xx, g.c(0))));
            Value v = g.widen(tensor::ExtractOp::create(
                lb, loc, x,
                ValueRange{n, channel, g.toIndex(g.clamp(yy, 0, double(xs[2] - 1))),
                           g.toIndex(g.clamp(xx, 0, double(xs[3] - 1)))}));
            Value wy = cy ? fy : g.sub(g.c(1), fy), wx = cx ? fx : g.sub(g.c(1), fx);
            sum = g.add(sum, g.select(inside, g.mul(g.mul(wy, wx), v), g.c(0)));
          }
        Value weight = g.widen(tensor::ExtractOp::create(lb, loc, w, ValueRange{m, c, ty, tx}));
        Value term = g.mul(sum, weight);
        if (mask)
          term = g.mul(term, g.widen(tensor::ExtractOp::create(lb, loc, mask,
                                                               ValueRange{n, t, i, j})));
        scf::YieldOp::create(lb, loc, ValueRange{g.add(loop.getRegionIterArgs()[0], term)});
        Value result = loop.getResult(0);
        return result.getType() == element ? result : castScalar(b, loc, result, element);
      });
  return ctx.setOutputs(y);
}

/// RoiAlign (10, 16): per region of interest [x1, y1, x2, y2] (scaled by
/// spatial_scale, shifted by half a pixel for half_pixel), each output bin
/// averages (or takes the max of) a grid of bilinear samples of its batch
/// row's channel, the grid sampling_ratio per side or, with 0, as many as
/// the bin is pixels tall and wide (read from the region at run time: the
/// sample loops have run-time bounds). Samples off the image by more than a
/// pixel count 0; the reference's clamping at the far border is kept.
LogicalResult importRoiAlign(NodeContext &ctx) {
  Value x = ctx.input(0), rois = ctx.input(1), batchIndices = ctx.input(2);
  if (!x || !rois || !batchIndices)
    return failure();
  RankedTensorType xType = ctx.inputType(0), rType = ctx.inputType(1),
                   bType = ctx.inputType(2);
  Type element = xType.getElementType();
  if (!isa<FloatType>(element) || xType.getRank() != 4 || rType.getRank() != 2 ||
      rType.getDimSize(1) != 4 || rType.getElementType() != element ||
      bType.getRank() != 1 || bType.getDimSize(0) != rType.getDimSize(0) ||
      !bType.getElementType().isInteger(64))
    return ctx.error() << "RoiAlign takes float X [N, C, H, W], rois [R, 4] of "
                          "its type and int64 batch_indices [R], got "
                       << xType << ", " << rType << " and " << bType;
  std::string mode = ctx.attr("mode") ? ctx.attr("mode")->s() : "avg";
  std::string transform =
      ctx.attr("coordinate_transformation_mode")
          ? ctx.attr("coordinate_transformation_mode")->s()
          : (ctx.getOpset() >= 16 ? "half_pixel" : "output_half_pixel");
  if (mode != "avg" && mode != "max")
    return ctx.error() << "mode '" << mode << "' is not avg or max";
  if (transform != "half_pixel" && transform != "output_half_pixel")
    return ctx.error() << "coordinate_transformation_mode '" << transform
                       << "' is not half_pixel or output_half_pixel";
  int64_t oh = ctx.intAttr("output_height", 1), ow = ctx.intAttr("output_width", 1),
          ratio = ctx.intAttr("sampling_ratio", 0);
  double scale = ctx.floatAttr("spatial_scale", 1.0f);
  if (oh < 1 || ow < 1 || ratio < 0)
    return ctx.error() << "output_height and output_width must be positive and "
                          "sampling_ratio not negative";
  bool halfPixel = transform == "half_pixel", isMax = mode == "max";
  int64_t height = xType.getDimSize(2), width = xType.getDimSize(3);
  Type compute = computeType(element);
  Value y = buildIndexed(
      ctx.b(), ctx.getLoc(), {rType.getDimSize(0), xType.getDimSize(1), oh, ow},
      element, [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Fx f{b, loc, compute};
        Value r = ivs[0], c = ivs[1];
        Value batch = arith::IndexCastOp::create(
            b, loc, b.getIndexType(),
            tensor::ExtractOp::create(b, loc, batchIndices, ValueRange{r}));
        auto roi = [&](int64_t k) {
          Value v = f.widen(tensor::ExtractOp::create(
              b, loc, rois, ValueRange{r, indexConstant(b, loc, k)}));
          return f.sub(f.mul(v, f.c(scale)), f.c(halfPixel ? 0.5 : 0.0));
        };
        Value startW = roi(0), startH = roi(1);
        Value roiW = f.sub(roi(2), startW), roiH = f.sub(roi(3), startH);
        if (!halfPixel) {
          roiW = arith::MaximumFOp::create(b, loc, roiW, f.c(1));
          roiH = arith::MaximumFOp::create(b, loc, roiH, f.c(1));
        }
        Value binH = f.div(roiH, f.c(double(oh))), binW = f.div(roiW, f.c(double(ow)));
        auto grid = [&](Value extent, int64_t bins) -> Value {
          if (ratio > 0)
            return f.c(double(ratio));
          return math::CeilOp::create(b, loc, f.div(extent, f.c(double(bins))));
        };
        Value gridH = grid(roiH, oh), gridW = grid(roiW, ow);
        auto toCount = [&](Value v) {
          return f.toIndex(arith::MaximumFOp::create(b, loc, v, f.c(0)));
        };
        Value count = arith::MaximumFOp::create(b, loc, f.mul(gridH, gridW), f.c(1));
        Value baseH = f.add(startH, f.mul(f.fromIndex(ivs[2]), binH));
        Value baseW = f.add(startW, f.mul(f.fromIndex(ivs[3]), binW));
        Value none = arith::ConstantIntOp::create(b, loc, 0, 1);
        Value rowsOfGrid = toCount(gridH), columnsOfGrid = toCount(gridW);
        auto outer = scf::ForOp::create(b, loc, indexConstant(b, loc, 0), rowsOfGrid,
                                        indexConstant(b, loc, 1),
                                        ValueRange{f.c(0), none});
        {
          OpBuilder ob = OpBuilder::atBlockBegin(outer.getBody());
          Fx g{ob, loc, compute};
          Value yy = g.add(baseH, g.div(g.mul(g.add(g.fromIndex(outer.getInductionVar()),
                                                    g.c(0.5)),
                                              binH),
                                        gridH));
          auto inner = scf::ForOp::create(ob, loc, indexConstant(ob, loc, 0), columnsOfGrid,
                                          indexConstant(ob, loc, 1),
                                          outer.getRegionIterArgs());
          OpBuilder ib = OpBuilder::atBlockBegin(inner.getBody());
          Fx h{ib, loc, compute};
          Value xx = h.add(baseW, h.div(h.mul(h.add(h.fromIndex(inner.getInductionVar()),
                                                    h.c(0.5)),
                                              binW),
                                        gridW));
          Value off = arith::OrIOp::create(
              ib, loc,
              arith::OrIOp::create(ib, loc, h.lt(yy, h.c(-1)), h.gt(yy, h.c(double(height)))),
              arith::OrIOp::create(ib, loc, h.lt(xx, h.c(-1)), h.gt(xx, h.c(double(width)))));
          // Low and high taps along one axis, and the fraction past the low.
          auto taps = [&](Value p, int64_t size) {
            p = arith::MaximumFOp::create(ib, loc, p, h.c(0));
            Value low = math::FloorOp::create(ib, loc, p);
            Value atEnd = arith::CmpFOp::create(ib, loc, arith::CmpFPredicate::OGE, low,
                                                h.c(double(size - 1)));
            Value last = h.c(double(size - 1));
            low = h.select(atEnd, last, low);
            Value high = h.select(atEnd, last, h.add(low, h.c(1)));
            Value frac = h.select(atEnd, h.c(0), h.sub(p, low));
            return std::make_tuple(h.toIndex(low), h.toIndex(high), frac);
          };
          auto [y0, y1, ly] = taps(yy, height);
          auto [x0, x1, lx] = taps(xx, width);
          Value hy = h.sub(h.c(1), ly), hx = h.sub(h.c(1), lx);
          auto at = [&](Value py, Value px) {
            return h.widen(tensor::ExtractOp::create(ib, loc, x, ValueRange{batch, c, py, px}));
          };
          Value t1 = h.mul(h.mul(hy, hx), at(y0, x0)), t2 = h.mul(h.mul(hy, lx), at(y0, x1)),
                t3 = h.mul(h.mul(ly, hx), at(y1, x0)), t4 = h.mul(h.mul(ly, lx), at(y1, x1));
          Value sample;
          if (isMax)
            sample = arith::MaximumFOp::create(
                ib, loc, arith::MaximumFOp::create(ib, loc, t1, t2),
                arith::MaximumFOp::create(ib, loc, t3, t4));
          else
            sample = h.add(h.add(t1, t2), h.add(t3, t4));
          sample = h.select(off, h.c(0), sample);
          Value acc = inner.getRegionIterArgs()[0], seen = inner.getRegionIterArgs()[1];
          Value next = isMax ? h.select(seen, arith::MaximumFOp::create(ib, loc, acc, sample),
                                        sample)
                             : h.add(acc, sample);
          scf::YieldOp::create(ib, loc,
                               ValueRange{next, arith::ConstantIntOp::create(ib, loc, 1, 1)});
          scf::YieldOp::create(ob, loc, inner.getResults());
        }
        Value result = outer.getResult(0);
        if (!isMax)
          result = f.div(result, count);
        return result.getType() == element ? result : castScalar(b, loc, result, element);
      });
  return ctx.setOutputs(y);
}

} // namespace

void registerSpatialOps(OpRegistry &registry) {
  registry.on("CausalConvWithState", 27, importCausalConvWithState);
  registry.on("MaxUnpool", 9, importMaxUnpool);
  registry.on("Col2Im", 18, importCol2Im);
  registry.on("GridSample", 16, importGridSample);
  registry.on("AffineGrid", 20, importAffineGrid);
  registry.on("CenterCropPad", 18, importCenterCropPad);
  registry.on("LRN", 1, importLRN);
  registry.on("DeformConv", 19, importDeformConv);
  registry.on("RoiAlign", 10, importRoiAlign);
}

} // namespace kiln::onnx
