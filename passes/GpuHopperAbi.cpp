//===- GpuHopperAbi.cpp - large shared memory and TMA descriptor arguments ===//
//
// Two changes the kernel IR the simulator runs does not have, made right
// before the NVVM lowering (see Passes.td, kiln-gpu-hopper-abi): workgroup
// buffers beyond the 48 KiB of static shared memory become views of
// dynamic shared memory, and TMA descriptor arguments become the pointers
// the runtime passes.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "llvm/Support/MathExtras.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUHOPPERABI
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr uint64_t kStaticSharedLimit = 48 * 1024;
constexpr uint64_t kAlign = 1024;

/// The bytes of a workgroup buffer.
uint64_t bytesOf(MemRefType type) {
  return type.getNumElements() *
         std::max<uint64_t>(1, type.getElementTypeBitWidth() / 8);
}

struct KilnGpuHopperAbiPass final
    : kiln::impl::KilnGpuHopperAbiBase<KilnGpuHopperAbiPass> {
  /// Moves `func`'s workgroup buffers into dynamic shared memory when they
  /// exceed the static limit; returns the bytes to ask for, or 0.
  uint64_t makeDynamic(gpu::GPUFuncOp func) {
    unsigned count = func.getNumWorkgroupAttributions();
    if (!count)
      return 0;
    SmallVector<uint64_t> offsets;
    uint64_t end = 0;
    for (BlockArgument arg : func.getWorkgroupAttributions()) {
      end = llvm::alignTo(end, kAlign);
      offsets.push_back(end);
      end += bytesOf(cast<MemRefType>(arg.getType()));
    }
    // Kernels that swizzle (TMA, wgmma) need their buffers 1024-byte
    // aligned, as the simulator lays them out: dynamic shared memory,
    // aligned at run time, whatever their size.
    bool swizzles = false;
    func.walk([&](Operation *op) {
      swizzles |= isa<nvgpu::TmaAsyncLoadOp,
                      nvgpu::WarpgroupGenerateDescriptorOp>(op);
    });
    if (end <= kStaticSharedLimit && !swizzles)
      return 0;
    Block &entry = func.getBody().front();
    OpBuilder b = OpBuilder::atBlockBegin(&entry);
    Location loc = func.getLoc();
    auto workgroup = gpu::AddressSpaceAttr::get(
        func.getContext(), gpu::GPUDialect::getWorkgroupAddressSpace());
    auto bytesType = MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                                     MemRefLayoutAttrInterface(), workgroup);
    Value dynamic = gpu::DynamicSharedMemoryOp::create(b, loc, bytesType);
    // The base rounded up to 1024 bytes: the swizzled layouts of TMA and
    // wgmma are defined on shared addresses.
    Value address =
        memref::ExtractAlignedPointerAsIndexOp::create(b, loc, dynamic);
    auto c = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
    Value shift = arith::RemUIOp::create(
        b, loc,
        arith::SubIOp::create(b, loc, c(kAlign),
                              arith::RemUIOp::create(b, loc, address, c(kAlign))),
        c(kAlign));
    unsigned first = func.getFirstWorkgroupAttributionIndex();
    for (unsigned i = 0; i < count; ++i) {
      BlockArgument arg = entry.getArgument(first + i);
      Value at = arith::AddIOp::create(b, loc, shift, c(offsets[i]));
      Value view = memref::ViewOp::create(b, loc, arg.getType(), dynamic, at,
                                          ValueRange());
      arg.replaceAllUsesWith(view);
    }
    for (unsigned i = count; i-- > 0;)
      entry.eraseArgument(first + i);
    func->setAttr(gpu::GPUFuncOp::getNumWorkgroupAttributionsAttrName(),
                  b.getI64IntegerAttr(0));
    func->removeAttr("workgroup_attrib_attrs");
    return end + kAlign;
  }

  /// Descriptor arguments become pointers; returns whether any did.
  bool pointerArgs(gpu::GPUFuncOp func) {
    Block &entry = func.getBody().front();
    auto ptr = LLVM::LLVMPointerType::get(func.getContext());
    SmallVector<Type> inputs(func.getFunctionType().getInputs());
    bool changed = false;
    OpBuilder b = OpBuilder::atBlockBegin(&entry);
    for (unsigned i = 0; i < inputs.size(); ++i) {
      auto type = dyn_cast<nvgpu::TensorMapDescriptorType>(inputs[i]);
      if (!type)
        continue;
      BlockArgument arg = entry.getArgument(i);
      arg.setType(ptr);
      auto cast = UnrealizedConversionCastOp::create(b, func.getLoc(),
                                                     TypeRange{type}, arg);
      arg.replaceAllUsesExcept(cast.getResult(0), cast);
      inputs[i] = ptr;
      changed = true;
    }
    if (changed)
      func.setFunctionType(
          FunctionType::get(func.getContext(), inputs,
                            func.getFunctionType().getResults()));
    return changed;
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTableCollection symbols;
    llvm::DenseMap<Operation *, uint64_t> dynamicBytes;
    llvm::DenseSet<Operation *> withPointers;
    module.walk([&](gpu::GPUFuncOp func) {
      if (!func.isKernel())
        return;
      if (uint64_t bytes = makeDynamic(func))
        dynamicBytes[func] = bytes;
      if (pointerArgs(func))
        withPointers.insert(func);
    });
    module.walk([&](gpu::LaunchFuncOp launch) {
      Operation *func =
          symbols.lookupNearestSymbolFrom(launch, launch.getKernel());
      OpBuilder b(launch);
      if (auto it = dynamicBytes.find(func); it != dynamicBytes.end())
        launch.getDynamicSharedMemorySizeMutable().assign(
            arith::ConstantIntOp::create(b, launch.getLoc(), b.getI32Type(),
                                         int64_t(it->second)));
      if (!withPointers.count(func))
        return;
      // The host side keeps the descriptor (the artifact's tensor map),
      // seen through a cast to the kernel's pointer type.
      auto ptr = LLVM::LLVMPointerType::get(launch.getContext());
      for (OpOperand &operand : launch.getKernelOperandsMutable())
        if (isa<nvgpu::TensorMapDescriptorType>(operand.get().getType()))
          operand.set(UnrealizedConversionCastOp::create(
                          b, launch.getLoc(), TypeRange{ptr}, operand.get())
                          .getResult(0));
    });
  }
};

} // namespace
