//===- OpsLinalg.cpp - ONNX contractions (MatMul, Gemm, Einsum), softmax ----===//
#include "dialects/kiln/KilnDialect.h"
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {

/// ONNX MatMul: numpy semantics, including rank-1 operands (a vector on the
/// left is a row, on the right a column; the inserted dim is dropped).
Value buildMatmul(NodeContext &ctx, Value lhs, Value rhs) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  auto lhsType = cast<RankedTensorType>(lhs.getType());
  auto rhsType = cast<RankedTensorType>(rhs.getType());
  if (lhsType.getRank() == 0 || rhsType.getRank() == 0) {
    ctx.error() << "MatMul operands must have rank >= 1, got "
                << lhs.getType() << " and " << rhs.getType();
    return {};
  }
  if (lhsType.getElementType() != rhsType.getElementType()) {
    ctx.error() << "MatMul operands must have the same element type, got "
                << lhs.getType() << " and " << rhs.getType();
    return {};
  }
  bool lhsVector = lhsType.getRank() == 1, rhsVector = rhsType.getRank() == 1;
  if (lhsVector)
    lhs = buildReshape(b, loc, lhs, {1, lhsType.getShape()[0]});
  if (rhsVector)
    rhs = buildReshape(b, loc, rhs, {rhsType.getShape()[0], 1});
  lhsType = cast<RankedTensorType>(lhs.getType());
  rhsType = cast<RankedTensorType>(rhs.getType());

  int64_t k0 = lhsType.getShape().back();
  int64_t k1 = rhsType.getShape()[rhsType.getRank() - 2];
  if (ShapedType::isDynamic(k0) && ShapedType::isDynamic(k1) &&
      ctx.sameSize(lhs, lhsType.getRank() - 1, rhs, rhsType.getRank() - 2) ==
          false) {
    ctx.error() << "MatMul contraction dims of " << lhs.getType() << " and "
                << rhs.getType() << " are different symbolic dims";
    return {};
  }
  if (k0 != k1) {
    ctx.error() << "MatMul contraction dims differ: " << lhs.getType()
                << " has " << k0 << " columns, " << rhs.getType() << " has "
                << k1 << " rows";
    return {};
  }
  // Broadcast the batch dims.
  ArrayRef<int64_t> lb = lhsType.getShape().drop_back(2);
  ArrayRef<int64_t> rb = rhsType.getShape().drop_back(2);
  size_t batchRank = std::max(lb.size(), rb.size());
  SmallVector<int64_t> shape(batchRank, 1);
  for (size_t i = 0; i < batchRank; ++i) {
    int64_t l = i + lb.size() >= batchRank ? lb[i + lb.size() - batchRank] : 1;
    int64_t r = i + rb.size() >= batchRank ? rb[i + rb.size() - batchRank] : 1;
    if (l != r && l != 1 && r != 1) {
      ctx.error() << "MatMul batch dims of " << lhs.getType() << " and "
                  << rhs.getType() << " do not broadcast";
      return {};
    }
    shape[i] = l == 1 ? r : l;
  }
  shape.push_back(lhsType.getShape()[lhsType.getRank() - 2]);
  shape.push_back(rhsType.getShape().back());
  auto resultType = RankedTensorType::get(shape, lhsType.getElementType());
  Value result;
  if (rhsType.getRank() == 2 && lhsType.getRank() > 2 &&
      lhsType.hasStaticShape()) {
    // [..., M, K] x [K, N]: the batch dims fold into M, and the product is
    // one 2-D matmul (the projections of every transformer layer).
    int64_t rows = lhsType.getNumElements() / k0;
    Value flat = buildReshape(b, loc, lhs, {rows, k0});
    auto flatType = RankedTensorType::get({rows, rhsType.getShape().back()},
                                          lhsType.getElementType());
    result = buildReshape(b, loc, MatmulOp::create(b, loc, flatType, flat, rhs),
                          shape);
  } else {
    result = MatmulOp::create(b, loc, resultType, lhs, rhs);
  }

  if (lhsVector || rhsVector) {
    SmallVector<int64_t> squeezed(shape.begin(), shape.end() - 2);
    if (!lhsVector)
      squeezed.push_back(shape[shape.size() - 2]);
    if (!rhsVector)
      squeezed.push_back(shape.back());
    result = buildReshape(b, loc, result, squeezed);
  }
  return result;
}

namespace {

LogicalResult importMatMul(NodeContext &ctx) {
  Value lhs = ctx.input(0), rhs = ctx.input(1);
  if (!lhs || !rhs)
    return failure();
  Value result = buildMatmul(ctx, lhs, rhs);
  return result ? ctx.setOutputs(result) : failure();
}

Value transpose2D(OpBuilder &b, Location loc, Value value) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<Value> sizes;
  for (int64_t d : {1, 0})
    if (type.isDynamicDim(d))
      sizes.push_back(tensor::DimOp::create(b, loc, value, d));
  Value init = tensor::EmptyOp::create(
      b, loc, {type.getShape()[1], type.getShape()[0]}, type.getElementType(),
      sizes);
  return linalg::TransposeOp::create(b, loc, value, init,
                                     ArrayRef<int64_t>{1, 0})
      .getResult()[0];
}

/// Gemm: Y = alpha * A' * B' + beta * C, A' and B' optionally transposed,
/// C optional (opset 11+) and unidirectionally broadcast to Y.
LogicalResult importGemm(NodeContext &ctx) {
  Value a = ctx.input(0), bMat = ctx.input(1);
  if (!a || !bMat)
    return failure();
  if (ctx.inputType(0).getRank() != 2 || ctx.inputType(1).getRank() != 2)
    return ctx.error() << "Gemm needs rank-2 A and B, got " << a.getType()
                       << " and " << bMat.getType();
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  if (ctx.intAttr("transA", 0))
    a = transpose2D(b, loc, a);
  if (ctx.intAttr("transB", 0))
    bMat = transpose2D(b, loc, bMat);
  Value product = buildMatmul(ctx, a, bMat);
  if (!product)
    return failure();
  double alpha = ctx.floatAttr("alpha", 1.0f);
  double beta = ctx.floatAttr("beta", 1.0f);
  Type element = ctx.inputType(0).getElementType();
  bool hasC = ctx.hasInput(2) && beta != 0.0;
  if (alpha == 1.0 && !hasC)
    return ctx.setOutputs(product);
  SmallVector<Value> inputs = {product};
  if (hasC) {
    Value c = ctx.input(2);
    if (!c)
      return failure();
    inputs.push_back(c);
  }
  auto productType = cast<RankedTensorType>(product.getType());
  Value result = buildElementwise(
      ctx, inputs, element,
      [&](OpBuilder &nb, Location nl, ValueRange args) -> Value {
        Value y = args[0];
        if (alpha != 1.0)
          y = arith::MulFOp::create(nb, nl, y,
                                    scalarConstant(nb, nl, element, alpha));
        if (args.size() > 1) {
          Value c = args[1];
          if (beta != 1.0)
            c = arith::MulFOp::create(nb, nl, c,
                                      scalarConstant(nb, nl, element, beta));
          y = arith::AddFOp::create(nb, nl, y, c);
        }
        return y;
      });
  if (!result)
    return failure();
  if (cast<RankedTensorType>(result.getType()).getShape() !=
      productType.getShape())
    return ctx.error() << "Gemm's C of type " << inputs[1].getType()
                       << " must broadcast to the product's shape "
                       << productType;
  return ctx.setOutputs(result);
}

/// The float input of a Softmax node and its normalized `axis` attribute
/// (`defaultAxis` when absent); reports an error on the node otherwise.
std::optional<std::pair<Value, int64_t>> softmaxOperands(NodeContext &ctx,
                                                         int64_t defaultAxis) {
  Value x = ctx.input(0);
  if (!x)
    return std::nullopt;
  RankedTensorType type = ctx.inputType(0);
  if (!isa<FloatType>(type.getElementType())) {
    ctx.error() << "Softmax supports float inputs only, got " << type;
    return std::nullopt;
  }
  auto axis =
      normalizeAxis(ctx, ctx.intAttr("axis", defaultAxis), type.getRank());
  if (!axis)
    return std::nullopt;
  return std::make_pair(x, *axis);
}

LogicalResult importSoftmax13(NodeContext &ctx) {
  auto operands = softmaxOperands(ctx, /*defaultAxis=*/-1);
  if (!operands)
    return failure();
  auto [x, axis] = *operands;
  return ctx.setOutputs(
      SoftmaxOp::create(ctx.b(), ctx.getLoc(), x, axis).getResult());
}

/// Softmax before opset 13: the input is flattened to 2-D at `axis`
/// (default 1) and normalized over the second dim.
LogicalResult importSoftmax1(NodeContext &ctx) {
  auto operands = softmaxOperands(ctx, /*defaultAxis=*/1);
  if (!operands)
    return failure();
  auto [x, axis] = *operands;
  RankedTensorType type = ctx.inputType(0);
  if (!type.hasStaticShape())
    return ctx.error() << "opset " << ctx.getOpset()
                       << " Softmax flattens its input " << type
                       << ", which has a symbolic dim; give the dim a value "
                          "with --dim NAME=VALUE or export with opset 13+";
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < type.getRank(); ++i)
    (i < axis ? outer : inner) *= type.getShape()[i];
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  Value flat = buildReshape(b, loc, x, {outer, inner});
  Value softmax = SoftmaxOp::create(b, loc, flat, 1);
  return ctx.setOutputs(buildReshape(b, loc, softmax, type.getShape()));
}


/// One Einsum operand's subscripts: letters, with the ellipsis (if any)
/// standing at `ellipsisAt` among them.
struct Subscripts {
  std::string letters;
  std::optional<size_t> ellipsisAt;
};

/// Parses "ab...c" (spaces already removed); nullopt on a bad character or
/// a second ellipsis.
std::optional<Subscripts> parseSubscripts(StringRef term) {
  Subscripts s;
  for (size_t i = 0; i < term.size(); ++i) {
    if (term.substr(i).starts_with("...")) {
      if (s.ellipsisAt)
        return std::nullopt;
      s.ellipsisAt = s.letters.size();
      i += 2;
      continue;
    }
    if (!std::isalpha(static_cast<unsigned char>(term[i])))
      return std::nullopt;
    s.letters.push_back(term[i]);
  }
  return s;
}

/// Einsum (12): one linalg.generic whose loops are the equation's labels
/// (ellipsis dims first, broadcast numpy-style), the labels missing from
/// the output reduced, the body the product of the operands. Repeated
/// labels within an operand read its diagonal.
LogicalResult importEinsum(NodeContext &ctx) {
  const kiln_onnx::AttributeProto *attr = ctx.attr("equation");
  if (!attr)
    return ctx.error() << "missing required attribute 'equation'";
  std::string equation;
  for (char c : attr->s())
    if (!std::isspace(static_cast<unsigned char>(c)))
      equation.push_back(c);
  StringRef lhs = equation, rhs;
  bool explicitOutput = false;
  if (size_t arrow = lhs.find("->"); arrow != StringRef::npos) {
    rhs = lhs.substr(arrow + 2);
    lhs = lhs.substr(0, arrow);
    explicitOutput = true;
  }
  SmallVector<StringRef> terms;
  lhs.split(terms, ',');
  int numInputs = ctx.numInputs();
  if (static_cast<int>(terms.size()) != numInputs)
    return ctx.error() << "equation '" << attr->s() << "' has " << terms.size()
                       << " operands but the node has " << numInputs << " inputs";
  SmallVector<Value> inputs;
  SmallVector<Subscripts> subs;
  Type element;
  for (int i = 0; i < numInputs; ++i) {
    Value input = ctx.input(i);
    if (!input)
      return failure();
    Type e = ctx.inputType(i).getElementType();
    if (e.isInteger(1) || (element && e != element))
      return ctx.error() << "Einsum takes numeric inputs of one element type, got "
                         << input.getType();
    element = e;
    std::optional<Subscripts> s = parseSubscripts(terms[i]);
    int64_t rank = ctx.inputType(i).getRank();
    if (!s || (s->ellipsisAt ? static_cast<int64_t>(s->letters.size()) > rank
                             : static_cast<int64_t>(s->letters.size()) != rank))
      return ctx.error() << "subscripts '" << terms[i] << "' do not fit input #"
                         << i << " of type " << input.getType();
    inputs.push_back(input);
    subs.push_back(*s);
  }
  // Ellipsis dims: as many as the widest operand's, right-aligned.
  int64_t ellipsisRank = 0;
  for (int i = 0; i < numInputs; ++i)
    if (subs[i].ellipsisAt)
      ellipsisRank = std::max<int64_t>(
          ellipsisRank, ctx.inputType(i).getRank() - subs[i].letters.size());
  // Loop dims: the ellipsis dims, then each letter in order of appearance.
  llvm::DenseMap<char, int64_t> letterDim;
  llvm::DenseMap<char, int> letterCount;
  SmallVector<int64_t> ranges(ellipsisRank, 1);
  for (int i = 0; i < numInputs; ++i) {
    ArrayRef<int64_t> shape = ctx.inputType(i).getShape();
    const Subscripts &s = subs[i];
    int64_t own = shape.size() - s.letters.size();
    size_t pos = 0;
    for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
      bool inEllipsis = s.ellipsisAt && d >= static_cast<int64_t>(*s.ellipsisAt) &&
                        d < static_cast<int64_t>(*s.ellipsisAt) + own;
      if (inEllipsis) {
        int64_t loop = ellipsisRank - own + (d - *s.ellipsisAt);
        if (shape[d] != 1 && ranges[loop] != 1 && ranges[loop] != shape[d])
          return ctx.error() << "ellipsis dims of input #" << i
                             << " do not broadcast with the other inputs";
        if (shape[d] != 1)
          ranges[loop] = shape[d];
        continue;
      }
      char c = s.letters[pos++];
      ++letterCount[c];
      auto [it, inserted] = letterDim.try_emplace(c, ranges.size());
      if (inserted)
        ranges.push_back(shape[d]);
      else if (ranges[it->second] != shape[d])
        return ctx.error() << "label '" << c << "' has sizes " << ranges[it->second]
                           << " and " << shape[d];
    }
  }
  // Output subscripts: given, or the ellipsis then the labels used once,
  // alphabetically.
  Subscripts out;
  if (explicitOutput) {
    std::optional<Subscripts> s = parseSubscripts(rhs);
    if (!s)
      return ctx.error() << "bad output subscripts '" << rhs << "'";
    out = *s;
    if (ellipsisRank && !out.ellipsisAt)
      return ctx.error() << "the output subscripts must keep the ellipsis";
  } else {
    if (ellipsisRank)
      out.ellipsisAt = 0;
    for (auto &[c, count] : letterCount)
      if (count == 1)
        out.letters.push_back(c);
    llvm::sort(out.letters);
  }
  SmallVector<int64_t> outDims;
  for (size_t pos = 0; pos <= out.letters.size(); ++pos) {
    if (out.ellipsisAt && *out.ellipsisAt == pos)
      for (int64_t e = 0; e < ellipsisRank; ++e)
        outDims.push_back(e);
    if (pos == out.letters.size())
      break;
    char c = out.letters[pos];
    auto it = letterDim.find(c);
    if (it == letterDim.end() || llvm::is_contained(outDims, it->second))
      return ctx.error() << "output label '" << c
                         << "' is missing from the inputs or repeated";
    outDims.push_back(it->second);
  }

  MLIRContext *mctx = ctx.b().getContext();
  int64_t loops = ranges.size();
  SmallVector<AffineMap> maps;
  for (int i = 0; i < numInputs; ++i) {
    ArrayRef<int64_t> shape = ctx.inputType(i).getShape();
    const Subscripts &s = subs[i];
    int64_t own = shape.size() - s.letters.size();
    SmallVector<AffineExpr> exprs;
    size_t pos = 0;
    for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
      bool inEllipsis = s.ellipsisAt && d >= static_cast<int64_t>(*s.ellipsisAt) &&
                        d < static_cast<int64_t>(*s.ellipsisAt) + own;
      int64_t loop = inEllipsis ? ellipsisRank - own + (d - *s.ellipsisAt)
                                : letterDim[s.letters[pos++]];
      exprs.push_back(shape[d] == 1 && ranges[loop] != 1
                          ? getAffineConstantExpr(0, mctx)
                          : getAffineDimExpr(loop, mctx));
    }
    maps.push_back(AffineMap::get(loops, 0, exprs, mctx));
  }
  SmallVector<AffineExpr> outExprs;
  SmallVector<int64_t> outShape;
  for (int64_t loop : outDims) {
    outExprs.push_back(getAffineDimExpr(loop, mctx));
    outShape.push_back(ranges[loop]);
  }
  maps.push_back(AffineMap::get(loops, 0, outExprs, mctx));
  SmallVector<utils::IteratorType> iterators;
  bool reduces = false;
  for (int64_t loop = 0; loop < loops; ++loop) {
    bool parallel = llvm::is_contained(outDims, loop);
    reduces |= !parallel;
    iterators.push_back(parallel ? utils::IteratorType::parallel
                                 : utils::IteratorType::reduction);
  }
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  Value init = tensor::EmptyOp::create(b, loc, outShape, element);
  if (reduces)
    init = linalg::FillOp::create(b, loc, scalarConstant(b, loc, element, 0), init)
               .getResult(0);
  bool isFloat = isa<FloatType>(element);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{RankedTensorType::get(outShape, element)}, inputs,
      ValueRange{init}, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value product = args[0];
        for (Value v : args.drop_front().drop_back())
          product = isFloat ? arith::MulFOp::create(nb, nl, product, v).getResult()
                            : arith::MulIOp::create(nb, nl, product, v).getResult();
        if (reduces)
          product = isFloat ? arith::AddFOp::create(nb, nl, args.back(), product).getResult()
                            : arith::AddIOp::create(nb, nl, args.back(), product).getResult();
        linalg::YieldOp::create(nb, nl, product);
      });
  return ctx.setOutputs(generic.getResult(0));
}

/// Whether a convolution's X (input #0, [N, C, spatial...]) and W (input
/// #1, laid out as `weightLayout`) are float tensors of one type and rank;
/// reports on the node.
bool checkConvOperands(NodeContext &ctx, const char *op, const char *weightLayout) {
  RankedTensorType x = ctx.inputType(0), w = ctx.inputType(1);
  if (isa<FloatType>(x.getElementType()) && w.getElementType() == x.getElementType() &&
      x.getRank() >= 3 && w.getRank() == x.getRank())
    return true;
  ctx.error() << op << " takes float X [N, C, spatial...] and W " << weightLayout
              << " of one type and rank, got " << x << " and " << w;
  return false;
}

/// Binds a convolution's output `y` [N, filters, spatial...], plus the
/// optional bias input #2 ([filters]) added along the channels.
LogicalResult setOutputWithBias(NodeContext &ctx, Value y, int64_t filters) {
  if (!ctx.hasInput(2))
    return ctx.setOutputs(y);
  Value bias = ctx.input(2);
  if (!bias)
    return failure();
  auto type = cast<RankedTensorType>(y.getType());
  auto expected = RankedTensorType::get({filters}, type.getElementType());
  if (ctx.inputType(2) != expected)
    return ctx.error() << "the bias must be " << expected << ", got " << bias.getType();
  SmallVector<int64_t> column(type.getRank() - 1, 1);
  column[0] = filters;
  Value out = buildElementwise(
      ctx, {y, buildReshape(ctx.b(), ctx.getLoc(), bias, column)}, type.getElementType(),
      [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
        return arith::AddFOp::create(nb, nl, a[0], a[1]);
      });
  return out ? ctx.setOutputs(out) : failure();
}

/// Conv (11): N-d convolution with strides, dilations, groups, explicit or
/// automatic padding and an optional bias. The padded input is one indexed
/// kernel; the convolution one linalg.generic over
/// (n, group, out channel, out positions..., in channel, kernel positions...)
/// reading input[n, group, c, o * stride + k * dilation], with channels
/// split into groups by views.
} // namespace

Value buildConv(NodeContext &ctx, Value x, Value w) {
  auto xType = cast<RankedTensorType>(x.getType()),
       wType = cast<RankedTensorType>(w.getType());
  Type element = xType.getElementType();
  bool isFloat = isa<FloatType>(element);
  if (xType.getRank() < 3 || wType.getRank() != xType.getRank() ||
      wType.getElementType() != element) {
    ctx.error() << "a convolution takes X [N, C, spatial...] and W [M, "
                << "C/group, kernel...] of one rank and type, got " << xType
                << " and " << wType;
    return {};
  }
  int64_t rank = xType.getRank(), spatial = rank - 2;
  ArrayRef<int64_t> xs = xType.getShape(), ws = wType.getShape();
  int64_t group = ctx.intAttr("group", 1);
  int64_t channels = xs[1], filters = ws[0];
  if (group <= 0 || channels % group || filters % group || ws[1] != channels / group)
  {
    ctx.error() << "group " << group << " does not split X's " << channels
                << " channels and W's " << filters << " filters (W has "
                << ws[1] << " channels per group)";
    return {};
  }
  std::vector<int64_t> kernel(ws.begin() + 2, ws.end());
  if (auto given = ctx.intsAttr("kernel_shape"); given && *given != kernel) {
    ctx.error() << "kernel_shape does not match W " << w.getType();
    return {};
  }
  std::optional<WindowAttrs> window = readWindowAttrs(ctx, spatial);
  if (!window)
    return {};
  applyForwardAutoPad(*window, xs.drop_front(2), kernel);
  const std::vector<int64_t> &strides = window->strides, &dilations = window->dilations,
                             &pads = window->pads;
  SmallVector<int64_t> outShape = {xs[0], filters};
  for (int64_t i = 0; i < spatial; ++i) {
    int64_t extent = dilations[i] * (kernel[i] - 1) + 1;
    int64_t padded = xs[2 + i] + pads[i] + pads[spatial + i];
    if (padded < extent) {
      ctx.error() << "spatial dim " << i << " (" << xs[2 + i]
                  << " padded to " << padded << ") is smaller than the "
                  << "dilated kernel (" << extent << ")";
      return {};
    }
    outShape.push_back((padded - extent) / strides[i] + 1);
  }
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  // The zero-padded input.
  Value input = x;
  if (llvm::any_of(pads, [](int64_t p) { return p != 0; })) {
    SmallVector<int64_t> padded(xs.begin(), xs.end());
    for (int64_t i = 0; i < spatial; ++i)
      padded[2 + i] += pads[i] + pads[spatial + i];
    input = buildIndexed(
        b, loc, padded, element, [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
          Value inside = arith::ConstantIntOp::create(nb, nl, 1, 1);
          SmallVector<Value> at = {ivs[0], ivs[1]};
          for (int64_t i = 0; i < spatial; ++i) {
            Value p = arith::SubIOp::create(nb, nl, ivs[2 + i], indexConstant(nb, nl, pads[i]));
            Value lo = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, p,
                                             indexConstant(nb, nl, 0));
            Value hi = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, p,
                                             indexConstant(nb, nl, xs[2 + i]));
            inside = arith::AndIOp::create(
                nb, nl, inside, arith::AndIOp::create(nb, nl, lo, hi));
            at.push_back(arith::MinSIOp::create(
                nb, nl, arith::MaxSIOp::create(nb, nl, p, indexConstant(nb, nl, 0)),
                indexConstant(nb, nl, xs[2 + i] - 1)));
          }
          Value v = tensor::ExtractOp::create(nb, nl, x, at);
          return arith::SelectOp::create(nb, nl, inside, v,
                                         scalarConstant(nb, nl, element, 0));
        });
  }
  // Channels split into groups (views): input [N, G, C/G, ...], weights
  // [G, M/G, C/G, ...], output [N, G, M/G, ...].
  ArrayRef<int64_t> ps = cast<RankedTensorType>(input.getType()).getShape();
  SmallVector<int64_t> inGrouped = {ps[0], group, channels / group};
  inGrouped.append(ps.begin() + 2, ps.end());
  SmallVector<int64_t> wGrouped = {group, filters / group, ws[1]};
  wGrouped.append(kernel.begin(), kernel.end());
  SmallVector<int64_t> outGrouped = {xs[0], group, filters / group};
  outGrouped.append(outShape.begin() + 2, outShape.end());
  Value in = buildReshape(b, loc, input, inGrouped);
  Value wt = buildReshape(b, loc, w, wGrouped);
  // Loops: n, g, m, o..., c, k...
  MLIRContext *mctx = b.getContext();
  int64_t loops = 3 + 2 * spatial + 1;
  auto d = [&](int64_t i) { return getAffineDimExpr(i, mctx); };
  int64_t oFirst = 3, cDim = 3 + spatial, kFirst = 4 + spatial;
  SmallVector<AffineExpr> inExprs = {d(0), d(1), d(cDim)};
  SmallVector<AffineExpr> wExprs = {d(1), d(2), d(cDim)};
  SmallVector<AffineExpr> outExprs = {d(0), d(1), d(2)};
  for (int64_t i = 0; i < spatial; ++i) {
    inExprs.push_back(d(oFirst + i) * strides[i] + d(kFirst + i) * dilations[i]);
    wExprs.push_back(d(kFirst + i));
    outExprs.push_back(d(oFirst + i));
  }
  SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, inExprs, mctx),
                                 AffineMap::get(loops, 0, wExprs, mctx),
                                 AffineMap::get(loops, 0, outExprs, mctx)};
  SmallVector<utils::IteratorType> iterators(cDim, utils::IteratorType::parallel);
  iterators.append(1 + spatial, utils::IteratorType::reduction);
  Value init = linalg::FillOp::create(
                   b, loc, scalarConstant(b, loc, element, 0),
                   tensor::EmptyOp::create(b, loc, outGrouped, element).getResult())
                   .getResult(0);
  Value conv = linalg::GenericOp::create(
                   b, loc, TypeRange{init.getType()}, ValueRange{in, wt}, ValueRange{init},
                   maps, iterators,
                   [&](OpBuilder &nb, Location nl, ValueRange a) {
                     Value sum;
                     if (isFloat)
                       sum = arith::AddFOp::create(
                           nb, nl, a[2], arith::MulFOp::create(nb, nl, a[0], a[1]));
                     else
                       sum = arith::AddIOp::create(
                           nb, nl, a[2], arith::MulIOp::create(nb, nl, a[0], a[1]));
                     linalg::YieldOp::create(nb, nl, sum);
                   })
                   .getResult(0);
  return buildReshape(b, loc, conv, outShape);
}

namespace {

LogicalResult importConv(NodeContext &ctx) {
  Value x = ctx.input(0), w = ctx.input(1);
  if (!x || !w || !checkConvOperands(ctx, "Conv", "[M, C/group, kernel...]"))
    return failure();
  Value y = buildConv(ctx, x, w);
  if (!y)
    return failure();
  int64_t filters = ctx.inputType(1).getDimSize(0);
  return setOutputWithBias(ctx, y, filters);
}

/// ConvTranspose (1, 11): each output element gathers the inputs that
/// scatter onto it, y[n, m, o] = sum over c, k of x[n, c, i] * w[c, m, k]
/// where o + pad_begin = i * stride + k * dilation; one indexed kernel with
/// a loop over the group's channels and the kernel positions.
LogicalResult importConvTranspose(NodeContext &ctx) {
  Value x = ctx.input(0), w = ctx.input(1);
  if (!x || !w || !checkConvOperands(ctx, "ConvTranspose", "[C, M/group, kernel...]"))
    return failure();
  RankedTensorType xType = ctx.inputType(0), wType = ctx.inputType(1);
  Type element = xType.getElementType();
  int64_t rank = xType.getRank(), spatial = rank - 2;
  ArrayRef<int64_t> xs = xType.getShape(), ws = wType.getShape();
  int64_t group = ctx.intAttr("group", 1);
  int64_t channels = xs[1];
  if (group <= 0 || channels % group || ws[0] != channels)
    return ctx.error() << "group " << group << " does not split X's " << channels
                       << " channels, or W's first dim " << ws[0] << " is not "
                       << channels;
  int64_t perGroupOut = ws[1], filters = perGroupOut * group, perGroupIn = channels / group;
  std::optional<WindowAttrs> window = readWindowAttrs(ctx, spatial);
  if (!window)
    return failure();
  const std::vector<int64_t> &strides = window->strides, &dilations = window->dilations;
  std::vector<int64_t> &pads = window->pads;
  std::vector<int64_t> kernel(ws.begin() + 2, ws.end());
  std::vector<int64_t> outputPadding =
      ctx.intsAttr("output_padding").value_or(std::vector<int64_t>(spatial, 0));
  std::vector<int64_t> outputShape = ctx.intsAttr("output_shape").value_or(std::vector<int64_t>());
  if (static_cast<int64_t>(outputPadding.size()) != spatial ||
      (!outputShape.empty() && static_cast<int64_t>(outputShape.size()) != spatial))
    return ctx.error() << "output_padding and output_shape must have one value per "
                          "spatial dim";
  SmallVector<int64_t> outShape = {xs[0], filters};
  for (int64_t i = 0; i < spatial; ++i) {
    int64_t full = strides[i] * (xs[2 + i] - 1) + outputPadding[i] +
                   (kernel[i] - 1) * dilations[i] + 1;
    // With SAME padding the pads make the output the requested shape (by
    // default input * stride); otherwise the given pads apply and an
    // output_shape only sizes the output (the reference's canvas).
    bool same = window->same();
    if (same)
      window->splitPads(i, full - (outputShape.empty() ? xs[2 + i] * strides[i]
                                                       : outputShape[i]));
    int64_t out = !same && !outputShape.empty() ? outputShape[i]
                                                : full - pads[i] - pads[spatial + i];
    if (out <= 0)
      return ctx.error() << "spatial dim " << i << " of the output would be " << out;
    outShape.push_back(out);
  }
  int64_t windowSize = 1;
  for (int64_t k : kernel)
    windowSize *= k;
  Value y = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        // Output channel m = g * perGroupOut + mm reads input channels
        // g * perGroupIn + c.
        Value g = arith::DivUIOp::create(b, loc, ivs[1], indexConstant(b, loc, perGroupOut));
        Value mm = arith::RemUIOp::create(b, loc, ivs[1], indexConstant(b, loc, perGroupOut));
        Value steps = indexConstant(b, loc, perGroupIn * windowSize);
        auto loop = scf::ForOp::create(b, loc, indexConstant(b, loc, 0), steps, indexConstant(b, loc, 1),
                                       ValueRange{scalarConstant(b, loc, element, 0)});
        OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
        Value rest = loop.getInductionVar();
        Value hit = arith::ConstantIntOp::create(lb, loc, 1, 1);
        SmallVector<Value> xAt(spatial), wAt(spatial);
        for (int64_t i = spatial - 1; i >= 0; --i) {
          Value k = arith::RemUIOp::create(lb, loc, rest, indexConstant(lb, loc, kernel[i]));
          rest = arith::DivUIOp::create(lb, loc, rest, indexConstant(lb, loc, kernel[i]));
          // i * stride = o + pad_begin - k * dilation
          Value scaled = arith::SubIOp::create(
              lb, loc, arith::AddIOp::create(lb, loc, ivs[2 + i], indexConstant(lb, loc, pads[i])),
              arith::MulIOp::create(lb, loc, k, indexConstant(lb, loc, dilations[i])));
          Value in = arith::DivSIOp::create(lb, loc, scaled, indexConstant(lb, loc, strides[i]));
          Value exact = arith::CmpIOp::create(
              lb, loc, arith::CmpIPredicate::eq,
              arith::RemSIOp::create(lb, loc, scaled, indexConstant(lb, loc, strides[i])),
              indexConstant(lb, loc, 0));
          Value inRange = arith::AndIOp::create(
              lb, loc,
              arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::sge, scaled, indexConstant(lb, loc, 0)),
              arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::slt, in,
                                    indexConstant(lb, loc, xs[2 + i])));
          hit = arith::AndIOp::create(lb, loc, hit, arith::AndIOp::create(lb, loc, exact, inRange));
          xAt[i] = arith::MinSIOp::create(
              lb, loc, arith::MaxSIOp::create(lb, loc, in, indexConstant(lb, loc, 0)),
              indexConstant(lb, loc, xs[2 + i] - 1));
          wAt[i] = k;
        }
        Value c = rest; // the channel within the group
        Value channel = arith::AddIOp::create(
            lb, loc, arith::MulIOp::create(lb, loc, g, indexConstant(lb, loc, perGroupIn)), c);
        SmallVector<Value> xi = {ivs[0], channel};
        xi.append(xAt.begin(), xAt.end());
        SmallVector<Value> wi = {channel, mm};
        wi.append(wAt.begin(), wAt.end());
        Value prod = arith::MulFOp::create(lb, loc, tensor::ExtractOp::create(lb, loc, x, xi),
                                           tensor::ExtractOp::create(lb, loc, w, wi));
        Value acc = loop.getRegionIterArgs()[0];
        Value next = arith::SelectOp::create(lb, loc, hit,
                                             arith::AddFOp::create(lb, loc, acc, prod), acc);
        scf::YieldOp::create(lb, loc, next);
        return loop.getResult(0);
      });
  return setOutputWithBias(ctx, y, filters);
}

} // namespace

void registerLinalgOps(OpRegistry &registry) {
  registry.on("MatMul", 1, importMatMul);
  registry.on("Gemm", 7, importGemm);
  registry.on("Einsum", 12, importEinsum);
  registry.on("Conv", 1, importConv);
  registry.on("ConvTranspose", 1, importConvTranspose);
  registry.on("Softmax", 1, importSoftmax1);
  registry.on("Softmax", 13, importSoftmax13);
}

} // namespace kiln::onnx
