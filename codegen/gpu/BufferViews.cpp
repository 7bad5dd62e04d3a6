//===- BufferViews.cpp - data movement in a kernel read as strided views --===//
#include "codegen/gpu/BufferViews.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

using namespace mlir;
using namespace kiln;

namespace {

SmallVector<int64_t> rowMajorStrides(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * shape[d + 1];
  return strides;
}

/// A kernel function's buffer: a block argument of the function, row-major
/// with a static shape.
bool isKernelBuffer(Value value) {
  auto type = dyn_cast<MemRefType>(value.getType());
  auto arg = dyn_cast<BlockArgument>(value);
  return type && arg && type.hasStaticShape() &&
         type.getLayout().isIdentity() &&
         isa<func::FuncOp>(arg.getOwner()->getParentOp());
}

/// `value` itself as a view of a kernel buffer: the buffer, or a chain of
/// view ops over one with a static layout.
std::optional<StridedView> staticView(Value value) {
  if (isKernelBuffer(value)) {
    auto type = cast<MemRefType>(value.getType());
    return StridedView{value, 0, rowMajorStrides(type.getShape())};
  }
  auto type = dyn_cast<MemRefType>(value.getType());
  if (!type || !type.hasStaticShape())
    return std::nullopt;
  Value root = value;
  while (auto view = root.getDefiningOp<ViewLikeOpInterface>())
    root = view.getViewSource();
  if (root == value || !isKernelBuffer(root))
    return std::nullopt;
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(type.getStridesAndOffset(strides, offset)) ||
      ShapedType::isDynamic(offset) ||
      llvm::any_of(strides, ShapedType::isDynamic))
    return std::nullopt;
  return StridedView{root, offset, strides};
}

/// constant + sum(coefficients[d] * loop index d).
struct AffineIndex {
  int64_t constant = 0;
  SmallVector<int64_t> coefficients;

  bool isConstant() const {
    return llvm::all_of(coefficients, [](int64_t c) { return c == 0; });
  }
  AffineIndex plus(const AffineIndex &other, int64_t sign = 1) const {
    AffineIndex sum = *this;
    sum.constant += sign * other.constant;
    for (auto [a, b] : llvm::zip(sum.coefficients, other.coefficients))
      a += sign * b;
    return sum;
  }
  AffineIndex times(int64_t factor) const {
    AffineIndex product = *this;
    product.constant *= factor;
    for (int64_t &c : product.coefficients)
      c *= factor;
    return product;
  }
};

std::optional<AffineIndex> affineIndex(Value value, unsigned loops);

std::optional<AffineIndex> affineIndex(AffineExpr expr,
                                       ArrayRef<AffineIndex> dims,
                                       ArrayRef<AffineIndex> symbols,
                                       unsigned loops) {
  if (auto dim = dyn_cast<AffineDimExpr>(expr))
    return dims[dim.getPosition()];
  if (auto symbol = dyn_cast<AffineSymbolExpr>(expr))
    return symbols[symbol.getPosition()];
  if (auto constant = dyn_cast<AffineConstantExpr>(expr)) {
    AffineIndex index{constant.getValue(), SmallVector<int64_t>(loops, 0)};
    return index;
  }
  auto binary = dyn_cast<AffineBinaryOpExpr>(expr);
  if (!binary)
    return std::nullopt;
  std::optional<AffineIndex> lhs =
      affineIndex(binary.getLHS(), dims, symbols, loops);
  std::optional<AffineIndex> rhs =
      affineIndex(binary.getRHS(), dims, symbols, loops);
  if (!lhs || !rhs)
    return std::nullopt;
  if (expr.getKind() == AffineExprKind::Add)
    return lhs->plus(*rhs);
  if (expr.getKind() == AffineExprKind::Mul) {
    if (rhs->isConstant())
      return lhs->times(rhs->constant);
    if (lhs->isConstant())
      return rhs->times(lhs->constant);
  }
  return std::nullopt;
}

/// An index a generic's body computes from linalg.index by integer
/// arithmetic, as an affine function of its loops.
std::optional<AffineIndex> affineIndex(Value value, unsigned loops) {
  if (std::optional<int64_t> c = getConstantIntValue(value))
    return AffineIndex{*c, SmallVector<int64_t>(loops, 0)};
  Operation *def = value.getDefiningOp();
  if (!def)
    return std::nullopt;
  if (auto index = dyn_cast<linalg::IndexOp>(def)) {
    AffineIndex unit{0, SmallVector<int64_t>(loops, 0)};
    if (index.getDim() >= loops)
      return std::nullopt;
    unit.coefficients[index.getDim()] = 1;
    return unit;
  }
  if (isa<arith::AddIOp, arith::SubIOp, arith::MulIOp>(def)) {
    std::optional<AffineIndex> lhs = affineIndex(def->getOperand(0), loops);
    std::optional<AffineIndex> rhs = affineIndex(def->getOperand(1), loops);
    if (!lhs || !rhs)
      return std::nullopt;
    if (isa<arith::AddIOp>(def))
      return lhs->plus(*rhs);
    if (isa<arith::SubIOp>(def))
      return lhs->plus(*rhs, -1);
    if (rhs->isConstant())
      return lhs->times(rhs->constant);
    if (lhs->isConstant())
      return rhs->times(lhs->constant);
    return std::nullopt;
  }
  if (auto apply = dyn_cast<affine::AffineApplyOp>(def)) {
    AffineMap map = apply.getAffineMap();
    SmallVector<AffineIndex> operands;
    for (Value operand : apply.getMapOperands()) {
      std::optional<AffineIndex> index = affineIndex(operand, loops);
      if (!index)
        return std::nullopt;
      operands.push_back(*index);
    }
    ArrayRef<AffineIndex> all(operands);
    return affineIndex(map.getResult(0), all.take_front(map.getNumDims()),
                       all.drop_front(map.getNumDims()), loops);
  }
  return std::nullopt;
}

/// The view of a generic's result element [loops] given where what it
/// yields lies.
std::optional<StridedView> throughGeneric(linalg::GenericOp generic,
                                          Movement &movement) {
  if (!kiln::movesData(generic))
    return std::nullopt;
  unsigned loops = generic.getNumLoops();
  Value yielded = generic.getBody()->getTerminator()->getOperand(0);
  if (auto arg = dyn_cast<BlockArgument>(yielded)) {
    if (arg.getOwner() != generic.getBody() ||
        arg.getArgNumber() >= generic.getNumDpsInputs())
      return std::nullopt;
    OpOperand *input = generic.getDpsInputOperand(arg.getArgNumber());
    AffineMap map = generic.getMatchingIndexingMap(input);
    std::optional<StridedView> source =
        sourceView(input->get(), generic, movement);
    if (!source || !map.isProjectedPermutation())
      return std::nullopt;
    StridedView view{source->base, source->offset,
                     SmallVector<int64_t>(loops, 0)};
    for (auto [k, result] : llvm::enumerate(map.getResults()))
      view.strides[cast<AffineDimExpr>(result).getPosition()] +=
          source->strides[k];
    return view;
  }
  auto load = yielded.getDefiningOp<memref::LoadOp>();
  if (!load || load->getParentOp() != generic.getOperation())
    return std::nullopt;
  std::optional<StridedView> source =
      sourceView(load.getMemRef(), generic, movement);
  if (!source)
    return std::nullopt;
  StridedView view{source->base, source->offset,
                   SmallVector<int64_t>(loops, 0)};
  for (auto [k, index] : llvm::enumerate(load.getIndices())) {
    std::optional<AffineIndex> affine = affineIndex(index, loops);
    if (!affine)
      return std::nullopt;
    view.offset += source->strides[k] * affine->constant;
    for (unsigned d = 0; d < loops; ++d)
      view.strides[d] += source->strides[k] * affine->coefficients[d];
  }
  return view;
}

} // namespace

namespace {
/// All parallel, one init with the identity map whose element it ignores:
/// what movesData and computesElements both ask first.
bool writesEachElementOnce(linalg::GenericOp generic) {
  return generic.getNumDpsInits() == 1 &&
         generic.getNumParallelLoops() == generic.getNumLoops() &&
         generic.getMatchingIndexingMap(generic.getDpsInitOperand(0))
             .isIdentity() &&
         generic.getMatchingBlockArgument(generic.getDpsInitOperand(0))
             .use_empty();
}
} // namespace

bool kiln::computesElements(linalg::GenericOp generic) {
  if (!writesEachElementOnce(generic))
    return false;
  unsigned count = 0;
  for (Operation &op : generic.getBody()->without_terminator()) {
    if (++count > kMaxComputedOps || op.getNumRegions() ||
        op.getNumResults() != 1 ||
        !(isa<linalg::IndexOp, tensor::ExtractOp, memref::LoadOp,
              affine::AffineApplyOp>(op) ||
          op.getDialect()->getNamespace() == "arith") ||
        !op.getResult(0).getType().isIntOrIndexOrFloat())
      return false;
  }
  return true;
}

bool kiln::movesData(linalg::GenericOp generic) {
  if (!writesEachElementOnce(generic))
    return false;
  Block *body = generic.getBody();
  for (Operation &op : body->without_terminator())
    if (!isa<linalg::IndexOp, arith::ConstantOp, arith::AddIOp, arith::SubIOp,
             arith::MulIOp, affine::AffineApplyOp, tensor::ExtractOp,
             memref::LoadOp>(op))
      return false;
  Value yielded = body->getTerminator()->getOperand(0);
  if (auto arg = dyn_cast<BlockArgument>(yielded))
    return arg.getOwner() == body &&
           arg.getArgNumber() < generic.getNumDpsInputs() &&
           generic
               .getMatchingIndexingMap(
                   generic.getDpsInputOperand(arg.getArgNumber()))
               .isProjectedPermutation();
  Operation *read = yielded.getDefiningOp();
  return read && read->getBlock() == body &&
         isa<tensor::ExtractOp, memref::LoadOp>(read);
}

bool StridedView::alignedTo(int64_t elements) const {
  if (strides.empty() || strides.back() != 1 || offset % elements)
    return false;
  return llvm::all_of(ArrayRef<int64_t>(strides).drop_back(),
                      [&](int64_t s) { return s % elements == 0; });
}

Value StridedView::build(OpBuilder &b, Location loc,
                         ArrayRef<int64_t> shape) const {
  auto baseType = cast<MemRefType>(base.getType());
  auto layout = StridedLayoutAttr::get(b.getContext(), offset, strides);
  auto type = MemRefType::get(shape, baseType.getElementType(), layout,
                              baseType.getMemorySpace());
  SmallVector<OpFoldResult> sizes, steps;
  for (auto [size, stride] : llvm::zip(shape, strides)) {
    sizes.push_back(b.getIndexAttr(size));
    steps.push_back(b.getIndexAttr(stride));
  }
  return memref::ReinterpretCastOp::create(
      b, loc, type, base, b.getIndexAttr(offset), sizes, steps);
}

void Movement::erase() {
  for (Operation *step : steps)
    step->erase();
  for (Value temporary : temporaries) {
    for (Operation *user : llvm::make_early_inc_range(temporary.getUsers()))
      if (isa<memref::DeallocOp>(user))
        user->erase();
    if (temporary.use_empty())
      temporary.getDefiningOp()->erase();
  }
  steps.clear();
  temporaries.clear();
}

std::optional<StridedView> kiln::sourceView(Value buffer, Operation *reader,
                                            Movement &movement) {
  if (std::optional<StridedView> view = staticView(buffer))
    return view;
  auto alloc = buffer.getDefiningOp<memref::AllocOp>();
  if (!alloc || !alloc.getType().hasStaticShape() ||
      !alloc.getType().getLayout().isIdentity())
    return std::nullopt;
  // One step writes it, `reader` reads it, and it is freed.
  Operation *step = nullptr;
  for (Operation *user : buffer.getUsers()) {
    if (reader->isAncestor(user) || isa<memref::DeallocOp>(user))
      continue;
    if (step)
      return std::nullopt;
    step = user;
  }
  if (!step || step->getBlock() != reader->getBlock() ||
      !step->isBeforeInBlock(reader))
    return std::nullopt;
  Movement inner;
  std::optional<StridedView> view;
  if (auto copy = dyn_cast<memref::CopyOp>(step)) {
    if (copy.getTarget() == buffer)
      view = sourceView(copy.getSource(), step, inner);
  } else if (auto transpose = dyn_cast<linalg::TransposeOp>(step)) {
    if (transpose.getInit() == buffer) {
      view = sourceView(transpose.getInput(), step, inner);
      if (view) {
        SmallVector<int64_t> strides;
        for (int64_t p : transpose.getPermutation())
          strides.push_back(view->strides[p]);
        view->strides = strides;
      }
    }
  } else if (auto generic = dyn_cast<linalg::GenericOp>(step)) {
    if (generic.getNumDpsInits() == 1 &&
        generic.getDpsInitOperand(0)->get() == buffer &&
        llvm::none_of(generic.getDpsInputs(),
                      [&](Value v) { return v == buffer; }))
      view = throughGeneric(generic, inner);
  }
  if (!view)
    return std::nullopt;
  movement.steps.insert(step);
  movement.steps.insert_range(inner.steps);
  movement.temporaries.insert(buffer);
  movement.temporaries.insert_range(inner.temporaries);
  return view;
}

std::optional<StridedView> kiln::targetView(Operation *step, Value value) {
  auto rank = cast<MemRefType>(value.getType()).getRank();
  if (auto copy = dyn_cast<memref::CopyOp>(step)) {
    if (copy.getSource() == value)
      return staticView(copy.getTarget());
    return std::nullopt;
  }
  if (auto transpose = dyn_cast<linalg::TransposeOp>(step)) {
    std::optional<StridedView> target = staticView(transpose.getInit());
    if (transpose.getInput() != value || !target)
      return std::nullopt;
    // Output dim i is input dim permutation[i].
    SmallVector<int64_t> strides(rank, 0);
    for (auto [i, p] : llvm::enumerate(transpose.getPermutation()))
      strides[p] = target->strides[i];
    target->strides = strides;
    return target;
  }
  auto generic = dyn_cast<linalg::GenericOp>(step);
  if (!generic || generic.getNumDpsInputs() != 1 ||
      generic.getDpsInputs()[0] != value || !kiln::movesData(generic))
    return std::nullopt;
  OpOperand *input = generic.getDpsInputOperand(0);
  AffineMap map = generic.getMatchingIndexingMap(input);
  if (generic.getBody()->getTerminator()->getOperand(0) !=
          generic.getMatchingBlockArgument(input) ||
      !map.isPermutation())
    return std::nullopt;
  std::optional<StridedView> target =
      staticView(generic.getDpsInitOperand(0)->get());
  if (!target)
    return std::nullopt;
  // Input dim k is loop (= output dim) map[k].
  SmallVector<int64_t> strides(rank, 0);
  for (auto [k, result] : llvm::enumerate(map.getResults()))
    strides[k] = target->strides[cast<AffineDimExpr>(result).getPosition()];
  target->strides = strides;
  return target;
}
