//===- GemmCommon.cpp - what the GEMM strategies share --------------------===//
//
// Operand layouts (16-byte chunks along the innermost dimension), the
// multiply-accumulate body, and fused epilogues: the elementwise generic
// kiln-gpu-fuse-epilogues put after a contraction, found on buffers and
// evaluated on accumulators in registers.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace kiln;

std::optional<unsigned> kiln::innermostLoop(AffineMap map) {
  if (map.getNumResults() == 0)
    return std::nullopt;
  if (auto d = dyn_cast<AffineDimExpr>(map.getResults().back()))
    return d.getPosition();
  return std::nullopt;
}

bool kiln::chunkable(Type type, int64_t elements) {
  auto shaped = dyn_cast<ShapedType>(type);
  if (!shaped || shaped.getRank() < 1 ||
      ShapedType::isDynamic(shaped.getShape().back()))
    return false;
  if (auto memref = dyn_cast<MemRefType>(type)) {
    SmallVector<int64_t> strides;
    int64_t offset;
    if (failed(memref.getStridesAndOffset(strides, offset)) ||
        strides.back() != 1 || ShapedType::isDynamic(offset) ||
        offset % elements)
      return false;
    // A symbolic stride is the next inner stride times that dim's extent
    // (buffers with symbolic dims are row-major views of base pointers):
    // a multiple of `elements` when either factor is.
    int64_t rank = memref.getRank();
    bool innerMultiple = elements == 1;  // of the innermost stride, 1
    for (int64_t d = rank - 2; d >= 0; --d) {
      bool multiple;
      if (!ShapedType::isDynamic(strides[d]))
        multiple = strides[d] % elements == 0;
      else
        multiple = innerMultiple ||
                   (!memref.isDynamicDim(d + 1) &&
                    memref.getDimSize(d + 1) % elements == 0);
      if (!multiple)
        return false;
      innerMultiple = multiple;
    }
    return true;
  }
  return shaped.getShape().back() % elements == 0;
}

bool kiln::isMultiplyAccumulate(linalg::LinalgOp op) {
  Block *body = op.getBlock();
  auto yield = cast<linalg::YieldOp>(body->getTerminator());
  auto add = yield.getValues().front().getDefiningOp<arith::AddFOp>();
  if (!add)
    return false;
  Value acc = body->getArgument(2);
  Value product = add.getLhs() == acc ? add.getRhs() : add.getLhs();
  if (add.getLhs() != acc && add.getRhs() != acc)
    return false;
  auto mul = product.getDefiningOp<arith::MulFOp>();
  if (!mul)
    return false;
  auto input = [&](Value v) {
    if (auto ext = v.getDefiningOp<arith::ExtFOp>())
      v = ext.getIn();
    auto arg = dyn_cast<BlockArgument>(v);
    return arg && arg.getOwner() == body ? int(arg.getArgNumber()) : -1;
  };
  int x = input(mul.getLhs()), y = input(mul.getRhs());
  return (x == 0 && y == 1) || (x == 1 && y == 0);
}

linalg::GenericOp kiln::fusedEpilogue(linalg::LinalgOp op) {
  Value acc = op.getDpsInitOperand(0)->get();
  if (!acc.getDefiningOp<memref::AllocOp>())
    return nullptr;
  linalg::GenericOp epilogue;
  for (Operation *user : acc.getUsers()) {
    if (user == op.getOperation() || isa<memref::DeallocOp>(user))
      continue;
    if (auto fill = dyn_cast<linalg::FillOp>(user);
        fill && fill->getNextNode() == op.getOperation())
      continue;
    auto generic = dyn_cast<linalg::GenericOp>(user);
    if (!generic || epilogue || generic->getBlock() != op->getBlock() ||
        !op->isBeforeInBlock(generic))
      return nullptr;
    epilogue = generic;
  }
  if (!epilogue || !epilogueAccepts(epilogue, acc) ||
      !epilogue.hasPureBufferSemantics())
    return nullptr;
  return epilogue;
}

bool kiln::pairable(Value buffer, AffineMap map, unsigned inner) {
  auto type = dyn_cast<MemRefType>(buffer.getType());
  SmallVector<int64_t> strides;
  int64_t offset;
  if (!type || innermostLoop(map) != inner ||
      failed(type.getStridesAndOffset(strides, offset)) ||
      strides.back() != 1 || ShapedType::isDynamic(offset) || offset % 2)
    return false;
  return llvm::all_of(ArrayRef<int64_t>(strides).drop_back(), [](int64_t s) {
    return !ShapedType::isDynamic(s) && s % 2 == 0;
  });
}

bool kiln::staticRowLayout(Value buffer, AffineMap map, unsigned inner,
                           SmallVectorImpl<int64_t> &strides,
                           int64_t &offset) {
  auto type = dyn_cast<MemRefType>(buffer.getType());
  strides.clear();
  if (!type || innermostLoop(map) != inner ||
      failed(type.getStridesAndOffset(strides, offset)) || strides.empty() ||
      strides.back() != 1 || ShapedType::isDynamic(offset))
    return false;
  return llvm::none_of(strides, ShapedType::isDynamic);
}

SmallVector<Value> kiln::applyEpilogue(OpBuilder &b, Location loc,
                                       linalg::GenericOp epilogue,
                                       Value temporary, ArrayRef<Value> loops,
                                       ArrayRef<Value> accs) {
  SmallVector<SmallVector<Value>> operands(accs.size());
  for (OpOperand *input : epilogue.getDpsInputOperands()) {
    if (input->get() == temporary) {
      for (auto [i, acc] : llvm::enumerate(accs))
        operands[i].push_back(acc);
      continue;
    }
    AffineMap map = epilogue.getMatchingIndexingMap(input);
    Type type = getElementTypeOrSelf(input->get().getType());
    if (accs.size() == 2 && pairable(input->get(), map, loops.size() - 1)) {
      Value pair = vector::LoadOp::create(
          b, loc, VectorType::get({2}, type), input->get(),
          indicesFor(b, loc, map, loops), /*nontemporal=*/false,
          llvm::MaybeAlign(2 * type.getIntOrFloatBitWidth() / 8));
      for (int64_t i = 0; i < 2; ++i)
        operands[i].push_back(
            vector::ExtractOp::create(b, loc, pair, ArrayRef<int64_t>{i}));
      continue;
    }
    for (size_t i = 0; i < accs.size(); ++i) {
      SmallVector<Value> at(loops);
      if (i)
        at.back() = arith::AddIOp::create(b, loc, at.back(),
                                          constantIndex(b, loc, i));
      operands[i].push_back(memref::LoadOp::create(
          b, loc, input->get(), indicesFor(b, loc, map, at)));
    }
  }
  SmallVector<Value> results;
  Block *body = epilogue.getBlock();
  for (SmallVector<Value> &values : operands) {
    IRMapping mapping;
    for (auto [arg, value] : llvm::zip(body->getArguments(), values))
      mapping.map(arg, value);
    for (Operation &bodyOp : body->without_terminator())
      b.clone(bodyOp, mapping);
    results.push_back(mapping.lookup(body->getTerminator()->getOperand(0)));
  }
  return results;
}

Value kiln::evaluateDecoded(OpBuilder &b, Location loc,
                            linalg::GenericOp decode, ArrayRef<Value> indices) {
  IRMapping mapping;
  Block *body = decode.getBlock();
  for (OpOperand *input : decode.getDpsInputOperands())
    mapping.map(decode.getMatchingBlockArgument(input),
                memref::LoadOp::create(
                    b, loc, input->get(),
                    indicesFor(b, loc, decode.getMatchingIndexingMap(input),
                               indices)));
  for (Operation &bodyOp : body->without_terminator()) {
    if (auto index = dyn_cast<linalg::IndexOp>(bodyOp)) {
      mapping.map(index.getResult(), indices[index.getDim()]);
      continue;
    }
    // Index arithmetic by constants becomes affine, composed with the
    // indices' own (alignedIndex): the elements of a chunk that share a
    // packed byte, a scale or a zero point then compute the same address,
    // and CSE keeps one load of it.
    if (std::optional<AffineExpr> expr = affineIndexArithmetic(bodyOp)) {
      SmallVector<OpFoldResult> operands;
      for (Value operand : bodyOp.getOperands())
        if (!matchPattern(operand, m_Constant()))
          operands.push_back(mapping.lookupOrDefault(operand));
      AffineMap map = AffineMap::get(operands.size(), 0, *expr);
      mapping.map(bodyOp.getResult(0),
                  getValueOrCreateConstantIndexOp(
                      b, loc,
                      affine::makeComposedFoldedAffineApply(b, loc, map,
                                                            operands)));
      continue;
    }
    b.clone(bodyOp, mapping);
  }
  return mapping.lookup(body->getTerminator()->getOperand(0));
}

std::optional<AffineExpr> kiln::affineIndexArithmetic(Operation &op) {
  if (op.getNumResults() != 1 || !op.getResult(0).getType().isIndex() ||
      op.getNumOperands() != 2 ||
      !isa<arith::AddIOp, arith::SubIOp, arith::MulIOp, arith::DivUIOp,
           arith::RemUIOp>(op))
    return std::nullopt;
  // Operands in order; a constant is folded in, the others are dims
  // (values of loop indices: never negative, so unsigned division is
  // floordiv).
  MLIRContext *ctx = op.getContext();
  SmallVector<AffineExpr> terms;
  unsigned dims = 0;
  std::optional<int64_t> constantOperand;
  for (Value operand : op.getOperands()) {
    APInt value;
    if (matchPattern(operand, m_ConstantInt(&value))) {
      terms.push_back(getAffineConstantExpr(value.getSExtValue(), ctx));
      constantOperand = value.getSExtValue();
    } else {
      terms.push_back(getAffineDimExpr(dims++, ctx));
    }
  }
  AffineExpr x = terms[0], y = terms[1];
  if (isa<arith::AddIOp>(op))
    return x + y;
  if (isa<arith::SubIOp>(op))
    return x - y;
  // Products, quotients and remainders by a positive constant only.
  if (!constantOperand || *constantOperand <= 0 || dims != 1)
    return std::nullopt;
  if (isa<arith::MulIOp>(op))
    return x * y;
  if (!isa<AffineConstantExpr>(y))
    return std::nullopt;
  if (isa<arith::DivUIOp>(op))
    return x.floorDiv(y);
  return x % y;
}

Value kiln::alignedIndex(OpBuilder &b, Location loc, Value base,
                         int64_t multiple, int64_t offset) {
  AffineExpr d0 = getAffineDimExpr(0, b.getContext());
  return getValueOrCreateConstantIndexOp(
      b, loc,
      affine::makeComposedFoldedAffineApply(
          b, loc, AffineMap::get(1, 0, d0.floorDiv(multiple) * multiple + offset),
          {OpFoldResult(base)}));
}

void kiln::eraseDecoded(linalg::GenericOp decode) {
  Value temporary = decode.getDpsInitOperand(0)->get();
  decode.erase();
  for (Operation *user : llvm::make_early_inc_range(temporary.getUsers()))
    user->erase(); // deallocations
  temporary.getDefiningOp()->erase();
}

void kiln::eraseFusedEpilogue(linalg::GenericOp epilogue, Value temporary) {
  epilogue.erase();
  for (Operation *user : llvm::make_early_inc_range(temporary.getUsers()))
    user->erase(); // deallocations
  temporary.getDefiningOp()->erase();
}

LogicalResult kiln::applyGemmStrategy(
    func::FuncOp func, StringRef name,
    function_ref<FailureOr<bool>(linalg::LinalgOp, const StrategyConfig &,
                                 FusedEpilogues &)>
        rewrite) {
  FusedEpilogues fused;
  if (failed(applyStrategy<linalg::LinalgOp>(
          func, name, [&](linalg::LinalgOp op, const StrategyConfig &config) {
            if (llvm::any_of(fused, [&](auto &f) {
                  return f.first.getOperation() == op.getOperation();
                }))
              return FailureOr<bool>(true);
            return rewrite(op, config, fused);
          })))
    return failure();
  for (auto [epilogue, temporary] : fused)
    eraseFusedEpilogue(epilogue, temporary);
  return success();
}
