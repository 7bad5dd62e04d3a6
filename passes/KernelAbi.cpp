//===- KernelAbi.cpp - kernels take pointers and sizes --------------------===//
//
// The kernels' calling convention is what the launch program passes: one
// bare pointer per buffer, then one int64 per symbolic size. Outlined
// kernels take memrefs of their buffers' shapes (symbolic dims `?`) and the
// sizes; kiln-kernel-bare-abi turns each memref with symbolic dims into a
// base pointer viewed at its shape, late in the CPU pipeline (after loop
// optimizations, which views would block) and early in the GPU one. Two
// passes around gpu-kernel-outlining keep GPU kernels to that convention.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"

namespace kiln {
#define GEN_PASS_DEF_KILNKERNELBAREABI
#define GEN_PASS_DEF_KILNGPUSINKVIEWS
#define GEN_PASS_DEF_KILNGPUORDERKERNELARGS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

bool isDynamicMemRef(Value value) {
  auto type = dyn_cast<MemRefType>(value.getType());
  return type && !type.hasStaticShape();
}

bool isView(Operation *op) {
  return isa<memref::ReinterpretCastOp, memref::ExpandShapeOp,
             memref::CollapseShapeOp, memref::CastOp, memref::SubViewOp>(op);
}

/// The row-major memref of `type` at the base pointer `base`, its dynamic
/// sizes taken from `sizes` in order.
Value viewWithSizes(OpBuilder &b, Location loc, Value base, MemRefType type,
                    ValueRange sizes) {
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> mixedSizes;
  unsigned next = 0;
  for (int64_t d = 0; d < rank; ++d)
    mixedSizes.push_back(type.isDynamicDim(d)
                             ? OpFoldResult(sizes[next++])
                             : OpFoldResult(b.getIndexAttr(type.getDimSize(d))));
  SmallVector<OpFoldResult> strides(rank);
  OpFoldResult stride = b.getIndexAttr(1);
  for (int64_t d = rank - 1; d >= 0; --d) {
    strides[d] = stride;
    if (d == 0)
      break;
    std::optional<int64_t> s = getConstantIntValue(stride);
    std::optional<int64_t> n = getConstantIntValue(mixedSizes[d]);
    stride = s && n ? OpFoldResult(b.getIndexAttr(*s * *n))
                    : OpFoldResult(arith::MulIOp::create(
                          b, loc, getValueOrCreateConstantIndexOp(b, loc, stride),
                          getValueOrCreateConstantIndexOp(b, loc,
                                                          mixedSizes[d])));
  }
  return memref::ReinterpretCastOp::create(b, loc, type, base,
                                           b.getIndexAttr(0), mixedSizes,
                                           strides);
}

struct KilnKernelBareAbiPass final
    : kiln::impl::KilnKernelBareAbiBase<KilnKernelBareAbiPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName) || func.isExternal())
      return;
    Block &entry = func.getBody().front();
    // The sizes follow the buffers: one index per symbolic dim of each.
    unsigned numSizes = 0;
    SmallVector<unsigned> dynamicArgs;
    for (BlockArgument arg : func.getArguments())
      if (isDynamicMemRef(arg)) {
        dynamicArgs.push_back(arg.getArgNumber());
        numSizes += cast<MemRefType>(arg.getType()).getNumDynamicDims();
      }
    if (dynamicArgs.empty())
      return;
    if (numSizes > func.getNumArguments()) {
      func.emitError() << "kernel takes fewer sizes than its buffers have "
                          "symbolic dims";
      return signalPassFailure();
    }
    ValueRange sizes =
        entry.getArguments().take_back(numSizes);
    OpBuilder b = OpBuilder::atBlockBegin(&entry);
    SmallVector<Type> types(func.getArgumentTypes());
    for (unsigned i : dynamicArgs) {
      BlockArgument arg = entry.getArgument(i);
      auto type = cast<MemRefType>(arg.getType());
      unsigned n = type.getNumDynamicDims();
      auto pointer = MemRefType::get({}, type.getElementType(), nullptr,
                                     type.getMemorySpace());
      arg.setType(pointer);
      types[i] = pointer;
      Value view =
          viewWithSizes(b, func.getLoc(), arg, type, sizes.take_front(n));
      arg.replaceAllUsesExcept(view, view.getDefiningOp());
      sizes = sizes.drop_front(n);
    }
    func.setFunctionType(
        FunctionType::get(func.getContext(), types, func.getResultTypes()));
  }
};

struct KilnGpuSinkViewsPass final
    : kiln::impl::KilnGpuSinkViewsBase<KilnGpuSinkViewsPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    func.walk([](gpu::LaunchOp launch) { sink(launch); });
    // Host-side views (and the globals and sizes they read) that only the
    // launches used are gone.
    Block &body = func.getBody().front();
    for (Operation &op : llvm::make_early_inc_range(llvm::reverse(body)))
      if (isOpTriviallyDead(&op))
        op.erase();
  }

  static void sink(gpu::LaunchOp launch) {
    Block &body = launch.getBody().front();
    OpBuilder b = OpBuilder::atBlockBegin(&body);
    llvm::SmallDenseMap<Value, Value> sunk;
    // The clone of `view` (defined above the launch) inside it, with the
    // views it is built from cloned first.
    std::function<Value(Value)> sinkView = [&](Value view) -> Value {
      if (Value local = sunk.lookup(view))
        return local;
      Operation *def = view.getDefiningOp();
      if (def && launch->isAncestor(def))
        return view;
      if (!def || !isView(def)) {
        // A buffer of dynamic shape made on the host side (a temporary the
        // kernel function allocates): the launch takes its base pointer (a
        // rank-0 view on the host side) and its sizes, and views it at its
        // row-major shape inside.
        auto type = cast<MemRefType>(view.getType());
        if (!type.getLayout().isIdentity())
          return view; // left for the NVVM lowering to reject
        Location loc = view.getLoc();
        OpBuilder host(launch);
        Value base = memref::ReinterpretCastOp::create(
            host, loc, MemRefType::get({}, type.getElementType(), nullptr,
                                       type.getMemorySpace()),
            view, host.getIndexAttr(0), ArrayRef<OpFoldResult>{},
            ArrayRef<OpFoldResult>{});
        SmallVector<OpFoldResult> sizes;
        for (int64_t d = 0; d < type.getRank(); ++d)
          sizes.push_back(type.isDynamicDim(d)
                              ? OpFoldResult(memref::DimOp::create(host, loc,
                                                                   view, d)
                                                 .getResult())
                              : OpFoldResult(host.getIndexAttr(
                                    type.getDimSize(d))));
        SmallVector<OpFoldResult> strides(type.getRank());
        OpFoldResult stride = b.getIndexAttr(1);
        for (int64_t d = type.getRank() - 1; d >= 0; --d) {
          strides[d] = stride;
          if (d == 0)
            break;
          std::optional<int64_t> s = getConstantIntValue(stride);
          std::optional<int64_t> n = getConstantIntValue(sizes[d]);
          stride = s && n ? OpFoldResult(b.getIndexAttr(*s * *n))
                          : OpFoldResult(arith::MulIOp::create(
                                b, loc,
                                getValueOrCreateConstantIndexOp(b, loc, stride),
                                getValueOrCreateConstantIndexOp(b, loc,
                                                                sizes[d])));
        }
        Value local = memref::ReinterpretCastOp::create(
            b, loc, type, base, b.getIndexAttr(0), sizes, strides);
        sunk[view] = local;
        return local;
      }
      IRMapping mapping;
      for (Value operand : def->getOperands())
        if (isDynamicMemRef(operand))
          mapping.map(operand, sinkView(operand));
      Value local = b.clone(*def, mapping)->getResult(0);
      sunk[view] = local;
      return local;
    };
    // Clones go to the start of the body, before every op the walk visits.
    launch.getBody().walk([&](Operation *op) {
      for (OpOperand &use : op->getOpOperands())
        if (isDynamicMemRef(use.get()) &&
            !launch->isAncestor(use.get().getParentBlock()->getParentOp()))
          use.set(sinkView(use.get()));
    });
    // Scalars other than sizes computed on the host side (a mean's element
    // count as a float) are recomputed inside from the sizes: kernels take
    // only buffers and int64 sizes.
    std::function<Value(Value)> sinkScalar = [&](Value v) -> Value {
      if (Value local = sunk.lookup(v))
        return local;
      Operation *def = v.getDefiningOp();
      if (!def || launch->isAncestor(def) || v.getType().isIndex() ||
          !isPure(def) || def->getNumResults() != 1 ||
          def->getNumRegions() != 0)
        return v;
      IRMapping mapping;
      for (Value operand : def->getOperands())
        mapping.map(operand, sinkScalar(operand));
      Value local = b.clone(*def, mapping)->getResult(0);
      sunk[v] = local;
      return local;
    };
    launch.getBody().walk([&](Operation *op) {
      for (OpOperand &use : op->getOpOperands())
        if (use.get().getType().isIntOrFloat() &&
            !launch->isAncestor(use.get().getParentBlock()->getParentOp()))
          use.set(sinkScalar(use.get()));
    });
    // Constants the sunk views read (memref.get_global) go with them: the
    // kernel's module gets its own copy of the global. They go first.
    OpBuilder top = OpBuilder::atBlockBegin(&body);
    launch.getBody().walk([&](Operation *op) {
      for (OpOperand &use : op->getOpOperands()) {
        auto global = use.get().getDefiningOp<memref::GetGlobalOp>();
        if (!global || launch->isAncestor(global))
          continue;
        Value &local = sunk[use.get()];
        if (!local)
          local = top.clone(*global)->getResult(0);
        use.set(local);
      }
    });
  }
};

struct KilnGpuOrderKernelArgsPass final
    : kiln::impl::KilnGpuOrderKernelArgsBase<KilnGpuOrderKernelArgsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTableCollection symbols;
    // New argument order per kernel: buffers, TMA descriptors, then the
    // sizes (the order the launch program passes them in).
    llvm::DenseMap<Operation *, SmallVector<unsigned>> orders;
    module.walk([&](gpu::GPUFuncOp func) {
      if (!func.isKernel())
        return;
      SmallVector<unsigned> order;
      unsigned n = func.getNumArguments();
      auto rank = [&](unsigned i) {
        Type type = func.getArgument(i).getType();
        return isa<MemRefType>(type)                         ? 0
               : isa<nvgpu::TensorMapDescriptorType>(type) ? 1
                                                           : 2;
      };
      for (int r = 0; r < 3; ++r)
        for (unsigned i = 0; i < n; ++i)
          if (rank(i) == r)
            order.push_back(i);
      if (llvm::equal(order, llvm::seq<unsigned>(0, n)))
        return;
      permute(func, order);
      orders[func] = std::move(order);
    });
    if (orders.empty())
      return;
    module.walk([&](gpu::LaunchFuncOp launch) {
      auto func = symbols.lookupNearestSymbolFrom<gpu::GPUFuncOp>(
          launch, launch.getKernel());
      auto it = orders.find(func);
      if (it == orders.end())
        return;
      SmallVector<Value> operands(launch.getKernelOperands());
      SmallVector<Value> permuted;
      for (unsigned i : it->second)
        permuted.push_back(operands[i]);
      launch.getKernelOperandsMutable().assign(permuted);
    });
  }

  static void permute(gpu::GPUFuncOp func, ArrayRef<unsigned> order) {
    Block &entry = func.getBody().front();
    unsigned n = order.size();
    SmallVector<Type> types;
    for (unsigned i : order)
      types.push_back(entry.getArgument(i).getType());
    // New arguments right after the old ones (workgroup and private
    // attributions follow the inputs in the block), then the old ones go.
    for (auto [k, i] : llvm::enumerate(order)) {
      BlockArgument old = entry.getArgument(i);
      BlockArgument fresh =
          entry.insertArgument(n + k, old.getType(), old.getLoc());
      old.replaceAllUsesWith(fresh);
    }
    entry.eraseArguments(0, n);
    func.setFunctionType(FunctionType::get(func.getContext(), types, {}));
  }
};

} // namespace
