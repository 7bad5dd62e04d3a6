//===- LowerWarpgroupFragments.cpp - wgmma accumulators as registers ------===//
//
// nvgpu has no op that reads or writes a warpgroup accumulator's registers:
// its values only leave through nvgpu.warpgroup.mma.store (to memory). A
// flash kernel (flash-attention-wgmma) needs them in registers, so the
// kernel IR says it with unrealized_conversion_cast between the
// accumulator and its f32 values per thread (the simulator models those
// casts). convert-nvgpu-to-nvvm makes an accumulator of 64 x N an LLVM
// struct of M/64 structs of N/2 f32 each; this pass, run right before it,
// turns each cast into that struct's llvm.extractvalue / insertvalue
// behind a cast to the struct type, which the conversion and
// reconcile-unrealized-casts then fold away.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

namespace kiln {
#define GEN_PASS_DEF_KILNLOWERWARPGROUPFRAGMENTS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

/// The struct convert-nvgpu-to-nvvm makes of `type` (f32), and its members
/// per inner struct.
std::pair<LLVM::LLVMStructType, int64_t>
structOf(nvgpu::WarpgroupAccumulatorType type) {
  VectorType fragmented = type.getFragmented();
  MLIRContext *ctx = type.getContext();
  int64_t perStruct = fragmented.getDimSize(1) / 2;
  auto inner = LLVM::LLVMStructType::getLiteral(
      ctx, SmallVector<Type>(perStruct, fragmented.getElementType()));
  auto outer = LLVM::LLVMStructType::getLiteral(
      ctx, SmallVector<Type>(fragmented.getDimSize(0) / 64, inner));
  return {outer, perStruct};
}

struct LowerWarpgroupFragments final
    : kiln::impl::KilnLowerWarpgroupFragmentsBase<LowerWarpgroupFragments> {
  void runOnOperation() override {
    SmallVector<UnrealizedConversionCastOp> casts;
    getOperation()->walk([&](UnrealizedConversionCastOp op) {
      auto isAccumulator = [](Type type) {
        return isa<nvgpu::WarpgroupAccumulatorType>(type);
      };
      if ((op.getNumOperands() == 1 &&
           isAccumulator(op.getOperand(0).getType()) &&
           !isa<LLVM::LLVMStructType>(op.getResult(0).getType())) ||
          (op.getNumResults() == 1 && isAccumulator(op.getResult(0).getType()) &&
           !isa<LLVM::LLVMStructType>(op.getOperand(0).getType())))
        casts.push_back(op);
    });
    for (UnrealizedConversionCastOp op : casts) {
      OpBuilder b(op);
      Location loc = op.getLoc();
      bool reads = op.getNumOperands() == 1 &&
                   isa<nvgpu::WarpgroupAccumulatorType>(
                       op.getOperand(0).getType());
      auto accType = cast<nvgpu::WarpgroupAccumulatorType>(
          reads ? op.getOperand(0).getType() : op.getResult(0).getType());
      if (!accType.getFragmented().getElementType().isF32()) {
        op.emitError() << "only f32 accumulators are read as registers; "
                       << accType.getFragmented() << " is not";
        return signalPassFailure();
      }
      auto [structType, perStruct] = structOf(accType);
      int64_t count = int64_t(structType.getBody().size()) * perStruct;
      ValueRange registers = reads ? ValueRange(op.getResults())
                                   : ValueRange(op.getOperands());
      if (int64_t(registers.size()) != count) {
        op.emitError() << "an accumulator of " << accType.getFragmented()
                       << " has " << count << " registers per thread, not "
                       << registers.size();
        return signalPassFailure();
      }
      auto position = [&](int64_t e) {
        return SmallVector<int64_t>{e / perStruct, e % perStruct};
      };
      if (reads) {
        Value whole = UnrealizedConversionCastOp::create(
                          b, loc, TypeRange{structType}, op.getOperand(0))
                          .getResult(0);
        SmallVector<Value> values;
        for (int64_t e = 0; e < count; ++e)
          values.push_back(
              LLVM::ExtractValueOp::create(b, loc, whole, position(e)));
        op.replaceAllUsesWith(values);
      } else {
        Value whole = LLVM::PoisonOp::create(b, loc, structType);
        for (int64_t e = 0; e < count; ++e)
          whole = LLVM::InsertValueOp::create(b, loc, whole, registers[e],
                                              position(e));
        op.replaceAllUsesWith(UnrealizedConversionCastOp::create(
                                  b, loc, TypeRange{accType}, whole)
                                  .getResults());
      }
      op.erase();
    }
  }
};

} // namespace
