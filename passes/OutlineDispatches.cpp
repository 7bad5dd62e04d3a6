//===- OutlineDispatches.cpp - kiln.dispatch bodies into kernel functions -===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/IR/SymbolTable.h"

namespace kiln {
#define GEN_PASS_DEF_KILNOUTLINEDISPATCHES
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// The kernel argument for a tensor: a static memref, or for a tensor with
/// symbolic dims a rank-0 memref that only carries the base pointer (the
/// kernel rebuilds the shape from its size arguments). Kernels thus take
/// one bare pointer per buffer on every target.
MemRefType toMemRef(Type type) {
  auto tensorType = cast<RankedTensorType>(type);
  if (!tensorType.hasStaticShape())
    return MemRefType::get({}, tensorType.getElementType());
  return MemRefType::get(tensorType.getShape(), tensorType.getElementType());
}

/// The row-major memref of `type` (a tensor type with symbolic dims) at the
/// base pointer `base`, its dynamic sizes taken from `sizes` in order.
Value viewWithSizes(OpBuilder &b, Location loc, Value base,
                    RankedTensorType type, ValueRange sizes) {
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> mixedSizes;
  unsigned next = 0;
  for (int64_t d = 0; d < rank; ++d)
    mixedSizes.push_back(type.isDynamicDim(d)
                             ? OpFoldResult(sizes[next++])
                             : OpFoldResult(b.getIndexAttr(type.getDimSize(d))));
  SmallVector<OpFoldResult> strides(rank);
  int64_t staticStride = 1;
  Value dynamicStride;
  for (int64_t d = rank - 1; d >= 0; --d) {
    strides[d] = dynamicStride ? OpFoldResult(dynamicStride)
                               : OpFoldResult(b.getIndexAttr(staticStride));
    if (d == 0)
      break;
    if (!type.isDynamicDim(d) && !dynamicStride) {
      staticStride *= type.getDimSize(d);
      continue;
    }
    Value current = dynamicStride
                        ? dynamicStride
                        : arith::ConstantIndexOp::create(b, loc, staticStride)
                              .getResult();
    Value size = type.isDynamicDim(d)
                     ? cast<Value>(mixedSizes[d])
                     : arith::ConstantIndexOp::create(b, loc,
                                                      type.getDimSize(d))
                           .getResult();
    dynamicStride = arith::MulIOp::create(b, loc, current, size);
  }
  auto memrefType =
      MemRefType::get(type.getShape(), type.getElementType());
  return memref::ReinterpretCastOp::create(b, loc, memrefType, base,
                                           b.getIndexAttr(0), mixedSizes,
                                           strides);
}

struct KilnOutlineDispatchesPass final
    : kiln::impl::KilnOutlineDispatchesBase<KilnOutlineDispatchesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> entries;
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal())
        entries.push_back(func);
    if (entries.empty())
      return;
    // The kernels live in their own module, as GPU kernels live in a
    // gpu.module: codegen takes it whole, entry functions stay outside.
    ModuleOp kernels = getOrCreateKernelModule(module);
    SymbolTable symbols(kernels);

    for (func::FuncOp entry : entries) {
      unsigned index = 0;
      WalkResult result = entry.walk([&](DispatchOp dispatch) {
        if (dispatch->hasAttr("kernel"))
          return WalkResult::advance(); // outlined already
        outline(symbols, kernels, entry, dispatch, index++);
        return WalkResult::advance();
      });
      if (result.wasInterrupted())
        return signalPassFailure();
    }
  }

  static ModuleOp getOrCreateKernelModule(ModuleOp module) {
    for (auto nested : module.getOps<ModuleOp>())
      if (nested.getSymName() == kKernelModuleName)
        return nested;
    OpBuilder builder = OpBuilder::atBlockEnd(module.getBody());
    auto nested = ModuleOp::create(builder, module.getLoc(), kKernelModuleName);
    return nested;
  }

  void outline(SymbolTable &symbols, ModuleOp kernels, func::FuncOp entry,
               DispatchOp dispatch, unsigned index) {
    Location loc = dispatch.getLoc();
    OpBuilder builder = OpBuilder::atBlockEnd(kernels.getBody());
    // One argument per buffer (inputs, then results), then one index per
    // symbolic dim of those buffers, in the same order.
    SmallVector<Type> bufferTypes(dispatch.getInputs().getTypes());
    llvm::append_range(bufferTypes, dispatch.getResultTypes());
    SmallVector<Type> argTypes;
    unsigned numSizes = 0;
    for (Type type : bufferTypes) {
      argTypes.push_back(toMemRef(type));
      numSizes += cast<RankedTensorType>(type).getNumDynamicDims();
    }
    argTypes.append(numSizes, builder.getIndexType());

    std::string name =
        (entry.getSymName() + "_dispatch_" + llvm::Twine(index)).str();
    auto kernel = func::FuncOp::create(
        builder, loc, name, builder.getFunctionType(argTypes, {}));
    kernel->setAttr(kKernelAttrName, builder.getUnitAttr());
    if (auto strategy = dispatch.getStrategyAttr())
      kernel->setAttr("kiln.strategy", strategy);
    symbols.insert(kernel); // renames on a clash
    Block *block = kernel.addEntryBlock();
    builder.setInsertionPointToStart(block);

    // The buffers as memrefs of their tensor types.
    SmallVector<Value> views;
    ValueRange sizeArgs = block->getArguments().take_back(numSizes);
    for (auto [type, arg] : llvm::zip(bufferTypes, block->getArguments())) {
      auto tensorType = cast<RankedTensorType>(type);
      unsigned n = tensorType.getNumDynamicDims();
      views.push_back(n ? viewWithSizes(builder, loc, arg, tensorType,
                                        sizeArgs.take_front(n))
                        : Value(arg));
      sizeArgs = sizeArgs.drop_front(n);
    }
    IRMapping mapping;
    Block &body = dispatch.getBody().front();
    for (auto [bodyArg, view] : llvm::zip(body.getArguments(), views)) {
      // `restrict`: nothing else in the kernel aliases the buffer;
      // not `writable`: inputs may be weights or values read later.
      Value tensor = bufferization::ToTensorOp::create(
          builder, loc, bodyArg.getType(), view, /*restrict=*/true,
          /*writable=*/false);
      mapping.map(bodyArg, tensor);
    }
    for (Operation &op : body.without_terminator())
      builder.clone(op, mapping);
    auto yield = cast<YieldOp>(body.getTerminator());
    unsigned numInputs = dispatch.getInputs().size();
    for (auto [i, value] : llvm::enumerate(yield.getValues())) {
      bufferization::MaterializeInDestinationOp::create(
          builder, loc, /*result=*/Type(), mapping.lookup(value),
          views[numInputs + i], /*restrict=*/true, /*writable=*/true);
    }
    func::ReturnOp::create(builder, loc);

    // A reshape of tensor.empty is an empty tensor of the new shape; folding
    // it lets empty-tensor elimination compute results straight into the
    // output buffer instead of a temporary that is copied.
    RewritePatternSet patterns(kernel.getContext());
    tensor::populateFoldTensorEmptyPatterns(patterns);
    (void)applyPatternsGreedily(kernel, std::move(patterns));

    dispatch->setAttr(
        "kernel", SymbolRefAttr::get(
                      builder.getStringAttr(kKernelModuleName),
                      {FlatSymbolRefAttr::get(kernel.getSymNameAttr())}));
  }
};

} // namespace
