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

#include <cstdlib>

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

namespace {

unsigned firstNumber(StringRef text, StringRef pattern) {
  llvm::Regex regex(pattern);
  SmallVector<StringRef> groups;
  unsigned value = 0;
  if (regex.match(text, &groups) && groups.size() > 1)
    groups[1].getAsInteger(10, value);
  return value;
}

/// Runs ptxas on `image.ptx` for `image.arch`; fills the cubin and the
/// figures. Returns the error, empty on success. Safe to call from several
/// threads: it touches nothing but its own files and `image`.
std::string runPtxas(const std::string &ptxas, StringRef kernel,
                     GpuKernelImage &image) {
  llvm::SmallString<128> ptxPath, cubinPath, logPath;
  int fd;
  if (llvm::sys::fs::createTemporaryFile("kiln-kernel", "ptx", fd, ptxPath) ||
      llvm::sys::fs::createTemporaryFile("kiln-kernel", "cubin", cubinPath) ||
      llvm::sys::fs::createTemporaryFile("kiln-ptxas", "log", logPath))
    return "cannot create temporary files for ptxas";
  llvm::scope_exit cleanup([&] {
    llvm::sys::fs::remove(ptxPath);
    llvm::sys::fs::remove(cubinPath);
    llvm::sys::fs::remove(logPath);
  });
  {
    llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
    out << image.ptx;
  }
  std::string archFlag = "-arch=" + image.arch;
  SmallVector<StringRef> args = {ptxas, archFlag, "-O3", "-v", ptxPath,
                                 "-o", cubinPath};
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(logPath),
                                          StringRef(logPath)};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, redirects, 0,
                                     0, &message);
  auto log = llvm::MemoryBuffer::getFile(logPath);
  StringRef logText = log ? (*log)->getBuffer() : StringRef();
  if (rc != 0)
    return ("ptxas rejected kernel '" + kernel + "' for " + image.arch +
            " (exit " + Twine(rc) + ") " + message + "\n" + logText)
        .str();
  auto cubin = llvm::MemoryBuffer::getFile(cubinPath, /*IsText=*/false);
  if (!cubin)
    return ("ptxas wrote no cubin for '" + kernel + "'").str();
  image.cubin = (*cubin)->getBuffer().str();
  image.registers = firstNumber(logText, "Used ([0-9]+) registers");
  image.sharedBytes = firstNumber(logText, "([0-9]+) bytes smem");
  image.stackBytes = firstNumber(logText, "([0-9]+) bytes stack frame");
  image.spillStoreBytes = firstNumber(logText, "([0-9]+) bytes spill stores");
  image.spillLoadBytes = firstNumber(logText, "([0-9]+) bytes spill loads");
  return "";
}

} // namespace

FailureOr<std::vector<GpuKernelCode>>
compileGpuKernels(ModuleOp kernels, const std::string &ptxas,
                  unsigned maxProcesses) {
  // Entry, argument count and strategy of each gpu.module, from its launch.
  llvm::StringMap<GpuKernelCode> byModule;
  kernels.walk([&](gpu::LaunchFuncOp launch) {
    GpuKernelCode &code = byModule[launch.getKernelModuleName().getValue()];
    code.name = launch.getKernelModuleName().getValue().str();
    code.entry = launch.getKernelName().getValue().str();
    code.numArgs = launch.getKernelOperands().size();
    if (auto host = launch->getParentOfType<func::FuncOp>())
      if (auto strategy = host->getAttrOfType<StringAttr>("kiln.strategy"))
        code.strategy = strategy.str();
  });
  std::vector<GpuKernelCode> result;
  SmallVector<gpu::BinaryOp> binaries;
  for (auto binary : kernels.getOps<gpu::BinaryOp>()) {
    auto it = byModule.find(binary.getName());
    if (it == byModule.end())
      continue; // never launched
    GpuKernelCode code = it->second;
    for (Attribute attr : binary.getObjects()) {
      auto object = cast<gpu::ObjectAttr>(attr);
      auto target = dyn_cast<NVVM::NVVMTargetAttr>(object.getTarget());
      if (!target)
        return binary.emitError() << "not an NVVM target";
      GpuKernelImage image;
      image.arch = target.getChip().str();
      image.ptx = object.getObject().getValue().str();
      code.images.push_back(std::move(image));
    }
    result.push_back(std::move(code));
    binaries.push_back(binary);
  }
  // One ptxas process per kernel and architecture, as many at a time as
  // there are cores: ptxas itself is single-threaded.
  struct Job {
    size_t kernel, image;
    std::string error;
  };
  std::vector<Job> jobs;
  for (size_t k = 0; k < result.size(); ++k)
    for (size_t i = 0; i < result[k].images.size(); ++i)
      jobs.push_back({k, i, ""});
  {
    llvm::DefaultThreadPool pool(
        llvm::heavyweight_hardware_concurrency(maxProcesses));
    for (Job &job : jobs)
      pool.async([&ptxas, &result, job = &job] {
        job->error = runPtxas(ptxas, result[job->kernel].name,
                              result[job->kernel].images[job->image]);
      });
    pool.wait();
  }
  for (const Job &job : jobs)
    if (!job.error.empty())
      return binaries[job.kernel].emitError() << job.error;
  return result;
}

} // namespace kiln::codegen
