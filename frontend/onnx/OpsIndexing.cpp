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
                Value size) {
  Value i = arith::IndexCastOp::create(
      b, loc, b.getIndexType(), tensor::ExtractOp::create(b, loc, indices, at));
  Value zero = indexConstant(b, loc, 0);
  Value negative =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, zero);
  i = arith::SelectOp::create(b, loc, negative,
                              arith::AddIOp::create(b, loc, i, size), i);
  return arith::MinSIOp::create(
      b, loc, arith::MaxSIOp::create(b, loc, i, zero),
      arith::SubIOp::create(b, loc, size, indexConstant(b, loc, 1)));
}

Value readIndex(OpBuilder &b, Location loc, Value indices, ValueRange at,
                int64_t size) {
  return readIndex(b, loc, indices, at, indexConstant(b, loc, size));
}

LogicalResult importGatherND(NodeContext &ctx) {
  Value data = ctx.input(0), indices = ctx.input(1);
  if (!data || !indices)
    return failure();
  RankedTensorType type = ctx.inputType(0), indexType = ctx.inputType(1);
  // Symbolic dims (a mask of run-time length indexed by computed
  // positions, as the dynamo exporter writes transformers' masks): sizes
  // from the operands; the tuples' length must be known.
  if (indexType.getRank() < 1 || indexType.isDynamicDim(indexType.getRank() - 1))
    return ctx.error() << "GatherND needs index tuples of a fixed length, got "
                       << indexType;
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
    if (type.getDimSize(d) != indexType.getDimSize(d) ||
        type.isDynamicDim(d) != indexType.isDynamicDim(d))
      return ctx.error() << "GatherND batch dim " << d << " differs: data "
                         << type << ", indices " << indexType;
  OpBuilder &ob = ctx.b();
  Location ol = ctx.getLoc();
  // [indices' dims but the last] + data's dims after the gathered ones.
  SmallVector<int64_t> outShape;
  SmallVector<Value> outSizes;
  auto addDim = [&](Value source, RankedTensorType t, int64_t d) {
    outShape.push_back(t.getDimSize(d));
    if (t.isDynamicDim(d))
      outSizes.push_back(tensor::DimOp::create(ob, ol, source, d));
  };
  for (int64_t d = 0; d + 1 < q; ++d)
    addDim(indices, indexType, d);
  for (int64_t d = batchDims + k; d < r; ++d)
    addDim(data, type, d);
  if (llvm::is_contained(outShape, 0))
    return ctx.setOutputs(buildEmptyConstant(ob, ol, outShape,
                                             type.getElementType()));
  // The extent of each gathered dim, read at run time where symbolic.
  SmallVector<Value> extents;
  for (int64_t j = 0; j < k; ++j)
    extents.push_back(
        type.isDynamicDim(batchDims + j)
            ? tensor::DimOp::create(ob, ol, data, batchDims + j).getResult()
            : Value());
  Value out = buildIndexed(
      ob, ol, outShape, type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at(ivs.begin(), ivs.begin() + batchDims);
        SmallVector<Value> tuple(ivs.begin(), ivs.begin() + (q - 1));
        tuple.push_back(Value());
        for (int64_t j = 0; j < k; ++j) {
          tuple.back() = indexConstant(b, loc, j);
          at.push_back(extents[j]
                           ? readIndex(b, loc, indices, tuple, extents[j])
                           : readIndex(b, loc, indices, tuple,
                                       type.getDimSize(batchDims + j)));
        }
        for (Value iv : ivs.drop_front(q - 1))
          at.push_back(iv);
        return tensor::ExtractOp::create(b, loc, data, at);
      },
      outSizes);
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

/// The element type `output_datatype` (default float) names, for the ops
/// computed at import; null after reporting.
Type outputDatatype(NodeContext &ctx) {
  int64_t dataType = ctx.intAttr("output_datatype", 1);
  bool isUnsigned = false;
  Type elementType =
      toElementType(ctx.b().getContext(), dataType, &isUnsigned);
  if (!elementType || !isa<FloatType, IntegerType>(elementType)) {
    ctx.error() << "output_datatype " << dataTypeName(dataType)
                << " is not supported";
    return {};
  }
  ctx.setOutputUnsigned(0, isUnsigned);
  return elementType;
}

/// `values` (row-major, computed in double) as a constant of `shape` and
/// `element`, rounded to nearest for floats and truncated for integers.
LogicalResult setConstantOutput(NodeContext &ctx, ArrayRef<int64_t> shape,
                                ArrayRef<double> values, Type element) {
  auto type = RankedTensorType::get(shape, element);
  DenseElementsAttr attr;
  if (auto f = dyn_cast<FloatType>(element)) {
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
    unsigned width = cast<IntegerType>(element).getWidth();
    for (double v : values)
      ints.push_back(APInt(width, uint64_t(int64_t(v)), /*isSigned=*/true,
                           /*implicitTrunc=*/true));
    attr = DenseElementsAttr::get(type, ints);
  }
  return ctx.setOutputs(
      arith::ConstantOp::create(ctx.b(), ctx.getLoc(), type, attr).getResult());
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
  Type element = outputDatatype(ctx);
  if (!element)
    return failure();
  double denominator = periodic ? double(n) : double(n - 1);
  SmallVector<double> values;
  for (int64_t i = 0; i < n; ++i) {
    double x = 2 * M_PI * double(i) / denominator;
    values.push_back(a0 - a1 * std::cos(x) + a2 * std::cos(2 * x));
  }
  return setConstantOutput(ctx, {n}, values, element);
}

/// MelWeightMatrix (17): [dft_length / 2 + 1, num_mel_bins] triangular
/// filters between lower_edge_hertz and upper_edge_hertz, computed at
/// import with the reference's arithmetic (the band edges in the inputs'
/// float type, as NumPy computes them, then double).
LogicalResult importMelWeightMatrix(NodeContext &ctx) {
  std::optional<std::vector<int64_t>> mels = ctx.constantInts(0),
                                      dft = ctx.constantInts(1),
                                      rate = ctx.constantInts(2);
  if (!mels || !dft || !rate)
    return failure();
  auto edge = [&](int i) -> std::optional<APFloat> {
    if (!ctx.input(i))
      return std::nullopt;
    auto attr = dyn_cast_or_null<DenseElementsAttr>(ctx.constantElements(i));
    if (!attr || attr.getNumElements() != 1 ||
        !isa<FloatType>(attr.getElementType())) {
      ctx.error() << "input #" << i << " '" << ctx.getNode().input(i)
                  << "' must be a constant: one float" << ctx.freezeHint(i);
      return std::nullopt;
    }
    return *attr.getValues<APFloat>().begin();
  };
  std::optional<APFloat> lower = edge(3), upper = edge(4);
  if (!lower || !upper)
    return failure();
  if (mels->size() != 1 || dft->size() != 1 || rate->size() != 1 ||
      (*mels)[0] < 1 || (*dft)[0] < 1 || (*rate)[0] < 1)
    return ctx.error() << "num_mel_bins, dft_length and sample_rate must be "
                          "one positive integer each";
  Type element = outputDatatype(ctx);
  if (!element)
    return failure();
  int64_t numMels = (*mels)[0], length = (*dft)[0], sampleRate = (*rate)[0];
  int64_t bins = length / 2 + 1;
  // 2595 log10(1 + f / 700): the log1p and the product in the edges' type
  // (f32 unless they are f64), the division by ln(10) in double.
  bool single = &lower->getSemantics() != &APFloat::IEEEdouble();
  auto toMel = [&](APFloat hz) {
    bool lost;
    hz.convert(APFloat::IEEEdouble(), APFloat::rmNearestTiesToEven, &lost);
    double f = hz.convertToDouble(), product;
    if (single)
      product = double(2595.0f * std::log1p(float(f) / 700.0f));
    else
      product = 2595.0 * std::log1p(f / 700.0);
    return product / std::log(10.0);
  };
  double low = toMel(*lower), high = toMel(*upper);
  double step = (high - low) / double(numMels + 2);
  std::vector<int64_t> points;
  for (int64_t i = 0; i < numMels + 2; ++i) {
    double hz = 700.0 * std::expm1((double(i) * step + low) / 2595.0 * std::log(10.0));
    points.push_back(int64_t(std::floor(double(length + 1) * hz / double(sampleRate))));
  }
  SmallVector<double> values(bins * numMels, 0.0);
  auto at = [&](int64_t j, int64_t i) -> double * {
    return j >= 0 && j < bins ? &values[j * numMels + i] : nullptr;
  };
  for (int64_t i = 0; i < numMels; ++i) {
    int64_t left = points[i], center = points[i + 1], right = points[i + 2];
    if (center == left) {
      if (double *v = at(center, i))
        *v = 1;
    } else {
      for (int64_t j = left; j <= center; ++j)
        if (double *v = at(j, i))
          *v = double(j - left) / double(center - left);
    }
    for (int64_t j = center; right > center && j < right; ++j)
      if (double *v = at(j, i))
        *v = double(right - j) / double(right - center);
  }
  return setConstantOutput(ctx, {bins, numMels}, values, element);
}

/// One term of a discrete Fourier sum: (a + i b) exp(sign 2 pi i k n / N),
/// the angle reduced in integers ((k n) mod N) before it becomes a float;
/// returns the real and imaginary parts.
std::pair<Value, Value> fourierTerm(OpBuilder &b, Location loc, Type compute,
                                    Value a, Value im, Value k, Value n,
                                    int64_t length, double sign) {
  Value kn = arith::RemUIOp::create(b, loc, arith::MulIOp::create(b, loc, k, n),
                                    indexConstant(b, loc, length));
  Value angle = arith::MulFOp::create(
      b, loc,
      arith::SIToFPOp::create(
          b, loc, compute,
          arith::IndexCastOp::create(b, loc, b.getI64Type(), kn)),
      scalarConstant(b, loc, compute, 2 * M_PI / double(length)));
  Value cos = math::CosOp::create(b, loc, angle);
  Value sin = arith::MulFOp::create(b, loc, math::SinOp::create(b, loc, angle),
                                    scalarConstant(b, loc, compute, sign));
  // (a + i b)(cos + i sin): a cos - b sin, b cos + a sin.
  Value re = arith::SubFOp::create(b, loc, arith::MulFOp::create(b, loc, a, cos),
                                   arith::MulFOp::create(b, loc, im, sin));
  Value imag = arith::AddFOp::create(b, loc,
                                     arith::MulFOp::create(b, loc, im, cos),
                                     arith::MulFOp::create(b, loc, a, sin));
  return {re, imag};
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
          auto [re, imag] =
              fourierTerm(lb, loc, compute, a, im, k, m, n, sign);
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

/// Compress: the slices along `axis` (of the flattened input without one)
/// whose condition is true; a condition shorter than the axis leaves the
/// rest out. The condition decides the output's shape, so it must be a
/// constant; the kept positions become a constant index table.
LogicalResult importCompress(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (!type.hasStaticShape())
    return ctx.error() << "Compress needs static shapes";
  ElementsAttr condition = ctx.constantElements(1);
  if (!condition)
    return ctx.error() << "input #1 '" << ctx.getNode().input(1)
                       << "' must be a constant (an initializer or a Constant "
                          "node): the kept positions decide the output's shape"
                       << ctx.freezeHint(1);
  std::optional<int64_t> axis;
  if (ctx.hasAttr("axis")) {
    axis = normalizeAxis(ctx, ctx.intAttr("axis", 0), type.getRank());
    if (!axis)
      return failure();
  } else {
    x = buildReshape(ctx.b(), ctx.getLoc(), x, {type.getNumElements()});
    type = cast<RankedTensorType>(x.getType());
    axis = 0;
  }
  SmallVector<int64_t> kept;
  int64_t position = 0;
  for (APInt v : condition.getValues<APInt>()) {
    if (position >= type.getDimSize(*axis))
      break;
    if (!v.isZero())
      kept.push_back(position);
    ++position;
  }
  SmallVector<int64_t> outShape(type.getShape());
  outShape[*axis] = kept.size();
  if (kept.empty())
    return ctx.setOutputs(buildEmptyConstant(ctx.b(), ctx.getLoc(), outShape,
                                             type.getElementType()));
  auto tableType =
      RankedTensorType::get({int64_t(kept.size())}, ctx.b().getI64Type());
  Value table = arith::ConstantOp::create(
      ctx.b(), ctx.getLoc(), tableType,
      DenseElementsAttr::get(tableType, ArrayRef<int64_t>(kept)));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        SmallVector<Value> at(ivs.begin(), ivs.end());
        at[*axis] = arith::IndexCastOp::create(
            b, loc, b.getIndexType(),
            tensor::ExtractOp::create(b, loc, table, ValueRange{ivs[*axis]}));
        return tensor::ExtractOp::create(b, loc, x, at);
      });
  return ctx.setOutputs(out);
}

/// STFT (17): frames of `frame_length` (or the window's length) samples,
/// `frame_step` apart, each weighted by the window (ones without one) and
/// transformed as DFT does: out[b, f, k] = sum_n w[n] x[b, f step + n]
/// exp(-2 pi i k n / N); onesided (the default) keeps k <= N / 2.
LogicalResult importSTFT(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  if (!type.hasStaticShape() || type.getRank() != 3 ||
      !isa<FloatType>(type.getElementType()) ||
      (type.getShape().back() != 1 && type.getShape().back() != 2))
    return ctx.error() << "STFT takes a float signal [batch, length, 1 or 2] "
                          "of static shape, got "
                       << type;
  std::optional<std::vector<int64_t>> step = ctx.constantInts(1);
  if (!step)
    return failure();
  Value window = ctx.hasInput(2) ? ctx.input(2) : Value();
  if (ctx.hasInput(2) && !window)
    return failure();
  int64_t length = window ? ctx.inputType(2).getNumElements() : 0;
  if (ctx.hasInput(3)) {
    std::optional<std::vector<int64_t>> given = ctx.constantInts(3);
    if (!given)
      return failure();
    if (given->size() != 1 || (window && given->front() != length))
      return ctx.error() << "frame_length must be one integer, the window's "
                            "length when both are given";
    length = given->front();
  }
  int64_t samples = type.getDimSize(1);
  if (step->size() != 1 || step->front() < 1 || length < 1 ||
      length > samples)
    return ctx.error() << "STFT needs a positive frame_step and a frame "
                          "length of 1 to "
                       << samples << " samples (a window or frame_length)";
  int64_t hop = step->front();
  int64_t frames = 1 + (samples - length) / hop;
  bool onesided = ctx.intAttr("onesided", 1) != 0;
  bool complexIn = type.getShape().back() == 2;
  if (onesided && complexIn)
    return ctx.error() << "a one-sided STFT takes a real signal";
  int64_t bins = onesided ? length / 2 + 1 : length;
  Type element = type.getElementType();
  Type compute = cast<FloatType>(element).getWidth() >= 32
                     ? element
                     : Float32Type::get(element.getContext());
  SmallVector<int64_t> outShape = {type.getDimSize(0), frames, bins, 2};
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto fc = [&](OpBuilder &cb, double v) {
          return scalarConstant(cb, loc, compute, v);
        };
        auto widen = [&](OpBuilder &cb, Value v) {
          return v.getType() == compute ? v : castScalar(cb, loc, v, compute);
        };
        Value frame = ivs[1], k = ivs[2], part = ivs[3];
        auto loop = scf::ForOp::create(b, loc, indexConstant(b, loc, 0),
                                       indexConstant(b, loc, length),
                                       indexConstant(b, loc, 1),
                                       ValueRange{fc(b, 0)});
        {
          OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
          Value n = loop.getInductionVar();
          Value t = arith::AddIOp::create(
              lb, loc,
              arith::MulIOp::create(lb, loc, frame, indexConstant(lb, loc, hop)),
              n);
          Value w = window ? widen(lb, tensor::ExtractOp::create(
                                           lb, loc, window, ValueRange{n}))
                           : fc(lb, 1);
          auto read = [&](int64_t c) {
            return arith::MulFOp::create(
                lb, loc,
                widen(lb, tensor::ExtractOp::create(
                              lb, loc, x,
                              ValueRange{ivs[0], t, indexConstant(lb, loc, c)})),
                w);
          };
          Value a = read(0);
          Value im = complexIn ? read(1).getResult() : fc(lb, 0);
          auto [re, imag] =
              fourierTerm(lb, loc, compute, a, im, k, n, length, -1.0);
          Value term = arith::SelectOp::create(
              lb, loc,
              arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::eq, part,
                                    indexConstant(lb, loc, 0)),
              re, imag);
          scf::YieldOp::create(
              lb, loc,
              ValueRange{arith::AddFOp::create(lb, loc,
                                               loop.getRegionIterArgs()[0], term)
                             .getResult()});
        }
        Value sum = loop.getResult(0);
        return sum.getType() == element ? sum : castScalar(b, loc, sum, element);
      });
  return ctx.setOutputs(out);
}

/// Det of the [.., M, M] matrices: Gaussian elimination with partial
/// pivoting, unrolled over the M^2 elements of each matrix held in scalars
/// (M up to 8), in f64 for f32 and narrower inputs.
LogicalResult importDet(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  int64_t rank = type.getRank();
  if (!type.hasStaticShape() || rank < 2 ||
      type.getDimSize(rank - 1) != type.getDimSize(rank - 2) ||
      !isa<FloatType>(type.getElementType()))
    return ctx.error() << "Det takes float square matrices [.., M, M] of "
                          "static shape, got "
                       << type;
  int64_t m = type.getDimSize(rank - 1);
  if (m > 8)
    return ctx.error() << "Det of " << m << " x " << m
                       << " matrices is not supported (up to 8 x 8)";
  Type element = type.getElementType();
  SmallVector<int64_t> outShape(type.getShape().drop_back(2));
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Type f64 = b.getF64Type();
        auto fc = [&](double v) { return scalarConstant(b, loc, f64, v); };
        if (m == 0)
          return scalarConstant(b, loc, element, 1);
        SmallVector<SmallVector<Value>> a(m, SmallVector<Value>(m));
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < m; ++j) {
            SmallVector<Value> at(ivs.begin(), ivs.end());
            at.push_back(indexConstant(b, loc, i));
            at.push_back(indexConstant(b, loc, j));
            a[i][j] = castScalar(b, loc, tensor::ExtractOp::create(b, loc, x, at),
                                 f64);
          }
        Value det = fc(1);
        for (int64_t k = 0; k < m; ++k) {
          // The pivot: the row (from k) with the largest |a[i][k]|; rows
          // k and p swap, flipping the sign.
          Value best = math::AbsFOp::create(b, loc, a[k][k]);
          Value bestRow = indexConstant(b, loc, k);
          for (int64_t i = k + 1; i < m; ++i) {
            Value v = math::AbsFOp::create(b, loc, a[i][k]);
            Value larger =
                arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, v, best);
            best = arith::SelectOp::create(b, loc, larger, v, best);
            bestRow = arith::SelectOp::create(b, loc, larger,
                                              indexConstant(b, loc, i), bestRow);
          }
          SmallVector<Value> pivotRow(m);
          for (int64_t j = k; j < m; ++j) {
            pivotRow[j] = a[k][j];
            for (int64_t i = k + 1; i < m; ++i)
              pivotRow[j] = arith::SelectOp::create(
                  b, loc,
                  arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                        bestRow, indexConstant(b, loc, i)),
                  a[i][j], pivotRow[j]);
          }
          for (int64_t i = k + 1; i < m; ++i) {
            Value chosen = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::eq, bestRow,
                indexConstant(b, loc, i));
            for (int64_t j = k; j < m; ++j)
              a[i][j] = arith::SelectOp::create(b, loc, chosen, a[k][j], a[i][j]);
          }
          Value swapped = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ne, bestRow, indexConstant(b, loc, k));
          det = arith::SelectOp::create(
              b, loc, swapped, arith::NegFOp::create(b, loc, det), det);
          for (int64_t j = k; j < m; ++j)
            a[k][j] = pivotRow[j];
          Value pivot = a[k][k];
          det = arith::MulFOp::create(b, loc, det, pivot);
          // A zero pivot: the determinant is 0 (the division below is then
          // never used).
          Value zero =
              arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, pivot, fc(0));
          Value safe = arith::SelectOp::create(b, loc, zero, fc(1), pivot);
          for (int64_t i = k + 1; i < m; ++i) {
            Value factor = arith::DivFOp::create(b, loc, a[i][k], safe);
            for (int64_t j = k + 1; j < m; ++j)
              a[i][j] = arith::SubFOp::create(
                  b, loc, a[i][j], arith::MulFOp::create(b, loc, factor, a[k][j]));
          }
        }
        return castScalar(b, loc, det, element);
      });
  return ctx.setOutputs(out);
}

/// TensorScatter (24; a KV-cache update): the cache with the update's
/// positions along `axis` written from write_indices[batch] on (0 without
/// them); `circular` wraps them around the cache. Each cache element reads
/// the update when its position falls in the written range, else itself.
LogicalResult importTensorScatter(NodeContext &ctx) {
  Value cache = ctx.input(0), update = ctx.input(1);
  if (!cache || !update)
    return failure();
  Value indices = ctx.hasInput(2) ? ctx.input(2) : Value();
  if (ctx.hasInput(2) && !indices)
    return failure();
  RankedTensorType type = ctx.inputType(0), updateType = ctx.inputType(1);
  int64_t rank = type.getRank();
  if (!type.hasStaticShape() || !updateType.hasStaticShape() || rank < 2 ||
      updateType.getRank() != rank ||
      updateType.getElementType() != type.getElementType())
    return ctx.error() << "TensorScatter takes a cache and an update of one "
                          "rank (2 or more) and type, static shapes, got "
                       << type << " and " << updateType;
  std::optional<int64_t> axis =
      normalizeAxis(ctx, ctx.intAttr("axis", -2), rank);
  if (!axis)
    return failure();
  if (*axis == 0)
    return ctx.error() << "TensorScatter's axis must not be the batch axis";
  for (int64_t d = 0; d < rank; ++d)
    if (d == *axis ? updateType.getDimSize(d) > type.getDimSize(d)
                   : updateType.getDimSize(d) != type.getDimSize(d))
      return ctx.error() << "update " << updateType << " does not fit cache "
                         << type << " along dim " << d;
  if (indices && ctx.inputType(2).getShape() !=
                     ArrayRef<int64_t>{type.getDimSize(0)})
    return ctx.error() << "write_indices must be [" << type.getDimSize(0)
                       << "], got " << ctx.inputType(2);
  std::string mode = "linear";
  if (const auto *attr = ctx.attr("mode"))
    mode = attr->s();
  if (mode != "linear" && mode != "circular")
    return ctx.error() << "unknown mode '" << mode
                       << "' (expected linear or circular)";
  int64_t capacity = type.getDimSize(*axis), written = updateType.getDimSize(*axis);
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), type.getShape(), type.getElementType(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        auto c = [&](int64_t v) { return indexConstant(b, loc, v); };
        Value start = c(0);
        if (indices)
          start = arith::IndexCastOp::create(
              b, loc, b.getIndexType(),
              tensor::ExtractOp::create(b, loc, indices, ValueRange{ivs[0]}));
        // This position's offset in the update: (p - start), wrapped for
        // circular writes.
        Value offset = arith::SubIOp::create(b, loc, ivs[*axis], start);
        if (mode == "circular") {
          Value r = arith::RemSIOp::create(b, loc, offset, c(capacity));
          offset = arith::SelectOp::create(
              b, loc,
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, r, c(0)),
              arith::AddIOp::create(b, loc, r, c(capacity)), r);
        }
        Value hit = arith::AndIOp::create(
            b, loc,
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, offset, c(0)),
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, offset,
                                  c(written)));
        SmallVector<Value> at(ivs.begin(), ivs.end());
        at[*axis] = arith::MinSIOp::create(
            b, loc, arith::MaxSIOp::create(b, loc, offset, c(0)), c(written - 1));
        Value fromUpdate = tensor::ExtractOp::create(b, loc, update, at);
        Value kept = tensor::ExtractOp::create(b, loc, cache, ivs);
        return arith::SelectOp::create(b, loc, hit, fromUpdate, kept);
      });
  return ctx.setOutputs(out);
}

} // namespace

void registerIndexingOps(OpRegistry &registry) {
  registry.on("TensorScatter", 24, importTensorScatter);
  registry.on("STFT", 17, importSTFT);
  registry.on("Det", 11, importDet);
  registry.on("Compress", 9, importCompress);
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
  registry.on("MelWeightMatrix", 17, importMelWeightMatrix);
}

} // namespace kiln::onnx
