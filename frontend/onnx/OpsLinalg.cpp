//===- OpsLinalg.cpp - ONNX contractions (MatMul, Gemm, Einsum), softmax ----===//
#include "dialects/kiln/KilnDialect.h"
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

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
  if (rhsType.getRank() == 2 && lhsType.getRank() > 2) {
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

LogicalResult importMatMul(NodeContext &ctx) {
  Value lhs = ctx.input(0), rhs = ctx.input(1);
  if (!lhs || !rhs)
    return failure();
  Value result = buildMatmul(ctx, lhs, rhs);
  return result ? ctx.setOutputs(result) : failure();
}

Value transpose2D(OpBuilder &b, Location loc, Value value) {
  auto type = cast<RankedTensorType>(value.getType());
  Value init = tensor::EmptyOp::create(
      b, loc, {type.getShape()[1], type.getShape()[0]}, type.getElementType());
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

} // namespace

void registerLinalgOps(OpRegistry &registry) {
  registry.on("MatMul", 1, importMatMul);
  registry.on("Gemm", 7, importGemm);
  registry.on("Einsum", 12, importEinsum);
  registry.on("Softmax", 1, importSoftmax1);
  registry.on("Softmax", 13, importSoftmax13);
}

} // namespace kiln::onnx
