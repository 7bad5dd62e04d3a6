//===- GpuCodegen.cpp - PTX from gpu.binary, cubins with ptxas ------------===//
#include "codegen/gpu/GpuCodegen.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/ThreadPool.h"
#include "llvm/Support/raw_ostream.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/SymbolTable.h"

#include <cstdlib>
#include <memory>

using namespace mlir;

namespace kiln::codegen {

std::string findPtxas(const std::string &cudaPath, std::string &error) {
  auto inToolkit = [](StringRef root) -> std::string {
    llvm::SmallString<256> path(root);
    llvm::sys::path::append(path, "bin", "ptxas");
    return llvm::sys::fs::can_execute(path) ? path.str().str() : "";
  };
  if (!cudaPath.empty()) {
    std::string ptxas = inToolkit(cudaPath);
    if (ptxas.empty())
      error = "no ptxas in --cuda-path '" + cudaPath +
              "' (looked for bin/ptxas); point it at a CUDA toolkit";
    return ptxas;
  }
  for (const char *variable : {"CUDA_HOME", "CUDA_PATH"})
    if (const char *root = std::getenv(variable))
      if (std::string ptxas = inToolkit(root); !ptxas.empty())
        return ptxas;
  if (auto onPath = llvm::sys::findProgramByName("ptxas"))
    return *onPath;
  if (std::string ptxas = inToolkit("/usr/local/cuda"); !ptxas.empty())
    return ptxas;
  error = "cannot find ptxas (the CUDA toolkit): pass --cuda-path DIR, set "
          "CUDA_HOME, or put ptxas on PATH";
  return "";
}

std::string toolkitOfPtxas(const std::string &ptxas) {
  return llvm::sys::path::parent_path(llvm::sys::path::parent_path(ptxas))
      .str();
}

std::string ptxasRelease(const std::string &ptxas) {
  llvm::SmallString<128> logPath;
  if (llvm::sys::fs::createTemporaryFile("kiln-ptxas-version", "txt", logPath))
    return "";
  llvm::scope_exit cleanup([&] { llvm::sys::fs::remove(logPath); });
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(logPath),
                                          StringRef(logPath)};
  StringRef args[] = {ptxas, "--version"};
  if (llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, redirects) != 0)
    return "";
  auto log = llvm::MemoryBuffer::getFile(logPath);
  SmallVector<StringRef> groups;
  if (!log || !llvm::Regex("release ([0-9]+\\.[0-9]+)")
                   .match((*log)->getBuffer(), &groups))
    return "";
  return groups[1].str();
}

namespace {

unsigned firstNumber(StringRef text, StringRef pattern) {
  llvm::Regex regex(pattern);
  SmallVector<StringRef> groups;
  unsigned value = 0;
  if (regex.match(text, &groups) && groups.size() > 1)
    groups[1].getAsInteger(10, value);
  return value;
}

/// What ptxas reports for one entry function.
struct EntryFigures {
  uint32_t registers = 0, sharedBytes = 0, spillStoreBytes = 0,
           spillLoadBytes = 0, stackBytes = 0;
};

/// One ptxas run: a PTX module for one architecture.
struct PtxasJob {
  std::string arch;
  std::shared_ptr<const std::string> ptx;
  std::shared_ptr<const std::string> cubin; // filled by the run
  llvm::StringMap<EntryFigures> figures;    // per entry function
  std::string error;
};

/// Splits ptxas's `-v` log into the figures of each entry function.
llvm::StringMap<EntryFigures> parseFigures(StringRef log) {
  llvm::StringMap<EntryFigures> figures;
  StringRef marker = "Compiling entry function '";
  size_t at = log.find(marker);
  while (at != StringRef::npos) {
    StringRef rest = log.drop_front(at + marker.size());
    StringRef name = rest.take_until([](char c) { return c == '\''; });
    size_t next = rest.find(marker);
    StringRef chunk = rest.take_front(next);
    EntryFigures &f = figures[name];
    f.registers = firstNumber(chunk, "Used ([0-9]+) registers");
    f.sharedBytes = firstNumber(chunk, "([0-9]+) bytes smem");
    f.stackBytes = firstNumber(chunk, "([0-9]+) bytes stack frame");
    f.spillStoreBytes = firstNumber(chunk, "([0-9]+) bytes spill stores");
    f.spillLoadBytes = firstNumber(chunk, "([0-9]+) bytes spill loads");
    at = next == StringRef::npos ? StringRef::npos
                                 : at + marker.size() + next;
  }
  return figures;
}

/// Runs ptxas on `job.ptx` for `job.arch`. Safe to call from several
/// threads: it touches nothing but its own files and `job`.
void runPtxas(const std::string &ptxas, PtxasJob &job) {
  llvm::SmallString<128> ptxPath, cubinPath, logPath;
  int fd;
  if (llvm::sys::fs::createTemporaryFile("kiln-kernels", "ptx", fd, ptxPath) ||
      llvm::sys::fs::createTemporaryFile("kiln-kernels", "cubin", cubinPath) ||
      llvm::sys::fs::createTemporaryFile("kiln-ptxas", "log", logPath)) {
    job.error = "cannot create temporary files for ptxas";
    return;
  }
  llvm::scope_exit cleanup([&] {
    llvm::sys::fs::remove(ptxPath);
    llvm::sys::fs::remove(cubinPath);
    llvm::sys::fs::remove(logPath);
  });
  {
    llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
    out << *job.ptx;
  }
  std::string archFlag = "-arch=" + job.arch;
  SmallVector<StringRef> args = {ptxas, archFlag, "-O3", "-v", ptxPath,
                                 "-o", cubinPath};
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(logPath),
                                          StringRef(logPath)};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, redirects, 0,
                                     0, &message);
  auto log = llvm::MemoryBuffer::getFile(logPath);
  StringRef logText = log ? (*log)->getBuffer() : StringRef();
  if (rc != 0) {
    job.error = ("ptxas rejected the kernels for " + job.arch + " (exit " +
                 Twine(rc) + ") " + message + "\n" + logText)
                    .str();
    return;
  }
  auto cubin = llvm::MemoryBuffer::getFile(cubinPath, /*IsText=*/false);
  if (!cubin) {
    job.error = "ptxas wrote no cubin for " + job.arch;
    return;
  }
  job.cubin =
      std::make_shared<const std::string>((*cubin)->getBuffer().str());
  job.figures = parseFigures(logText);
}

} // namespace

LogicalResult mergeGpuModules(ModuleOp kernels) {
  // Each launch keeps the name of the module it was outlined into: the
  // kernel's name in the manifest and in the kernel IR the simulator runs.
  kernels.walk([&](gpu::LaunchFuncOp launch) {
    launch->setAttr(kKernelModuleAttr, launch.getKernelModuleName());
  });
  SmallVector<gpu::GPUModuleOp> modules(kernels.getOps<gpu::GPUModuleOp>());
  if (modules.size() <= 1)
    return success();
  OpBuilder builder(modules.front());
  auto merged = gpu::GPUModuleOp::create(builder, modules.front().getLoc(),
                                         kMergedModuleName);
  SymbolTable mergedSymbols(merged);
  // (old module, old symbol) -> new symbol, for the launches.
  llvm::DenseMap<std::pair<StringAttr, StringAttr>, StringAttr> renamed;
  for (gpu::GPUModuleOp module : modules) {
    SmallVector<Operation *> ops;
    for (Operation &op : *module.getBody())
      if (!op.hasTrait<OpTrait::IsTerminator>())
        ops.push_back(&op);
    for (Operation *op : ops) {
      StringAttr name = SymbolTable::getSymbolName(op);
      if (name && mergedSymbols.lookup(name)) {
        // Several launches of one host function have kernels of one name,
        // each in its own module; shared-memory globals may clash too.
        unsigned suffix = 0;
        StringAttr unique;
        do {
          unique = builder.getStringAttr(name.getValue() + "_" +
                                         Twine(suffix++));
        } while (mergedSymbols.lookup(unique) ||
                 SymbolTable::lookupSymbolIn(module, unique));
        if (failed(SymbolTable::replaceAllSymbolUses(op, unique, module)))
          return module.emitError() << "cannot rename '" << name << "'";
        SymbolTable::setSymbolName(op, unique);
      }
      if (name)
        renamed[{module.getNameAttr(), name}] = SymbolTable::getSymbolName(op);
      op->remove();
      mergedSymbols.insert(op);
    }
  }
  WalkResult result = kernels.walk([&](gpu::LaunchFuncOp launch) {
    auto it = renamed.find(
        {launch.getKernelModuleName(), launch.getKernelName()});
    if (it == renamed.end()) {
      launch.emitError() << "launches a kernel that no gpu.module defines";
      return WalkResult::interrupt();
    }
    launch.setKernelAttr(SymbolRefAttr::get(
        merged.getNameAttr(), {FlatSymbolRefAttr::get(it->second)}));
    return WalkResult::advance();
  });
  for (gpu::GPUModuleOp module : modules)
    module.erase();
  return failure(result.wasInterrupted());
}

FailureOr<std::vector<GpuKernelCode>>
compileGpuKernels(ModuleOp kernels, const std::string &ptxas,
                  unsigned maxProcesses) {
  // Name, entry, argument count and strategy of each kernel, from its
  // launch; the module holding it, which ptxas compiles.
  llvm::StringMap<GpuKernelCode> byName;
  llvm::StringMap<std::string> binaryOf;
  SmallVector<std::string> order;
  llvm::DenseMap<Operation *, unsigned> launchesSeen;
  kernels.walk([&](gpu::LaunchFuncOp launch) {
    StringRef module = launch.getKernelModuleName().getValue();
    StringRef name = module;
    if (auto original = launch->getAttrOfType<StringAttr>(kKernelModuleAttr))
      name = original.getValue();
    auto [it, inserted] = byName.try_emplace(name);
    GpuKernelCode &code = it->second;
    if (inserted)
      order.push_back(name.str());
    code.name = name.str();
    code.entry = launch.getKernelName().getValue().str();
    code.numArgs = launch.getKernelOperands().size();
    APInt dynamicShared;
    if (Value size = launch.getDynamicSharedMemorySize();
        size && matchPattern(size, m_ConstantInt(&dynamicShared)))
      code.dynamicSharedBytes = uint32_t(dynamicShared.getZExtValue());
    binaryOf[name] = module.str();
    // The strategy that built the launch: kernel functions list their
    // launches' configurations in order.
    if (auto host = launch->getParentOfType<func::FuncOp>()) {
      unsigned position = launchesSeen[host]++;
      auto configs = host->getAttrOfType<ArrayAttr>("kiln.launch_configs");
      if (configs && position < configs.size())
        code.config = dyn_cast<DictionaryAttr>(configs[position]);
    }
  });
  // One ptxas run per module and architecture: with the modules merged,
  // one per architecture, as many at a time as there are cores.
  std::vector<PtxasJob> jobs;
  llvm::StringMap<SmallVector<size_t>> jobsOf;
  SmallVector<gpu::BinaryOp> anchors;
  for (auto binary : kernels.getOps<gpu::BinaryOp>()) {
    for (Attribute attr : binary.getObjects()) {
      auto object = cast<gpu::ObjectAttr>(attr);
      auto target = dyn_cast<NVVM::NVVMTargetAttr>(object.getTarget());
      if (!target)
        return binary.emitError() << "not an NVVM target";
      PtxasJob job;
      job.arch = target.getChip().str();
      job.ptx = std::make_shared<const std::string>(
          object.getObject().getValue().str());
      jobsOf[binary.getName()].push_back(jobs.size());
      jobs.push_back(std::move(job));
      anchors.push_back(binary);
    }
  }
  {
    llvm::DefaultThreadPool pool(
        llvm::heavyweight_hardware_concurrency(maxProcesses));
    for (PtxasJob &job : jobs)
      pool.async([&ptxas, job = &job] { runPtxas(ptxas, *job); });
    pool.wait();
  }
  for (size_t i = 0; i < jobs.size(); ++i)
    if (!jobs[i].error.empty())
      return anchors[i].emitError() << jobs[i].error;

  std::vector<GpuKernelCode> result;
  for (const std::string &name : order) {
    GpuKernelCode code = byName.lookup(name);
    auto jobIndices = jobsOf.find(binaryOf.lookup(name));
    if (jobIndices == jobsOf.end())
      return kernels.emitError() << "no compiled module holds kernel '"
                                 << name << "'";
    for (size_t index : jobIndices->second) {
      const PtxasJob &job = jobs[index];
      GpuKernelImage image;
      image.arch = job.arch;
      image.ptx = job.ptx;
      image.cubin = job.cubin;
      EntryFigures figures = job.figures.lookup(code.entry);
      image.registers = figures.registers;
      image.sharedBytes = figures.sharedBytes;
      image.stackBytes = figures.stackBytes;
      image.spillStoreBytes = figures.spillStoreBytes;
      image.spillLoadBytes = figures.spillLoadBytes;
      code.images.push_back(std::move(image));
    }
    result.push_back(std::move(code));
  }
  return result;
}

} // namespace kiln::codegen
