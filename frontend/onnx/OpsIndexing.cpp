//===- OpsIndexing.cpp - GatherND, ReverseSequence, DFT, windows ---------===//
//
// GatherND and ReverseSequence are gathers at indices read from another
// tensor (one linalg.generic over the output each). DFT is one generic
// over the output whose body sums the signal's terms in a loop (the
// direct transform: O(N) per output element; signal lengths in models are
// small). The window functions (HannWindow, HammingWindow, BlackmanWindow)
// take their length as a constant (a graph input must be frozen with
// --constant-input), so their values are computed here, in double, and
// become a constant of the requested type.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;

namespace kiln::onnx {
namespace {

/// An index read from `indices` at `at`, wrapped once when negative and
/// clamped into [0, size) (out-of-range indices are undefined in ONNX; a
/// clamp keeps the read inside the buffer).
Value readIndex(OpBuilder &b, Location loc, Value indices, ValueRange at,
                int64_t size) {
  Value i = arith::IndexCastOp::create(
      b, loc, b.getIndexType(), tensor::ExtractOp::create(b, loc, indices, at));
  Value zero = indexConstant(b, loc, 0);
  Value negative =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, zero);
  i = arith::SelectOp::create(
      b, loc, negative,
      arith::AddIOp::create(b, loc, i, indexConstant(b, loc, size)), i);
  return arith::MinSIOp::create(b, loc, arith::MaxSIOp::create(b, loc, i, zero),
                                indexConstant(b, loc, size - 1));
}

LogicalResult importGatherND(NodeContext &ctx) {
  Value data = ctx.input(0), indices = ctx.input(1);
  if (!data || !indices)
    return failure();
  RankedTensorType type = ctx.inputType(0), indexType = ctx.inputType(1);
  if (!type.hasStaticShape() || !indexType.hasStaticShape())
    return ctx.error() << "GatherND needs static shapes";
  int64_t batchDims = ctx.intAttr("batch_dims", 0);
  int64_t r = type.getRank(), q = indexType.getRank();
  if (q < 1 || batchDims < 0 || batchDims >= std::min(r, q))
    return ctx.error() << "GatherND batch_dims " << batchDims
                       << " must be less than the ranks of data " << type
                       << " and indices " << indexType;
  int64_t k = indexType.getShape().back();
  if (k < 1 || k > r - batchDims)
    return ctx.error() << "GatherND index tuples of " << k
                       << " elements do not fit data " << type << " after "
                       << batchDims << " batch dims";
  for (int64_t d = 0; d < batchDims; ++d)
    if (type.getDimSize(d) != indexType.getDimSize(d))
      return ctx.error() << "GatherND batch dim " << d << " differs: data "
                         << type << ", indices " << indexType;
  // [indices' dims but the last] + data's dims after the gathered ones.
  SmallVector<int64_t> outShape(indexType.getShape().drop_back());
  for (int64_t d = batchDims + k; d < r; ++d)
    outShape.push_back(type.getDimSize(d));
  if (llvm::is_contained(outShape, 0))
    return ctx.setOutputs(buildEmptyConstant(ctx.b(), ctx.getLoc(), outShape,
                                             type.getElementType()));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at(ivs.begin(), ivs.begin() + batchDims);
        SmallVector<Value> tuple(ivs.begin(), ivs.begin() + (q - 1));
        tuple.push_back(Value());
        for (int64_t j = 0; j < k; ++j) {
          tuple.back() = indexConstant(b, loc, j);
          at.push_back(readIndex(b, loc, indices, tuple,
                                 type.getDimSize(batchDims + j)));
        }
        for (Value iv : ivs.drop_front(q - 1))
          at.push_back(iv);
        return tensor::ExtractOp::create(b, loc, data, at);
      });
  return ctx.setOutputs(out);
}

LogicalResult importReverseSequence(NodeContext &ctx) {
  Value x = ctx.input(0), lengths = ctx.input(1);
  if (!x || !lengths)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (!type.hasStaticShape() || type.getRank() < 2)
    return ctx.error() << "ReverseSequence takes a tensor of rank 2 or more "
                          "of static shape, got "
                       << type;
  int64_t batchAxis = ctx.intAttr("batch_axis", 1);
  int64_t timeAxis = ctx.intAttr("time_axis", 0);
  if (!((batchAxis == 0 && timeAxis == 1) || (batchAxis == 1 && timeAxis == 0)))
    return ctx.error() << "ReverseSequence takes batch_axis and time_axis 0 "
                          "and 1 (either way), got "
                       << batchAxis << " and " << timeAxis;
  int64_t steps = type.getDimSize(timeAxis);
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        // Time t of a sequence of length n reads n - 1 - t while t < n.
        Value n = arith::IndexCastOp::create(
            b, loc, b.getIndexType(),
            tensor::ExtractOp::create(b, loc, lengths,
                                      ValueRange{ivs[batchAxis]}));
        n = arith::MinSIOp::create(
            b, loc,
            arith::MaxSIOp::create(b, loc, n, indexConstant(b, loc, 0)),
            indexConstant(b, loc, steps));
        Value t = ivs[timeAxis];
        Value reversed = arith::SubIOp::create(
            b, loc, arith::SubIOp::create(b, loc, n, indexConstant(b, loc, 1)),
            t);
        Value inside =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, t, n);
        SmallVector<Value> at(ivs.begin(), ivs.end());
        at[timeAxis] = arith::SelectOp::create(b, loc, inside, reversed, t);
        return tensor::ExtractOp::create(b, loc, x, at);
      });
  return ctx.setOutputs(out);
}

/// HannWindow, HammingWindow, BlackmanWindow: a_0 - a_1 cos(2 pi n / N) +
/// a_2 cos(4 pi n / N), N the size (periodic) or size - 1 (symmetric).
LogicalResult importWindow(NodeContext &ctx, double a0, double a1, double a2) {
  std::optional<std::vector<int64_t>> size = ctx.constantInts(0);
  if (!size)
    return failure();
  if (size->size() != 1 || (*size)[0] < 0)
    return ctx.error() << "the window size must be one non-negative integer";
  int64_t n = (*size)[0];
  bool periodic = ctx.intAttr("periodic", 1) != 0;
  int64_t dataType = ctx.intAttr("output_datatype", 1);
  bool isUnsigned = false;
  Type elementType =
      toElementType(ctx.b().getContext(), dataType, &isUnsigned);
  if (!elementType || !isa<FloatType, IntegerType>(elementType))
    return ctx.error() << "output_datatype " << dataTypeName(dataType)
                       << " is not supported";
  ctx.setOutputUnsigned(0, isUnsigned);
  std::optional<Type> element = elementType;
  double denominator = periodic ? double(n) : double(n - 1);
  SmallVector<double> values;
  for (int64_t i = 0; i < n; ++i) {
    double x = 2 * M_PI * double(i) / denominator;
    values.push_back(a0 - a1 * std::cos(x) + a2 * std::cos(2 * x));
  }
  auto type = RankedTensorType::get({n}, *element);
  DenseElementsAttr attr;
  if (auto f = dyn_cast<FloatType>(*element)) {
    SmallVector<APFloat> floats;
    for (double v : values) {
      APFloat a(v);
      bool lost;
      a.convert(f.getFloatSemantics(), APFloat::rmNearestTiesToEven, &lost);
      floats.push_back(a);
    }
    attr = DenseElementsAttr::get(type, floats);
  } else {
    SmallVector<APInt> ints;
    unsigned width = cast<IntegerType>(*element).getWidth();
    for (double v : values)
      ints.push_back(APInt(width, uint64_t(int64_t(v)), /*isSigned=*/!isUnsigned));
    attr = DenseElementsAttr::get(type, ints);
  }
  return ctx.setOutputs(
      arith::ConstantOp::create(ctx.b(), ctx.getLoc(), type, attr).getResult());
}

/// DFT (17: axis attribute; 20: axis input #2), forward or inverse, of a
/// real ([.., 1]) or complex ([.., 2]) signal along `axis`, zero-padded or
/// truncated to dft_length N: X[k] = sum_n x[n] exp(-+2 pi i k n / N)
/// (inverse: times 1/N); onesided keeps k <= N/2 (forward), or reads such
/// half spectra and gives the real signal (inverse: numpy's irfft, each
/// bin but the first and, for even N, the last counted twice).
LogicalResult importDFT(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (!type.hasStaticShape() || rank < 3 || !isa<FloatType>(type.getElementType()) ||
      (type.getShape().back() != 1 && type.getShape().back() != 2))
    return ctx.error() << "DFT takes a float signal [batch, .., 1 or 2] of "
                          "static shape, got "
                       << type;
  int64_t axisValue = ctx.getOpset() >= 20 ? -2 : ctx.intAttr("axis", 1);
  if (ctx.getOpset() >= 20 && ctx.hasInput(2)) {
    std::optional<std::vector<int64_t>> given = ctx.constantInts(2);
    if (!given)
      return failure();
    if (given->size() != 1)
      return ctx.error() << "the DFT axis must be one integer";
    axisValue = given->front();
  }
  // The signal axes exclude the batch (0) and the real/imaginary dim.
  if (axisValue < 0)
    axisValue += rank;
  if (axisValue < 1 || axisValue >= rank - 1)
    return ctx.error() << "DFT axis " << axisValue << " is not a signal axis of "
                       << type;
  int64_t axis = axisValue;
  bool inverse = ctx.intAttr("inverse", 0) != 0;
  bool onesided = ctx.intAttr("onesided", 0) != 0;
  bool complexIn = type.getShape().back() == 2;
  int64_t length = type.getDimSize(axis);
  int64_t n = inverse && onesided ? 2 * (length - 1) : length;
  if (ctx.hasInput(1)) {
    std::optional<std::vector<int64_t>> given = ctx.constantInts(1);
    if (!given)
      return failure();
    if (given->size() != 1 || given->front() < 1)
      return ctx.error() << "dft_length must be one positive integer";
    n = given->front();
  }
  if (inverse && onesided && !complexIn)
    return ctx.error() << "an inverse one-sided DFT takes a complex spectrum";
  if (n < 1)
    return ctx.error() << "the DFT length must be positive";
  bool realOut = inverse && onesided;
  SmallVector<int64_t> outShape(type.getShape());
  outShape[axis] = !inverse && onesided ? n / 2 + 1 : n;
  outShape.back() = realOut ? 1 : 2;
  // The terms summed: the input positions read (an irfft reads bins 0 ..
  // N/2 only).
  int64_t terms = std::min(length, realOut ? n / 2 + 1 : n);
  Type element = type.getElementType();
  Type compute = cast<FloatType>(element).getWidth() >= 32
                     ? element
                     : Float32Type::get(element.getContext());
  double sign = inverse ? 1.0 : -1.0;
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto fc = [&](OpBuilder &cb, double v) {
          return scalarConstant(cb, loc, compute, v);
        };
        Value k = ivs[axis], part = ivs.back();
        auto loop = scf::ForOp::create(b, loc, indexConstant(b, loc, 0),
                                       indexConstant(b, loc, terms),
                                       indexConstant(b, loc, 1),
                                       ValueRange{fc(b, 0)});
        {
          OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
          Value m = loop.getInductionVar();
          SmallVector<Value> at(ivs.begin(), ivs.end());
          at[axis] = m;
          auto read = [&](int64_t c) -> Value {
            at.back() = indexConstant(lb, loc, c);
            Value v = tensor::ExtractOp::create(lb, loc, x, at);
            return v.getType() == compute ? v : castScalar(lb, loc, v, compute);
          };
          Value a = read(0);
          Value im = complexIn ? read(1) : fc(lb, 0);
          // The angle 2 pi (k m mod N) / N, reduced in integers.
          Value km = arith::RemUIOp::create(
              lb, loc, arith::MulIOp::create(lb, loc, k, m),
              indexConstant(lb, loc, n));
          Value angle = arith::MulFOp::create(
              lb, loc,
              arith::SIToFPOp::create(
                  lb, loc, compute,
                  arith::IndexCastOp::create(lb, loc, lb.getI64Type(), km)),
              fc(lb, 2 * M_PI / double(n)));
          Value cos = math::CosOp::create(lb, loc, angle);
          Value sin = arith::MulFOp::create(
              lb, loc, math::SinOp::create(lb, loc, angle), fc(lb, sign));
          // (a + i b)(cos + i s sin): real a cos - b s sin, imaginary
          // b cos + a s sin.
          Value re = arith::SubFOp::create(
              lb, loc, arith::MulFOp::create(lb, loc, a, cos),
              arith::MulFOp::create(lb, loc, im, sin));
          Value imag = arith::AddFOp::create(
              lb, loc, arith::MulFOp::create(lb, loc, im, cos),
              arith::MulFOp::create(lb, loc, a, sin));
          Value term = realOut ? re
                               : arith::SelectOp::create(
                                     lb, loc,
                                     arith::CmpIOp::create(
                                         lb, loc, arith::CmpIPredicate::eq,
                                         part, indexConstant(lb, loc, 0)),
                                     re, imag);
          if (realOut) {
            // Bins 1 .. ceil(N/2) - 1 stand for their mirror images too.
            Value mirrored = arith::AndIOp::create(
                lb, loc,
                arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::sgt, m,
                                      indexConstant(lb, loc, 0)),
                arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::slt,
                                      arith::MulIOp::create(
                                          lb, loc, m, indexConstant(lb, loc, 2)),
                                      indexConstant(lb, loc, n)));
            term = arith::SelectOp::create(
                lb, loc, mirrored, arith::MulFOp::create(lb, loc, term, fc(lb, 2)),
                term);
          }
          scf::YieldOp::create(
              lb, loc,
              ValueRange{arith::AddFOp::create(lb, loc, loop.getRegionIterArgs()[0],
                                               term)
                             .getResult()});
        }
        Value sum = loop.getResult(0);
        if (inverse)
          sum = arith::MulFOp::create(b, loc, sum, fc(b, 1.0 / double(n)));
        return sum.getType() == element ? sum : castScalar(b, loc, sum, element);
      });
  return ctx.setOutputs(out);
}

} // namespace

void registerIndexingOps(OpRegistry &registry) {
  registry.on("DFT", 17, importDFT);
  registry.on("GatherND", 11, importGatherND);
  registry.on("ReverseSequence", 10, importReverseSequence);
  registry.on("HannWindow", 17, [](NodeContext &ctx) {
    return importWindow(ctx, 0.5, 0.5, 0.0);
  });
  registry.on("HammingWindow", 17, [](NodeContext &ctx) {
    return importWindow(ctx, 25.0 / 46.0, 21.0 / 46.0, 0.0);
  });
  registry.on("BlackmanWindow", 17, [](NodeContext &ctx) {
    return importWindow(ctx, 0.42, 0.5, 0.08);
  });
}

} // namespace kiln::onnx
