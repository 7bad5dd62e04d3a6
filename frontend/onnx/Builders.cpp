//===- Builders.cpp - IR building helpers shared by the op handlers -------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {

Value buildElementwise(NodeContext &ctx, ValueRange inputs,
                       Type resultElementType, ScalarBodyFn body) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  // Multidirectional broadcasting: align shapes on the right; a dim of 1
  // stretches to the other's size.
  int64_t rank = 0;
  for (Value input : inputs)
    rank = std::max(rank, cast<RankedTensorType>(input.getType()).getRank());
  SmallVector<int64_t> shape(rank, 1);
  // The input that gave each symbolic result dim.
  SmallVector<Value> owners(rank);
  for (auto [index, input] : llvm::enumerate(inputs)) {
    ArrayRef<int64_t> inShape =
        cast<RankedTensorType>(input.getType()).getShape();
    int64_t offset = rank - static_cast<int64_t>(inShape.size());
    for (auto [i, dim] : llvm::enumerate(inShape)) {
      int64_t &out = shape[offset + i];
      if (ShapedType::isDynamic(dim) && ShapedType::isDynamic(out)) {
        // Two symbolic dims meet: they must be the same one.
        Value first = owners[offset + i];
        if (first && ctx.sameSize(first, offset + i - (rank - shapeOf(first).size()),
                                  input, i) == false) {
          ctx.error() << "input #" << index << " of type " << input.getType()
                      << " does not broadcast with the other inputs "
                         "(dimension "
                      << offset + i
                      << ": two different symbolic dims; a symbolic dim is "
                         "never broadcast)";
          return {};
        }
        continue;
      }
      if (ShapedType::isDynamic(dim))
        owners[offset + i] = input;
      if (dim == out || dim == 1)
        continue;
      if (out != 1) {
        InFlightDiagnostic diag = ctx.error();
        diag << "input #" << index << " of type " << input.getType()
             << " does not broadcast with the other inputs (dimension "
             << offset + i << ": ";
        auto show = [&](int64_t d) {
          if (ShapedType::isDynamic(d))
            diag << "a symbolic dim";
          else
            diag << d;
        };
        show(dim);
        diag << " vs ";
        show(out);
        diag << ")";
        if (ShapedType::isDynamic(dim) || ShapedType::isDynamic(out))
          diag << "; a symbolic dim is never broadcast: give it a fixed "
                  "value with --dim NAME=VALUE";
        return {};
      }
      out = dim;
    }
  }

  return buildBroadcast(b, loc, inputs, shape, resultElementType, body);
}





FailureOr<TypedAttr> constantOfShapeValue(NodeContext &ctx) {
  OpBuilder &b = ctx.b();
  const kiln_onnx::AttributeProto *value = ctx.attr("value");
  if (!value)
    return cast<TypedAttr>(b.getF32FloatAttr(0.0f));
  Type element = toElementType(b.getContext(), value->t().data_type());
  if (!element)
    return ctx.error() << "ConstantOfShape value of "
                       << dataTypeName(value->t().data_type())
                       << " is not supported";
  std::vector<char> bytes;
  if (std::string err = readTensorBytes(value->t(), "", bytes); !err.empty())
    return ctx.error() << err;
  auto one = RankedTensorType::get({}, element);
  DenseElementsAttr attr =
      element.isInteger(1)
          ? DenseElementsAttr::get(one, !bytes.empty() && bytes[0] != 0)
          : DenseElementsAttr::getFromRawBuffer(one, ArrayRef<char>(bytes));
  return cast<TypedAttr>(attr.getSplatValue<Attribute>());
}

Value buildEmptyConstant(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
                         Type element) {
  auto type = RankedTensorType::get(shape, element);
  return arith::ConstantOp::create(
      b, loc, DenseElementsAttr::getFromRawBuffer(type, ArrayRef<char>()));
}

void WindowAttrs::splitPads(int64_t i, int64_t total) {
  int64_t spatial = strides.size();
  pads[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
  pads[spatial + i] = total - pads[i];
}

std::optional<WindowAttrs> readWindowAttrs(NodeContext &ctx, int64_t spatial) {
  auto list = [&](const char *name, int64_t size, int64_t fill) {
    std::vector<int64_t> v = ctx.intsAttr(name).value_or(std::vector<int64_t>());
    if (v.empty())
      v.assign(size, fill);
    return v;
  };
  WindowAttrs w;
  w.strides = list("strides", spatial, 1);
  w.dilations = list("dilations", spatial, 1);
  w.pads = list("pads", 2 * spatial, 0);
  w.autoPad = "NOTSET";
  if (const kiln_onnx::AttributeProto *attr = ctx.attr("auto_pad"))
    w.autoPad = attr->s();
  if (static_cast<int64_t>(w.strides.size()) != spatial ||
      static_cast<int64_t>(w.dilations.size()) != spatial ||
      static_cast<int64_t>(w.pads.size()) != 2 * spatial) {
    ctx.error() << "strides, dilations and pads must have " << spatial << ", "
                << spatial << " and " << 2 * spatial << " values";
    return std::nullopt;
  }
  if (llvm::any_of(w.strides, [](int64_t s) { return s <= 0; }) ||
      llvm::any_of(w.dilations, [](int64_t d) { return d <= 0; })) {
    ctx.error() << "strides and dilations must be positive";
    return std::nullopt;
  }
  if (!w.same() && w.autoPad != "NOTSET" && w.autoPad != "VALID") {
    ctx.error() << "unknown auto_pad '" << w.autoPad
                << "' (NOTSET, SAME_UPPER, SAME_LOWER or VALID)";
    return std::nullopt;
  }
  return w;
}

void applyForwardAutoPad(WindowAttrs &w, ArrayRef<int64_t> in,
                         ArrayRef<int64_t> kernel) {
  for (size_t i = 0; i < in.size(); ++i) {
    if (w.same()) {
      int64_t extent = w.dilations[i] * (kernel[i] - 1) + 1;
      int64_t out = (in[i] + w.strides[i] - 1) / w.strides[i];
      w.splitPads(i, std::max<int64_t>(0, (out - 1) * w.strides[i] + extent - in[i]));
    } else if (w.autoPad == "VALID") {
      w.pads[i] = w.pads[in.size() + i] = 0;
    }
  }
}

std::optional<int64_t> normalizeAxis(NodeContext &ctx, int64_t axis,
                                     int64_t rank) {
  if (axis < -rank || axis >= rank) {
    ctx.error() << "axis " << axis << " is out of range for a rank-" << rank
                << " input; expected [" << -rank << ", " << rank - 1 << "]";
    return std::nullopt;
  }
  return axis < 0 ? axis + rank : axis;
}

std::optional<std::vector<int64_t>> axesAttr(NodeContext &ctx, int64_t rank) {
  std::vector<int64_t> axes;
  std::optional<std::vector<int64_t>> given = ctx.intsAttr("axes");
  if (!given) {
    for (int64_t a = 0; a < rank; ++a)
      axes.push_back(a);
    return axes;
  }
  for (int64_t a : *given) {
    std::optional<int64_t> axis = normalizeAxis(ctx, a, rank);
    if (!axis)
      return std::nullopt;
    axes.push_back(*axis);
  }
  return axes;
}

} // namespace kiln::onnx
