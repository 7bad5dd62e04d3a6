//===- OpsResize.cpp - ONNX Resize (11+) ----------------------------------===//
//
// Resize is separable and its shapes and scales are static, so everything
// that depends only on an output index along one axis is worked out here,
// in double precision exactly as the reference does it: the source
// coordinate of each output index (per coordinate_transformation_mode), the
// taps that interpolate it (2 for nearest and linear, 4 for cubic; indices
// clamped to the edge, exclude_outside renormalizing) and their weights.
// Those per-axis tables become small constants, and the kernel sums, per
// output element, the weighted taps of every resized axis.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;

namespace kiln::onnx {
namespace {

/// The taps of one resized axis: for each output index, `taps` input
/// indices and weights, and whether it lies outside the input
/// (tf_crop_and_resize extrapolation).
struct AxisTable {
  int64_t taps = 0;
  std::vector<int64_t> index;
  std::vector<double> weight;
  std::vector<double> inside;
};

struct ResizeParams {
  std::string mode, transform, nearestMode;
  double cubicA = -0.75;
  bool excludeOutside = false;
  /// Downsampling through the kernel stretched by 1 / scale (linear and
  /// cubic), normalized: antialias = 1.
  bool antialias = false;
};

/// The antialiased kernel's weights around a point `ratio` past a sample,
/// at `scale` (at most 1): the kernel (triangle, or Keys' cubic) read at
/// scale * (i - ratio) for the taps its support covers, normalized to sum 1
/// (the reference's _linear_coeffs_antialias / _cubic_coeffs_antialias).
std::vector<double> antialiasCoefficients(const ResizeParams &p, double ratio,
                                          double scale) {
  scale = std::min(scale, 1.0);
  bool cubic = p.mode == "cubic";
  double support = cubic ? 2 : 1;
  auto kernel = [&](double x) {
    x = std::abs(x);
    if (!cubic)
      return std::clamp(1 - x, 0.0, 1.0);
    double a = p.cubicA, x2 = x * x, x3 = x2 * x;
    if (x <= 1)
      return (a + 2) * x3 - (a + 3) * x2 + 1;
    if (x < 2)
      return a * x3 - 5 * a * x2 + 8 * a * x - 4 * a;
    return 0.0;
  };
  int64_t start = int64_t(std::floor(-support / scale) + 1);
  int64_t end = 2 - start; // exclusive, as the reference
  std::vector<double> c;
  double sum = 0;
  for (int64_t i = start; i < end; ++i) {
    c.push_back(kernel(scale * (double(i) - ratio)));
    sum += c.back();
  }
  for (double &v : c)
    v /= sum;
  return c;
}

std::vector<double> coefficients(const ResizeParams &p, double ratio,
                                 double scale) {
  if (p.antialias && p.mode != "nearest")
    return antialiasCoefficients(p, ratio, scale);
  if (p.mode == "nearest") {
    if (ratio == std::floor(ratio))
      return {0, 1};
    if (p.nearestMode == "round_prefer_ceil")
      return {ratio < 0.5 ? 1.0 : 0.0, ratio >= 0.5 ? 1.0 : 0.0};
    if (p.nearestMode == "floor")
      return {1, 0};
    if (p.nearestMode == "ceil")
      return {0, 1};
    return {ratio <= 0.5 ? 1.0 : 0.0, ratio > 0.5 ? 1.0 : 0.0};
  }
  if (p.mode == "linear")
    return {1 - ratio, ratio};
  double a = p.cubicA, r = ratio, s = 1 - ratio;
  return {((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
          ((a + 2) * r - (a + 3)) * r * r + 1,
          ((a + 2) * s - (a + 3)) * s * s + 1,
          ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a};
}

AxisTable buildAxisTable(const ResizeParams &p, int64_t in, int64_t out,
                         double scale, double roiStart, double roiEnd) {
  AxisTable t;
  double outWidth = scale * static_cast<double>(in);
  for (int64_t y = 0; y < out; ++y) {
    double yd = static_cast<double>(y), x;
    bool inside = true;
    if (p.transform == "align_corners") {
      x = outWidth == 1 ? 0 : yd * (in - 1) / (outWidth - 1);
    } else if (p.transform == "asymmetric") {
      x = yd / scale;
    } else if (p.transform == "tf_crop_and_resize") {
      x = outWidth == 1 ? (roiEnd - roiStart) * (in - 1) / 2
                        : yd * (roiEnd - roiStart) * (in - 1) / (outWidth - 1);
      x += roiStart * (in - 1);
      inside = !(x < 0 || x > in - 1);
    } else if (p.transform == "pytorch_half_pixel") {
      x = outWidth == 1 ? -0.5 : (yd + 0.5) / scale - 0.5;
    } else if (p.transform == "half_pixel_symmetric") {
      double adjustment = static_cast<double>(out) / outWidth;
      double center = static_cast<double>(in) / 2;
      x = center * (1 - adjustment) + (yd + 0.5) / scale - 0.5;
    } else { // half_pixel
      x = (yd + 0.5) / scale - 0.5;
    }
    double xi = std::floor(x);
    double ratio = x == xi ? 1.0 : x - xi;
    std::vector<double> c = coefficients(p, ratio, scale);
    int64_t n = c.size(), pad = (n + 1) / 2;
    double padded = x + pad;
    double pp = std::floor(padded), frac = padded - pp;
    int64_t offset = n % 2 == 0 ? (frac == 0 ? -(n / 2) : -(n / 2) + 1)
                                : (frac <= 0.5 ? -((n - 1) / 2) : -((n - 1) / 2) + 1);
    int64_t start = static_cast<int64_t>(pp) + offset - pad;
    if (p.excludeOutside) {
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) {
        if (start + k < 0 || start + k >= in)
          c[k] = 0;
        sum += c[k];
      }
      for (double &v : c)
        v /= sum == 0 ? 1 : sum;
    }
    t.taps = n;
    for (int64_t k = 0; k < n; ++k) {
      t.index.push_back(std::clamp<int64_t>(start + k, 0, in - 1));
      t.weight.push_back(c[k]);
    }
    t.inside.push_back(inside ? 1 : 0);
  }
  return t;
}

Value constantTable(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
                    Type element, ArrayRef<double> values) {
  auto type = RankedTensorType::get(shape, element);
  SmallVector<Attribute> attrs;
  for (double v : values)
    attrs.push_back(b.getFloatAttr(element, v));
  return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(type, attrs));
}

/// Resize (11 on), or the deprecated Upsample (7: scales attribute; 9:
/// scales input), which is Resize with asymmetric coordinates, nearest
/// reading floor(i / scale), and scales for every axis.
LogicalResult importResize(NodeContext &ctx, bool upsample) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  if (!isa<FloatType>(element))
    return ctx.error() << "Resize takes float data, got " << x.getType();
  int64_t rank = type.getRank();
  ArrayRef<int64_t> shape = type.getShape();
  auto strAttr = [&](const char *name, const char *fallback) {
    const kiln_onnx::AttributeProto *a = ctx.attr(name);
    return a ? a->s() : std::string(fallback);
  };
  ResizeParams p;
  p.mode = strAttr("mode", "nearest");
  p.transform = upsample ? "asymmetric"
                         : strAttr("coordinate_transformation_mode", "half_pixel");
  p.nearestMode = upsample ? "floor" : strAttr("nearest_mode", "round_prefer_floor");
  if (upsample && p.mode == "bilinear")
    p.mode = "linear";
  p.cubicA = ctx.floatAttr("cubic_coeff_a", -0.75f);
  p.excludeOutside = ctx.intAttr("exclude_outside", 0) != 0;
  std::string policy = strAttr("keep_aspect_ratio_policy", "stretch");
  if (p.mode != "nearest" && p.mode != "linear" && p.mode != "cubic")
    return ctx.error() << "unknown mode '" << p.mode << "'";
  p.antialias = ctx.intAttr("antialias", 0) != 0;
  if (p.antialias && p.mode == "nearest")
    return ctx.error() << "antialias applies to the linear and cubic modes, "
                          "not nearest";
  static const char *transforms[] = {"half_pixel", "half_pixel_symmetric",
                                     "pytorch_half_pixel", "align_corners",
                                     "asymmetric", "tf_crop_and_resize"};
  if (!llvm::is_contained(transforms, p.transform))
    return ctx.error() << "unknown coordinate_transformation_mode '" << p.transform << "'";
  static const char *nearestModes[] = {"round_prefer_floor", "round_prefer_ceil",
                                       "floor", "ceil"};
  if (!llvm::is_contained(nearestModes, p.nearestMode))
    return ctx.error() << "unknown nearest_mode '" << p.nearestMode << "'";
  // The resized axes.
  std::optional<std::vector<int64_t>> axesGiven = axesAttr(ctx, rank);
  if (!axesGiven)
    return failure();
  std::vector<int64_t> axes = std::move(*axesGiven);
  int64_t naxes = axes.size();
  // Constant roi, scales or sizes (an empty tensor counts as absent).
  auto floats = [&](int i) -> std::optional<std::vector<double>> {
    if (!ctx.hasInput(i))
      return std::vector<double>();
    auto attr = dyn_cast_or_null<DenseElementsAttr>(ctx.constantElements(i));
    if (!attr) {
      ctx.error() << "input #" << i << " '" << ctx.getNode().input(i)
                  << "' must be a constant (an initializer or a Constant node)"
                  << ctx.freezeHint(i);
      return std::nullopt;
    }
    std::vector<double> v;
    if (isa<FloatType>(attr.getElementType()))
      for (const APFloat &f : attr.getValues<APFloat>())
        v.push_back(f.convertToDouble());
    else
      for (const APInt &n : attr.getValues<APInt>())
        v.push_back(static_cast<double>(n.getSExtValue()));
    return v;
  };
  std::optional<std::vector<double>> roi = std::vector<double>(),
                                     scales, sizes = std::vector<double>();
  if (!upsample) {
    roi = floats(1);
    scales = floats(2);
    sizes = floats(3);
  } else if (ctx.getOpset() >= 9) {
    scales = floats(1);
  } else {
    scales.emplace();
    if (const kiln_onnx::AttributeProto *a = ctx.attr("scales"))
      scales->assign(a->floats().begin(), a->floats().end());
  }
  if (!roi || !scales || !sizes)
    return failure();
  if (scales->empty() == sizes->empty())
    return ctx.error() << "exactly one of scales and sizes must be given";
  if (!scales->empty() && static_cast<int64_t>(scales->size()) != naxes)
    return ctx.error() << "scales must have " << naxes << " values";
  if (!sizes->empty() && static_cast<int64_t>(sizes->size()) != naxes)
    return ctx.error() << "sizes must have " << naxes << " values";
  std::vector<double> scale(rank, 1.0);
  SmallVector<int64_t> outShape(shape.begin(), shape.end());
  if (!scales->empty()) {
    for (int64_t i = 0; i < naxes; ++i) {
      scale[axes[i]] = (*scales)[i];
      if ((*scales)[i] <= 0)
        return ctx.error() << "scales must be positive";
      outShape[axes[i]] = static_cast<int64_t>((*scales)[i] * shape[axes[i]]);
    }
  } else {
    for (int64_t i = 0; i < naxes; ++i) {
      scale[axes[i]] = (*sizes)[i] / shape[axes[i]];
      outShape[axes[i]] = static_cast<int64_t>((*sizes)[i]);
    }
    if (policy == "not_larger" || policy == "not_smaller") {
      double s = scale[axes[0]];
      for (int64_t a : axes)
        s = policy == "not_larger" ? std::min(s, scale[a]) : std::max(s, scale[a]);
      for (int64_t a : axes) {
        scale[a] = s;
        outShape[a] = static_cast<int64_t>(s * shape[a] + 0.5);
      }
    } else if (policy != "stretch") {
      return ctx.error() << "unknown keep_aspect_ratio_policy '" << policy << "'";
    }
  }
  for (int64_t a : axes)
    if (shape[a] == 0 || outShape[a] <= 0)
      return ctx.error() << "dim " << a << " resizes from " << shape[a] << " to "
                         << outShape[a] << "; empty tensors are not supported";
  std::vector<double> roiStart(rank, 0), roiEnd(rank, 1);
  if (p.transform == "tf_crop_and_resize") {
    if (static_cast<int64_t>(roi->size()) != 2 * naxes)
      return ctx.error() << "roi must have " << 2 * naxes << " values";
    for (int64_t i = 0; i < naxes; ++i) {
      roiStart[axes[i]] = (*roi)[i];
      roiEnd[axes[i]] = (*roi)[naxes + i];
    }
  }
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  // Axes that change; an axis with scale 1, the same size and the whole roi
  // is left alone, as the reference does.
  struct Resized {
    int64_t axis;
    AxisTable table;
    Value index, weight, inside;
  };
  SmallVector<Resized> resized;
  for (int64_t a : axes) {
    if (scale[a] == 1.0 && outShape[a] == shape[a] && roiStart[a] == 0 && roiEnd[a] == 1)
      continue;
    Resized r{a, buildAxisTable(p, shape[a], outShape[a], scale[a], roiStart[a],
                                roiEnd[a]),
              {}, {}, {}};
    SmallVector<int64_t> tableShape = {outShape[a], r.table.taps};
    auto indexType = RankedTensorType::get(tableShape, b.getI64Type());
    r.index = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(indexType, ArrayRef<int64_t>(r.table.index)));
    r.weight = constantTable(b, loc, tableShape, element, r.table.weight);
    r.inside = constantTable(b, loc, {outShape[a]}, element, r.table.inside);
    resized.push_back(std::move(r));
  }
  if (resized.empty())
    return ctx.setOutputs(x);
  double extrapolation = ctx.floatAttr("extrapolation_value", 0.0f);
  bool extrapolates = p.transform == "tf_crop_and_resize";
  Value y = buildIndexed(
      b, loc, outShape, element, [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
        Value acc = scalarConstant(nb, nl, element, 0);
        int64_t combos = 1;
        for (const Resized &r : resized)
          combos *= r.table.taps;
        // Every combination of taps, unrolled (at most 4^rank).
        for (int64_t combo = 0; combo < combos; ++combo) {
          SmallVector<Value> at(ivs.begin(), ivs.end());
          Value w = scalarConstant(nb, nl, element, 1);
          int64_t rest = combo;
          for (const Resized &r : resized) {
            Value tap = arith::ConstantIndexOp::create(nb, nl, rest % r.table.taps);
            rest /= r.table.taps;
            Value i = tensor::ExtractOp::create(nb, nl, r.index,
                                                ValueRange{ivs[r.axis], tap});
            at[r.axis] = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), i);
            w = arith::MulFOp::create(
                nb, nl, w,
                tensor::ExtractOp::create(nb, nl, r.weight, ValueRange{ivs[r.axis], tap}));
          }
          Value v = tensor::ExtractOp::create(nb, nl, x, at);
          acc = arith::AddFOp::create(nb, nl, acc, arith::MulFOp::create(nb, nl, v, w));
        }
        if (!extrapolates)
          return acc;
        Value inside = scalarConstant(nb, nl, element, 1);
        for (const Resized &r : resized)
          inside = arith::MulFOp::create(
              nb, nl, inside, tensor::ExtractOp::create(nb, nl, r.inside, ValueRange{ivs[r.axis]}));
        Value isInside = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, inside,
                                               scalarConstant(nb, nl, element, 1));
        return arith::SelectOp::create(nb, nl, isInside, acc,
                                       scalarConstant(nb, nl, element, extrapolation));
      });
  return ctx.setOutputs(y);
}

} // namespace

void registerResizeOps(OpRegistry &registry) {
  registry.on("Resize", 11,
              [](NodeContext &ctx) { return importResize(ctx, false); });
  registry.on("Upsample", 7,
              [](NodeContext &ctx) { return importResize(ctx, true); });
}

} // namespace kiln::onnx
