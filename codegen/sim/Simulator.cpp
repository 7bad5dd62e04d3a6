//===- Simulator.cpp - GPU kernels run on the CPU with CUDA semantics -----===//
//
// The launch (blocks in a shuffled order), the setup of one block (buffers,
// sizes, shared memory) and the interpreter loop, which looks each op up in
// the table of handlers (SimInternal.h) and runs it for the active threads.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <random>

using namespace mlir;

namespace kiln::sim {

void HandlerTable::insert(TypeID id, StringRef name, const Handler &handler) {
  if (!handlers.try_emplace(id, handler).second)
    llvm::report_fatal_error("simulator: two handlers for '" + name + "'");
}

namespace {

/// Every family's handlers, registered once per process.
const HandlerTable &handlerTable() {
  static const HandlerTable table = [] {
    HandlerTable table;
    registerArithHandlers(table);
    registerMemoryHandlers(table);
    registerControlHandlers(table);
    registerGpuHandlers(table);
    registerWarpHandlers(table);
    registerTensorCoreHandlers(table);
    registerHopperHandlers(table);
    return table;
  }();
  return table;
}

/// An op no handler models: an error naming it, never a silent skip.
bool unmodelled(BlockRunner &runner, Operation &op) {
  if (!scalarOnly(runner, op))
    return false;
  if (op.getNumResults() == 1 &&
      !op.getResult(0).getType().isIntOrIndexOrFloat())
    runner.fail(&op, "has a result type the simulator does not model");
  else
    runner.fail(&op, "is not modelled by the simulator");
  return false;
}

} // namespace

bool scalarOnly(BlockRunner &runner, Operation &op) {
  for (Type type :
       llvm::concat<const Type>(op.getOperandTypes(), op.getResultTypes()))
    if (isa<VectorType>(type)) {
      runner.fail(&op, "vector operands and results are modelled only for "
                       "vector.load/store/extract/insert/from_elements/broadcast/"
                       "shape_cast and the nvgpu collectives");
      return false;
    }
  return true;
}

BlockRunner::BlockRunner(gpu::GPUFuncOp kernel, const LaunchConfig &config,
                         const std::vector<SimBuffer> &args,
                         const std::vector<int64_t> &scalars,
                         const std::vector<SimTensorMap> &tensorMapArgs,
                         std::vector<std::vector<uint8_t>> &globals,
                         SimStats *stats)
    : kernel(kernel), config(config), args(args), scalars(scalars),
      globals(globals), stats(stats), tensorMapArgs(tensorMapArgs),
      table(handlerTable()) {
  threads = config.block[0] * config.block[1] * config.block[2];
}

std::string BlockRunner::run(std::array<uint32_t, 3> blockId) {
  this->blockId = blockId;
  values.clear();
  vectors.clear();
  mems.clear();
  shared.reserve(kernel.getNumWorkgroupAttributions());
  Block &entry = kernel.getBody().front();
  epoch = 0;
  asyncOpen.assign(threads, {});
  asyncGroups.assign(threads, {});
  shared.clear();
  shadows.clear();
  sharedBase.clear();
  tensorMaps.clear();
  mbarriers.clear();
  wgmmaInFlight.assign(warpgroups(), {});
  wgmmaSeq = 1;
  knownRetired.assign(size_t(threads) * warpgroups(), 0);
  roles = std::make_unique<Roles>(*this);
  // The first KiB of the window is reserved on sm_90, as on the GPU.
  uint64_t sharedEnd = 1024;
  if (kernel.getNumPrivateAttributions() != 0)
    return fail(kernel, "private memory attributions are not modelled");
  for (BlockArgument arg : kernel.getWorkgroupAttributions()) {
    auto type = cast<MemRefType>(arg.getType());
    uint64_t bytes = type.getNumElements() *
                     std::max(1u, bitWidth(type.getElementType()) / 8);
    shared.emplace_back(bytes, 0);
    shadows.emplace_back(type.getNumElements());
    sharedBase.push_back(sharedEnd);
    sharedEnd = llvm::alignTo(sharedEnd + bytes, 1024);
    if (failed(describe(type, shared.back().data(), bytes,
                        "shared buffer #" + std::to_string(shared.size() - 1),
                        mems[arg])))
      return error;
    mems[arg].shadow = static_cast<int>(shadows.size() - 1);
  }
  unsigned numScalars = 0, numMaps = 0;
  for (unsigned i = 0, e = kernel.getFunctionType().getNumInputs(); i < e;
       ++i) {
    BlockArgument arg = entry.getArgument(i);
    auto type = dyn_cast<MemRefType>(arg.getType());
    if (isa<nvgpu::TensorMapDescriptorType>(arg.getType())) {
      // TMA descriptors follow the buffers.
      if (numScalars)
        return fail(kernel, "kernel argument #" + std::to_string(i) +
                                " is a TMA descriptor after a size");
      if (numMaps >= tensorMapArgs.size())
        return fail(kernel, "the launch passes fewer TMA descriptors than "
                            "the kernel takes");
      tensorMaps[arg] = &tensorMapArgs[numMaps++];
      continue;
    }
    if (!type) {
      // Sizes follow the buffers, one int64 each.
      if (!arg.getType().isIntOrIndex())
        return fail(kernel, "kernel argument #" + std::to_string(i) +
                                " is neither a buffer nor an integer");
      if (numScalars >= scalars.size())
        return fail(kernel, "the launch passes fewer sizes than the kernel "
                            "takes");
      values[arg] = Lanes(threads, truncTo(static_cast<uint64_t>(
                                               scalars[numScalars++]),
                                           bitWidth(arg.getType())));
      continue;
    }
    if (numScalars || numMaps)
      return fail(kernel, "kernel argument #" + std::to_string(i) +
                              " is a buffer after a size or a TMA "
                              "descriptor");
    if (i >= args.size())
      return fail(kernel, "the launch passes fewer buffers than the kernel "
                          "takes");
    if (failed(describe(type, args[i].data, args[i].bytes,
                        "argument #" + std::to_string(i), mems[arg])))
      return error;
  }
  Mask all(threads, 1);
  runBlock(entry, all, nullptr);
  roles.reset();
  return error;
}

bool BlockRunner::runBlock(Block &block, const Mask &mask,
                           SmallVectorImpl<Value> *yielded) {
  for (Operation &op : block) {
    if (!error.empty())
      return false;
    ++progress;
    if (stats) {
      uint64_t active =
          static_cast<uint64_t>(std::count(mask.begin(), mask.end(), 1));
      stats->threadOps += active;
      if (isa<arith::AddFOp, arith::SubFOp, arith::MulFOp>(op))
        stats->fpFlops += active;
      else if (isa<math::FmaOp>(op))
        stats->fpFlops += 2 * active;
    }
    if (isa<scf::YieldOp>(op)) {
      if (yielded)
        yielded->assign(op.getOperands().begin(), op.getOperands().end());
      return true;
    }
    if (isa<gpu::ReturnOp, scf::ReduceOp>(op))
      return true;
    const Handler *handler = table.lookup(op);
    if (!(handler ? (*handler)(*this, op, mask) : unmodelled(*this, op)))
      return false;
  }
  return true;
}

std::string BlockRunner::fail(Operation *op, const std::string &message) {
  if (error.empty()) {
    std::string name;
    llvm::raw_string_ostream os(name);
    os << "kernel '" << kernel.getName() << "', block (" << blockId[0] << ","
       << blockId[1] << "," << blockId[2] << "), '" << op->getName()
       << "': " << message;
    error = name;
  }
  return error;
}

uint32_t BlockRunner::threadCoord(unsigned t, int dim) const {
  uint32_t x = t % config.block[0];
  uint32_t y = (t / config.block[0]) % config.block[1];
  uint32_t z = t / (config.block[0] * config.block[1]);
  return dim == 0 ? x : dim == 1 ? y : z;
}

std::string BlockRunner::threadText(unsigned t) const {
  return "(" + std::to_string(threadCoord(t, 0)) + "," +
         std::to_string(threadCoord(t, 1)) + "," +
         std::to_string(threadCoord(t, 2)) + ")";
}

std::string simulate(gpu::GPUFuncOp kernel, const LaunchConfig &config,
                     const std::vector<SimBuffer> &args, SimStats *stats,
                     const std::vector<int64_t> &scalars,
                     uint32_t sampleBlocks,
                     const std::vector<SimTensorMap> &tensorMaps) {
  uint64_t threads =
      uint64_t(config.block[0]) * config.block[1] * config.block[2];
  if (threads == 0 || threads > 1024)
    return "kernel '" + kernel.getName().str() + "': a block of " +
           std::to_string(threads) + " threads is not launchable (1..1024)";
  std::vector<std::array<uint32_t, 3>> blocks;
  for (uint32_t z = 0; z < config.grid[2]; ++z)
    for (uint32_t y = 0; y < config.grid[1]; ++y)
      for (uint32_t x = 0; x < config.grid[0]; ++x)
        blocks.push_back({x, y, z});
  // Blocks in a shuffled (but reproducible) order: correct kernels do not
  // depend on the order in which blocks run.
  if (stats)
    stats->totalBlocks += blocks.size();
  // A sample: evenly spaced blocks, the first and the last among them (the
  // edge tiles are the ones that differ).
  if (sampleBlocks && blocks.size() > sampleBlocks) {
    std::vector<std::array<uint32_t, 3>> sample;
    for (uint32_t i = 0; i < sampleBlocks; ++i)
      sample.push_back(
          blocks[sampleBlocks == 1 ? 0
                                   : uint64_t(i) * (blocks.size() - 1) /
                                         (sampleBlocks - 1)]);
    blocks = std::move(sample);
  }
  std::mt19937 rng(static_cast<uint32_t>(blocks.size()) * 2654435761u);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  std::vector<std::vector<uint8_t>> globals;
  BlockRunner runner(kernel, config, args, scalars, tensorMaps, globals,
                     stats);
  for (const auto &block : blocks) {
    if (std::string error = runner.run(block); !error.empty())
      return error;
    if (stats)
      ++stats->blocks;
  }
  return "";
}

} // namespace kiln::sim
