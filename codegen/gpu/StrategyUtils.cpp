//===- StrategyUtils.cpp - configurations and the code strategies share ---===//
#include "codegen/gpu/Strategy.h"

using namespace mlir;

namespace kiln {

StringRef StrategyConfig::strategy() const {
  if (auto name = dict.getAs<StringAttr>("strategy"))
    return name.getValue();
  return "";
}

InFlightDiagnostic StrategyConfig::error() const {
  return op->emitError() << "kernel strategy '" << strategy() << "': ";
}

FailureOr<int64_t> StrategyConfig::getInt(StringRef key) const {
  auto value = dict.getAs<IntegerAttr>(key);
  if (!value || value.getInt() <= 0)
    return error() << "the configuration needs a positive integer '" << key
                   << "' (got " << dict << ")";
  return value.getInt();
}

FailureOr<SmallVector<int64_t>> StrategyConfig::getInts(StringRef key,
                                                        size_t size) const {
  auto value = dict.getAs<DenseI64ArrayAttr>(key);
  if (!value || value.size() != static_cast<int64_t>(size) ||
      llvm::any_of(value.asArrayRef(), [](int64_t v) { return v <= 0; }))
    return error() << "the configuration needs '" << key << "' as "
                   << "array<i64> of " << size << " positive values (got "
                   << dict << ")";
  return SmallVector<int64_t>(value.asArrayRef());
}

DictionaryAttr configFor(func::FuncOp kernel, StringRef name) {
  auto config = kernel->getAttrOfType<DictionaryAttr>(kConfigAttrName);
  if (!config)
    return nullptr;
  if (auto strategy = config.getAs<StringAttr>("strategy");
      strategy && strategy.getValue() == name)
    return config;
  return config.getAs<DictionaryAttr>(name);
}

Value constantIndex(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

SmallVector<Value> indicesFor(OpBuilder &b, Location loc, AffineMap map,
                              ArrayRef<Value> loops) {
  SmallVector<Value> indices;
  for (AffineExpr e : map.getResults()) {
    if (auto d = dyn_cast<AffineDimExpr>(e))
      indices.push_back(loops[d.getPosition()]);
    else
      indices.push_back(
          constantIndex(b, loc, cast<AffineConstantExpr>(e).getValue()));
  }
  return indices;
}

SmallVector<Value> delinearize(OpBuilder &b, Location loc, Value linear,
                               ArrayRef<int64_t> extents) {
  int64_t stride = 1;
  for (int64_t extent : extents)
    stride *= extent;
  SmallVector<Value> indices;
  for (auto [i, extent] : llvm::enumerate(extents)) {
    stride /= extent;
    Value index = linear;
    if (stride != 1)
      index = arith::DivUIOp::create(b, loc, index,
                                     constantIndex(b, loc, stride));
    // The outermost index needs no remainder: linear < the product.
    if (i != 0)
      index = arith::RemUIOp::create(b, loc, index,
                                     constantIndex(b, loc, extent));
    indices.push_back(index);
  }
  return indices;
}

bool hasScalarBody(linalg::LinalgOp op) {
  return llvm::all_of(op.getBlock()->without_terminator(), [](Operation &op) {
    return op.getNumRegions() == 0 &&
           isa<arith::ArithDialect, math::MathDialect>(op.getDialect());
  });
}

Launch createLaunch(OpBuilder &b, Location loc, std::array<Value, 3> grid,
                    std::array<int64_t, 3> block,
                    const StrategyConfig &config) {
  auto launch = gpu::LaunchOp::create(
      b, loc, grid[0], grid[1], grid[2], constantIndex(b, loc, block[0]),
      constantIndex(b, loc, block[1]), constantIndex(b, loc, block[2]));
  launch->setAttr(kConfigAttrName, config.attr());
  return {launch, OpBuilder::atBlockEnd(&launch.getBody().front())};
}

OpBuilder guardBelow(OpBuilder &b, Location loc, Value value, Value bound) {
  auto guard = scf::IfOp::create(
      b, loc,
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, value, bound),
      /*withElseRegion=*/false);
  return guard.getThenBodyBuilder();
}


std::optional<Combiner> matchCombiner(linalg::GenericOp op) {
  auto yield = cast<linalg::YieldOp>(op.getBody()->getTerminator());
  if (yield.getNumOperands() != 1)
    return std::nullopt;
  Operation *combine = yield.getOperand(0).getDefiningOp();
  if (!combine || combine->getBlock() != op.getBody() ||
      !isa<arith::AddFOp, arith::MulFOp, arith::MaxNumFOp, arith::MaximumFOp,
           arith::MinNumFOp, arith::MinimumFOp>(combine))
    return std::nullopt;
  BlockArgument acc = op.getBody()->getArguments().back();
  Value lhs = combine->getOperand(0), rhs = combine->getOperand(1);
  Value contribution = lhs == acc ? rhs : rhs == acc ? lhs : Value();
  if (!contribution)
    return std::nullopt;
  // The accumulator feeds only the combiner.
  if (!acc.hasOneUse())
    return std::nullopt;
  return Combiner{combine, contribution};
}

Value identityOf(OpBuilder &b, Location loc, Operation *combine, Type type) {
  auto floatType = cast<FloatType>(type);
  APFloat value = APFloat::getZero(floatType.getFloatSemantics());
  if (isa<arith::MulFOp>(combine))
    value = APFloat::getOne(floatType.getFloatSemantics());
  else if (isa<arith::MaxNumFOp, arith::MaximumFOp>(combine))
    value = APFloat::getInf(floatType.getFloatSemantics(), /*Negative=*/true);
  else if (isa<arith::MinNumFOp, arith::MinimumFOp>(combine))
    value = APFloat::getInf(floatType.getFloatSemantics());
  return arith::ConstantOp::create(b, loc, FloatAttr::get(type, value));
}

Value combineWith(OpBuilder &b, Location loc, Operation *combine, Value a,
                  Value c) {
  OperationState state(loc, combine->getName());
  state.addOperands({a, c});
  state.addTypes(a.getType());
  return b.create(state)->getResult(0);
}

} // namespace kiln

DictionaryAttr kiln::rowFusedConfig(Builder &b, int64_t length,
                                    int64_t warpSize, int64_t blockThreads) {
  // Warps per row until a lane holds at most 32 elements (up to 32 warps),
  // rows per block to fill the block.
  constexpr int64_t kMaxPerLane = 32;
  int64_t warps = 1;
  while (warps < 32 && llvm::divideCeil(length, warpSize * warps) > kMaxPerLane)
    warps *= 2;
  int64_t rows = std::max<int64_t>(1, blockThreads / (warpSize * warps));
  return b.getDictionaryAttr(
      {b.getNamedAttr("warps_per_row", b.getI64IntegerAttr(warps)),
       b.getNamedAttr("rows_per_block", b.getI64IntegerAttr(rows)),
       b.getNamedAttr("strategy", b.getStringAttr(kRowFused))});
}

