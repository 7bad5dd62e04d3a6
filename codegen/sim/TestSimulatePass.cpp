//===- TestSimulatePass.cpp - run kernels in the simulator from kiln-opt --===//
//
// `kiln-opt --kiln-test-simulate` runs every gpu.func kernel that carries a
// `kiln.test_launch` attribute in the simulator, on buffers whose float
// elements hold 0, 1, 2, ... and reports the outcome as a remark ("ok" and
// a checksum of the buffers) or as the simulator's error. It exists so that
// lit tests can plant bugs in kernels and check that the simulator catches
// them.
//
//   gpu.func @k(%a: memref<64xf32>) kernel attributes {
//       kiln.test_launch = {grid = array<i32: 2, 1, 1>,
//                           block = array<i32: 32, 1, 1>}} { ... }
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/Simulator.h"

#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassRegistry.h"

#include <cstring>

using namespace mlir;

namespace kiln::sim {
namespace {

struct TestSimulatePass final
    : PassWrapper<TestSimulatePass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(TestSimulatePass)
  StringRef getArgument() const override { return "kiln-test-simulate"; }
  StringRef getDescription() const override {
    return "run gpu.func kernels with kiln.test_launch in the simulator "
           "(testing only)";
  }

  void runOnOperation() override {
    getOperation().walk([&](gpu::GPUFuncOp func) {
      auto launch = func->getAttrOfType<DictionaryAttr>("kiln.test_launch");
      if (!launch)
        return;
      LaunchConfig config;
      auto grid = launch.getAs<DenseI32ArrayAttr>("grid");
      auto block = launch.getAs<DenseI32ArrayAttr>("block");
      if (!grid || !block || grid.size() != 3 || block.size() != 3) {
        func.emitError() << "kiln.test_launch needs grid and block arrays "
                            "of 3 i32";
        return signalPassFailure();
      }
      for (int d = 0; d < 3; ++d) {
        config.grid[d] = grid[d];
        config.block[d] = block[d];
      }
      std::vector<std::vector<float>> storage;
      std::vector<SimBuffer> args;
      for (Type type : func.getArgumentTypes()) {
        auto memref = dyn_cast<MemRefType>(type);
        if (!memref || !memref.hasStaticShape() ||
            !memref.getElementType().isF32()) {
          func.emitError() << "test kernels take static f32 memrefs only";
          return signalPassFailure();
        }
        storage.emplace_back(memref.getNumElements());
        for (size_t i = 0; i < storage.back().size(); ++i)
          storage.back()[i] = static_cast<float>(i);
        args.push_back({reinterpret_cast<uint8_t *>(storage.back().data()),
                        storage.back().size() * sizeof(float)});
      }
      std::string error = simulate(func, config, args, nullptr);
      if (!error.empty()) {
        func.emitError() << error;
        return;
      }
      double checksum = 0;
      for (const auto &buffer : storage)
        for (size_t i = 0; i < buffer.size(); ++i)
          checksum += buffer[i] * static_cast<double>(i % 7 + 1);
      func.emitRemark() << "ok, checksum " << std::to_string(checksum);
    });
  }
};

} // namespace

void registerTestSimulatePass() { PassRegistration<TestSimulatePass>(); }

} // namespace kiln::sim
