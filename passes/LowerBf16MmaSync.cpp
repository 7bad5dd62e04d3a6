//===- LowerBf16MmaSync.cpp - bf16 mma.sync to NVVM -----------------------===//
//
// MLIR 22's nvgpu-to-nvvm conversion lowers nvgpu.mma.sync for f16, tf32
// and integers but fails on bf16 operands ("failed to deduce operand PTX
// types"), although PTX has mma.sync.m16n8k16 with bf16 inputs and f32
// accumulators (sm_80). The kernel IR keeps nvgpu.mma.sync (what the
// simulator runs); this pass, first in the GPU binary pipeline, rewrites
// the bf16 ones into nvvm.mma.sync: each 32-bit register of the fragments
// is a vector<2xbf16> bitcast to i32, the accumulators four f32 values.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

namespace kiln {
#define GEN_PASS_DEF_KILNLOWERBF16MMASYNC
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

/// The registers of a fragment vector<Rx2xbf16>: one i32 per row.
SmallVector<Value> registers(OpBuilder &b, Location loc, Value fragment) {
  auto type = cast<VectorType>(fragment.getType());
  SmallVector<Value> regs;
  for (int64_t r = 0; r < type.getDimSize(0); ++r) {
    Value pair = vector::ExtractOp::create(b, loc, fragment, ArrayRef<int64_t>{r});
    regs.push_back(LLVM::BitcastOp::create(b, loc, b.getI32Type(), pair));
  }
  return regs;
}

struct LowerBf16MmaSync final
    : kiln::impl::KilnLowerBf16MmaSyncBase<LowerBf16MmaSync> {
  void runOnOperation() override {
    SmallVector<nvgpu::MmaSyncOp> ops;
    getOperation()->walk([&](nvgpu::MmaSyncOp op) {
      if (op.getMatrixA().getType().getElementType().isBF16())
        ops.push_back(op);
    });
    for (nvgpu::MmaSyncOp op : ops) {
      std::array<int64_t, 3> shape = op.getMmaShapeAsArray();
      auto cType = op.getMatrixC().getType();
      if (!cType.getElementType().isF32() || cType.getNumElements() != 4 ||
          shape != std::array<int64_t, 3>{16, 8, 16}) {
        op.emitError() << "only m16n8k16 bf16 mma.sync with f32 "
                          "accumulators is lowered";
        return signalPassFailure();
      }
      OpBuilder b(op);
      Location loc = op.getLoc();
      SmallVector<Value> a = registers(b, loc, op.getMatrixA());
      SmallVector<Value> bRegs = registers(b, loc, op.getMatrixB());
      SmallVector<Value> c;
      for (int64_t i = 0; i < 4; ++i)
        c.push_back(vector::ExtractOp::create(b, loc, op.getMatrixC(),
                                              ArrayRef<int64_t>{i / 2, i % 2}));
      Type f32 = b.getF32Type();
      auto resultType = LLVM::LLVMStructType::getLiteral(
          b.getContext(), {f32, f32, f32, f32});
      Value d = NVVM::MmaOp::create(
          b, loc, resultType, a, bRegs, c, ArrayRef<int64_t>{16, 8, 16},
          std::nullopt, std::nullopt,
          std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16,
                                        NVVM::MMATypes::bf16},
          std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                         NVVM::MMALayout::col});
      SmallVector<Value> elements;
      for (int64_t i = 0; i < 4; ++i)
        elements.push_back(LLVM::ExtractValueOp::create(b, loc, d, i));
      op.replaceAllUsesWith(
          vector::FromElementsOp::create(b, loc, cType, elements).getResult());
      op.erase();
    }
  }
};

} // namespace
