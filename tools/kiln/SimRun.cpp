//===- SimRun.cpp - kiln run --device sim ---------------------------------===//
#include "tools/kiln/SimRun.h"

#include "artifact.h"
#include "cuda_tensor_maps.h"
#include "dims.h"
#include "codegen/sim/Simulator.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/Parser/Parser.h"
#include "llvm/ADT/StringMap.h"

#include <cstring>

using namespace mlir;

namespace kiln::driver {

std::string runOnSimulator(const std::string &path, size_t entryIndex,
                           std::vector<HostTensor> &inputs,
                           std::vector<HostTensor> &outputs,
                           SimReport &report, const SimOptions &options) {
  runtime::LoadOptions load;
  load.verifyWeights = options.verifyWeights;
  auto loaded = runtime::Artifact::loadFile(path, load);
  if (!loaded.ok())
    return std::string(loaded.status().message());
  const runtime::Artifact &artifact = **loaded;
  const artifact::Manifest &m = artifact.manifest();
  if (m.target().rfind("cuda", 0) != 0)
    return "'" + path + "' targets '" + m.target() +
           "'; the simulator runs cuda artifacts (use --device cpu)";
  int irSection = -1;
  for (int i = 0; i < m.sections_size(); ++i)
    if (m.sections(i).kind() == artifact::KERNEL_IR)
      irSection = i;
  if (irSection < 0)
    return "'" + path + "' carries no kernel IR; compile it with "
           "--embed-kernel-ir to run it with --device sim";

  DialectRegistry registry;
  registerAllDialects(registry);
  MLIRContext context(registry);
  context.printOpOnDiagnostic(false);
  std::string parseError;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &d) {
    parseError += d.str() + "\n";
    return success();
  });
  StringRef bytes(reinterpret_cast<const char *>(artifact.sectionData(irSection)),
                  m.sections(irSection).size());
  OwningOpRef<ModuleOp> kernels = parseSourceString<ModuleOp>(
      bytes, ParserConfig(&context));
  if (!kernels)
    return "the kernel IR in '" + path + "' cannot be read: " + parseError;
  llvm::StringMap<gpu::GPUFuncOp> byModule;
  kernels->walk([&](gpu::GPUFuncOp func) {
    if (func.isKernel())
      if (auto module = func->getParentOfType<gpu::GPUModuleOp>())
        byModule[module.getName()] = func;
  });

  const artifact::EntryPoint &entry = m.entry_points(entryIndex);
  // Symbolic dims: bound from the inputs, as the runtime does.
  std::vector<kiln_tensor> views;
  for (HostTensor &t : inputs)
    views.push_back(t.view());
  auto dims = runtime::bindDims(entry, views.data());
  if (!dims.ok())
    return std::string(dims.status().message());
  if (absl::Status fits = runtime::checkRunFits(entry, *dims); !fits.ok())
    return std::string(fits.message());
  std::vector<uint8_t> arena(m.arena_bytes() + 64);
  std::vector<std::vector<uint8_t>> ownStates;
  std::vector<std::vector<uint8_t>> &states =
      options.states ? *options.states : ownStates;
  bool sameStates = states.size() == size_t(m.states_size());
  for (int i = 0; sameStates && i < m.states_size(); ++i)
    sameStates = states[i].size() == *runtime::tensorBytes(m.states(i));
  if (!sameStates) {
    states.clear();
    for (const auto &spec : m.states())
      states.emplace_back(*runtime::tensorBytes(spec), 0);
  }
  // Weights are copied so that a kernel that writes one corrupts nothing.
  std::vector<std::vector<uint8_t>> weights;
  for (int i = 0; i < m.weights_size(); ++i)
    weights.emplace_back(artifact.weightData(i),
                         artifact.weightData(i) + m.weights(i).size());
  auto resolve = [&](const artifact::BufferRef &ref) -> uint8_t * {
    switch (ref.kind()) {
    case artifact::BufferRef::INPUT:
      return inputs[ref.index()].data.data() + ref.offset();
    case artifact::BufferRef::OUTPUT:
      return outputs[ref.index()].data.data() + ref.offset();
    case artifact::BufferRef::WEIGHT:
      return weights[ref.index()].data() + ref.offset();
    case artifact::BufferRef::ARENA:
      return arena.data() + ref.offset();
    case artifact::BufferRef::STATE:
      return states[ref.index()].data() + ref.offset();
    default:
      return nullptr;
    }
  };
  for (const auto &launch : entry.launches()) {
    if (launch.kind() == artifact::Launch::COPY) {
      std::memmove(resolve(launch.args(0)), resolve(launch.args(1)),
                   runtime::refBytes(launch.args(0), *dims));
      continue;
    }
    if (launch.kind() == artifact::Launch::STRIDED_COPY) {
      runtime::StridedCopy copy = runtime::stridedCopy(launch, *dims);
      uint8_t *dst = resolve(launch.args(0)) + copy.dst_offset;
      const uint8_t *src = resolve(launch.args(1));
      for (uint64_t r = 0; r < copy.rows; ++r)
        std::memmove(dst + r * copy.dst_pitch, src + r * copy.row_bytes,
                     copy.row_bytes);
      continue;
    }
    const artifact::Kernel &kernel = m.kernels(launch.kernel());
    auto it = byModule.find(kernel.name());
    if (it == byModule.end())
      return "kernel '" + kernel.name() + "' is missing from the kernel IR";
    // TMA descriptors: encoded (and checked) as the CUDA backend encodes
    // them for this run's dims.
    std::vector<sim::SimTensorMap> maps;
    for (const artifact::TensorMap &map : launch.tensor_maps()) {
      uint64_t bytes = runtime::refBytes(map.buffer(), *dims);
      absl::StatusOr<runtime::TensorMapEncoding> enc =
          runtime::encodingFor(map, *dims, bytes);
      if (!enc.ok())
        return "kernel '" + kernel.name() + "': " +
               std::string(enc.status().message());
      sim::SimTensorMap sm;
      sm.data = resolve(map.buffer());
      sm.bytes = bytes;
      // The allocation the view lies in: the arena (or the input, output,
      // weight or state) from its start.
      artifact::BufferRef start = map.buffer();
      start.set_offset(0);
      sm.space = resolve(start);
      sm.dims.assign(enc->dims, enc->dims + enc->rank);
      sm.strides.assign(enc->strides, enc->strides + enc->rank - 1);
      maps.push_back(std::move(sm));
    }
    sim::LaunchConfig config;
    for (int d = 0; d < 3 && d < launch.grid_size(); ++d) {
      config.grid[d] = static_cast<uint32_t>(runtime::gridDim(launch, d, *dims));
      config.block[d] = launch.block(d);
    }
    // A buffer's bounds for the checks are its bytes in this run.
    std::vector<sim::SimBuffer> args;
    for (const auto &ref : launch.args())
      args.push_back({resolve(ref), runtime::refBytes(ref, *dims)});
    std::vector<int64_t> scalars;
    for (uint32_t e : launch.scalar_args())
      scalars.push_back((*dims)[e]);
    sim::SimStats stats;
    if (std::string error = sim::simulate(it->second, config, args, &stats,
                                          scalars, options.sampleBlocks, maps);
        !error.empty())
      return "simulator: " + error;
    ++report.launches;
    report.blocks += stats.blocks;
    report.threadOps += stats.threadOps;
    auto profile = llvm::find_if(report.kernels, [&](const KernelProfile &k) {
      return k.name == kernel.name();
    });
    if (profile == report.kernels.end()) {
      report.kernels.push_back({kernel.name(), kernel.strategy()});
      profile = report.kernels.end() - 1;
    }
    double scale = stats.blocks ? double(stats.totalBlocks) / stats.blocks : 0;
    ++profile->launches;
    profile->blocks += stats.totalBlocks;
    profile->simulatedBlocks += stats.blocks;
    profile->globalRequests += scale * stats.globalRequests;
    profile->globalSectors += scale * stats.globalSectors;
    profile->globalBytes += scale * stats.globalBytes;
    // A sample scaled to the grid overcounts the tiles that many blocks
    // share (a GEMM's weight columns), so each buffer's unique sectors are
    // capped at the sectors the buffer has.
    for (const auto &[base, sectors] : stats.uniqueSectors) {
      double scaled = scale * sectors.size();
      for (const sim::SimBuffer &arg : args)
        if (arg.data == base)
          scaled = std::min(scaled, double((arg.bytes + 31) / 32));
      // Buffers a kernel reads only through TMA descriptors: at most the
      // union of the views into the allocation.
      uint8_t *low = nullptr, *high = nullptr;
      for (const sim::SimTensorMap &map : maps)
        if (map.space == base) {
          low = low ? std::min(low, map.data) : map.data;
          high = high ? std::max(high, map.data + map.bytes)
                      : map.data + map.bytes;
        }
      if (low)
        scaled = std::min(scaled, double((high - low + 31) / 32));
      profile->uniqueSectors += scaled;
    }
    profile->sharedRequests += scale * stats.sharedRequests;
    profile->sharedWavefronts += scale * stats.sharedWavefronts;
    profile->sharedIdealWavefronts += scale * stats.sharedIdealWavefronts;
    profile->mmaInstructions += scale * stats.mmaInstructions;
    profile->tensorFlops += scale * stats.tensorFlops;
    profile->fpFlops += scale * stats.fpFlops;
  }
  return "";
}

} // namespace kiln::driver
