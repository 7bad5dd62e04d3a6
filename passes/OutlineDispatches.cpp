//===- OutlineDispatches.cpp - kiln.dispatch bodies into kernel functions -===//
#include "passes/Passes.h"

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

/// The kernel argument for a tensor: a memref of its shape (symbolic dims
/// stay `?`; kiln-kernel-bare-abi makes them base pointers late, after the
/// kernel's loops are optimized).
MemRefType toMemRef(Type type) {
  auto tensorType = cast<RankedTensorType>(type);
  return MemRefType::get(tensorType.getShape(), tensorType.getElementType());
}

constexpr llvm::StringLiteral kUnnamed = "__kiln_unnamed_kernel";

/// A kernel's text with its name left out: two kernels with the same key
/// compute the same thing from the same kinds of buffers.
std::string bodyKey(func::FuncOp kernel) {
  std::string key;
  llvm::raw_string_ostream os(key);
  StringAttr name = kernel.getSymNameAttr();
  kernel.setSymName(kUnnamed);
  kernel->print(os, OpPrintingFlags().useLocalScope());
  kernel.setSymNameAttr(name);
  return key;
}

struct KilnOutlineDispatchesPass final
    : kiln::impl::KilnOutlineDispatchesBase<KilnOutlineDispatchesPass> {
  /// Outlined kernels by their text without the name.
  llvm::StringMap<func::FuncOp> byBody;

  void runOnOperation() override {
    byBody.clear();
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
    // Kernels outlined before this run take part in sharing too.
    for (auto kernel : kernels.getOps<func::FuncOp>())
      if (kernel->hasAttr(kKernelAttrName))
        byBody.try_emplace(bodyKey(kernel), kernel);

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

    // Named later: a kernel identical to one outlined before is not kept.
    auto kernel = func::FuncOp::create(builder, loc, kUnnamed,
                                       builder.getFunctionType(argTypes, {}));
    kernel->setAttr(kKernelAttrName, builder.getUnitAttr());
    if (auto config = dispatch.getConfigAttr())
      kernel->setAttr("kiln.config", config);
    Block *block = kernel.addEntryBlock();
    builder.setInsertionPointToStart(block);

    ValueRange buffers = block->getArguments().drop_back(numSizes);
    IRMapping mapping;
    Block &body = dispatch.getBody().front();
    for (auto [bodyArg, buffer] : llvm::zip(body.getArguments(), buffers)) {
      // `restrict`: nothing else in the kernel aliases the buffer;
      // not `writable`: inputs may be weights or values read later.
      Value tensor = bufferization::ToTensorOp::create(
          builder, loc, bodyArg.getType(), buffer, /*restrict=*/true,
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
          buffers[numInputs + i], /*restrict=*/true, /*writable=*/true);
    }
    func::ReturnOp::create(builder, loc);

    // A reshape of tensor.empty is an empty tensor of the new shape; folding
    // it lets empty-tensor elimination compute results straight into the
    // output buffer instead of a temporary that is copied.
    RewritePatternSet patterns(kernel.getContext());
    tensor::populateFoldTensorEmptyPatterns(patterns);
    (void)applyPatternsGreedily(kernel, std::move(patterns));

    // The twelve layers of a transformer give twelve identical kernels per
    // dispatch of a layer: the first one serves every launch, so each is
    // compiled once.
    auto [it, inserted] = byBody.try_emplace(bodyKey(kernel), kernel);
    if (!inserted) {
      kernel.erase();
      kernel = it->second;
    } else {
      kernel.setSymName(
          (entry.getSymName() + "_dispatch_" + llvm::Twine(index)).str());
      symbols.insert(kernel); // renames on a clash
    }

    dispatch->setAttr(
        "kernel", SymbolRefAttr::get(
                      builder.getStringAttr(kKernelModuleName),
                      {FlatSymbolRefAttr::get(kernel.getSymNameAttr())}));
  }
};

} // namespace
