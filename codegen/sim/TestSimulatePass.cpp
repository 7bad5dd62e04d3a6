//===- TestSimulatePass.cpp - run kernels in the simulator from kiln-opt --===//
//
// `kiln-opt --kiln-test-simulate` runs every gpu.func kernel that carries a
// `kiln.test_launch` attribute in the simulator, on buffers whose float
// elements hold 0, 1, 2, ... and reports the outcome as a remark ("ok" and
// a checksum of the buffers) or as the simulator's error. It exists so that
// lit tests can plant bugs in kernels and check that the simulator catches
// them.
//
// With `data-dir=DIR`, argument N of kernel K is read from DIR/K.argN.bin
// (its raw bytes, when the file exists) and written back to
// DIR/K.argN.out.bin after the run: the e2e tests check the tensor-core
// collectives against NumPy on random data that way. Arguments are static
// memrefs of any int or float element type; without data, f32 elements
// hold 0, 1, 2, ... and others zero. A TMA descriptor argument names the
// memref argument its tensor is with `kiln.test_tma_source = N` (the whole
// row-major buffer; the box and swizzle come from its type).
//
//   gpu.func @k(%a: memref<64xf32>) kernel attributes {
//       kiln.test_launch = {grid = array<i32: 2, 1, 1>,
//                           block = array<i32: 32, 1, 1>}} { ... }
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/Simulator.h"

#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassRegistry.h"

#include <cstring>
#include <fstream>
#include <iterator>

using namespace mlir;

namespace kiln::sim {
namespace {

struct TestSimulatePass final
    : PassWrapper<TestSimulatePass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(TestSimulatePass)
  TestSimulatePass() = default;
  TestSimulatePass(const TestSimulatePass &other) : PassWrapper(other) {}
  StringRef getArgument() const override { return "kiln-test-simulate"; }
  Option<std::string> dataDir{
      *this, "data-dir",
      llvm::cl::desc("read arguments from DIR/KERNEL.argN.bin and write "
                     "them back to DIR/KERNEL.argN.out.bin")};
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
      std::vector<std::vector<uint8_t>> storage;
      std::vector<SimBuffer> args;
      std::string prefix =
          dataDir.empty() ? "" : dataDir + "/" + func.getName().str() + ".arg";
      std::vector<SimTensorMap> maps;
      for (auto [i, type] : llvm::enumerate(func.getArgumentTypes())) {
        if (isa<nvgpu::TensorMapDescriptorType>(type)) {
          auto source = func.getArgAttrOfType<IntegerAttr>(
              i, "kiln.test_tma_source");
          auto sourceType =
              source && source.getInt() < int64_t(i)
                  ? dyn_cast<MemRefType>(
                        func.getArgumentTypes()[source.getInt()])
                  : MemRefType();
          if (!sourceType) {
            func.emitError() << "TMA descriptor argument #" << i
                             << " needs kiln.test_tma_source naming an "
                                "earlier memref argument";
            return signalPassFailure();
          }
          SimTensorMap map;
          map.data = args[source.getInt()].data;
          map.bytes = args[source.getInt()].bytes;
          uint64_t stride =
              std::max(1u, sourceType.getElementTypeBitWidth() / 8);
          for (int64_t d = sourceType.getRank() - 1; d >= 0; --d) {
            if (d != sourceType.getRank() - 1)
              map.strides.push_back(stride);
            map.dims.push_back(sourceType.getDimSize(d));
            stride *= sourceType.getDimSize(d);
          }
          maps.push_back(std::move(map));
          continue;
        }
        auto memref = dyn_cast<MemRefType>(type);
        if (!memref || !memref.hasStaticShape() ||
            !memref.getElementType().isIntOrFloat()) {
          func.emitError() << "test kernels take static memrefs of ints or "
                              "floats only";
          return signalPassFailure();
        }
        unsigned bytes =
            std::max(1u, memref.getElementType().getIntOrFloatBitWidth() / 8);
        storage.emplace_back(memref.getNumElements() * bytes, 0);
        std::vector<uint8_t> &data = storage.back();
        if (memref.getElementType().isF32())
          for (size_t e = 0; e < data.size() / 4; ++e) {
            float v = static_cast<float>(e);
            std::memcpy(data.data() + 4 * e, &v, 4);
          }
        if (!prefix.empty()) {
          std::ifstream in(prefix + std::to_string(i) + ".bin",
                           std::ios::binary);
          if (in) {
            std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)),
                                      std::istreambuf_iterator<char>());
            if (file.size() != data.size()) {
              func.emitError() << "argument #" << i << " needs "
                               << data.size() << " bytes; its file has "
                               << file.size();
              return signalPassFailure();
            }
            data = std::move(file);
          }
        }
        args.push_back({data.data(), data.size()});
      }
      std::string error =
          simulate(func, config, args, nullptr, {}, 0, maps);
      if (!error.empty()) {
        func.emitError() << error;
        return;
      }
      if (!prefix.empty())
        for (auto [i, data] : llvm::enumerate(storage)) {
          std::ofstream out(prefix + std::to_string(i) + ".out.bin",
                            std::ios::binary);
          out.write(reinterpret_cast<const char *>(data.data()), data.size());
        }
      double checksum = 0;
      for (auto [buffer, type] :
           llvm::zip(storage, func.getArgumentTypes())) {
        if (!cast<MemRefType>(type).getElementType().isF32())
          continue;
        for (size_t e = 0; e < buffer.size() / 4; ++e) {
          float v;
          std::memcpy(&v, buffer.data() + 4 * e, 4);
          checksum += v * static_cast<double>(e % 7 + 1);
        }
      }
      func.emitRemark() << "ok, checksum " << std::to_string(checksum);
    });
  }
};

} // namespace

void registerTestSimulatePass() { PassRegistration<TestSimulatePass>(); }

} // namespace kiln::sim
