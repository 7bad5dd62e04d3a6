//===- main.cpp - kiln-runner: run artifacts with the runtime library alone -===//
//
// The part of `kiln run` that needs no compiler: it links only the bundled
// runtime archive (no LLVM, MLIR, protobuf or Abseil shared libraries), so
// it runs on a GPU machine that has nothing of Kiln's toolchain. The GPU
// bundle ships it.
//
//   kiln-runner OUT.kiln [--device cuda:0|cpu] [--input NAME=@FILE.npy ...]
//               [--output-dir DIR] [--repeat N] [--profile N]
//
// --profile N times every launch over N more runs (CUDA events on a GPU)
// and prints one line per kernel: "kernel NAME LAUNCHES MS-PER-RUN".
//
//===----------------------------------------------------------------------===//
#include "kiln/runtime.hpp"
#include "tools/kiln/HostTensor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <sys/stat.h>

using namespace kiln::driver;

static int fail(const std::string &message) {
  std::fprintf(stderr, "kiln-runner: error: %s\n", message.c_str());
  return 1;
}

int main(int argc, char **argv) {
  std::string artifact, device = "cuda:0", outputDir;
  std::map<std::string, std::string> files;
  int repeat = 1, profile = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      return i + 1 < argc ? argv[++i] : "";
    };
    if (arg == "--device")
      device = value();
    else if (arg == "--output-dir")
      outputDir = value();
    else if (arg == "--repeat")
      repeat = std::max(1, std::atoi(value().c_str()));
    else if (arg == "--profile")
      profile = std::max(1, std::atoi(value().c_str()));
    else if (arg == "--input") {
      std::string spec = value();
      size_t at = spec.find("=@");
      if (at == std::string::npos)
        return fail("--input expects NAME=@FILE.npy, got '" + spec + "'");
      files[spec.substr(0, at)] = spec.substr(at + 2);
    } else if (artifact.empty() && arg[0] != '-')
      artifact = arg;
    else
      return fail("unknown argument '" + arg + "'");
  }
  if (artifact.empty())
    return fail("usage: kiln-runner OUT.kiln [--device D] [--input N=@F.npy]"
                " [--output-dir DIR] [--repeat N] [--profile N]");

  std::string error;
  auto module = kiln::rt::Module::load(artifact, error);
  if (!module)
    return fail(error);
  std::vector<HostTensor> inputs, outputs;
  for (const auto &info : module->inputs(0)) {
    auto it = files.find(info.name);
    if (it == files.end())
      return fail("missing input '" + info.name + "'");
    HostTensor t;
    if (std::string e = readNpy(it->second, t); !e.empty())
      return fail(e);
    inputs.push_back(std::move(t));
  }
  // Output shapes follow the inputs' symbolic dims.
  std::vector<kiln_tensor> views;
  for (auto &t : inputs)
    views.push_back(t.view());
  std::vector<kiln::rt::TensorInfo> outputInfo =
      module->outputShapes(0, views, error);
  if (!error.empty())
    return fail(error);
  for (const auto &info : outputInfo) {
    HostTensor t;
    t.dtype = info.tensor.dtype;
    t.shape.assign(info.tensor.shape, info.tensor.shape + info.tensor.rank);
    t.data.resize(info.tensor.size_bytes);
    outputs.push_back(std::move(t));
  }
  auto session = kiln::rt::Session::create(*module, device, error);
  if (!session)
    return fail(error);
  std::vector<kiln_tensor> in, out;
  for (auto &t : inputs)
    in.push_back(t.view());
  for (auto &t : outputs)
    out.push_back(t.view());
  std::vector<double> times;
  for (int r = 0; r < repeat; ++r) {
    auto start = std::chrono::steady_clock::now();
    if (std::string e = session->run(module->entryName(0), in, out); !e.empty())
      return fail(e);
    times.push_back(std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - start)
                        .count());
  }
  if (!outputDir.empty()) {
    mkdir(outputDir.c_str(), 0755);
    auto infos = module->outputs(0);
    for (size_t i = 0; i < outputs.size(); ++i)
      if (std::string e =
              writeNpy(outputDir + "/" + infos[i].name + ".npy", outputs[i]);
          !e.empty())
        return fail(e);
  }
  if (profile) {
    std::vector<double> launchMs;
    if (std::string e = session->profile(module->entryName(0), in, out,
                                         profile, launchMs);
        !e.empty())
      return fail(e);
    std::vector<std::string> kernels = module->launchKernels(0);
    std::map<std::string, std::pair<int, double>> perKernel;
    for (size_t i = 0; i < launchMs.size() && i < kernels.size(); ++i) {
      ++perKernel[kernels[i]].first;
      perKernel[kernels[i]].second += launchMs[i];
    }
    for (const auto &[name, row] : perKernel)
      std::printf("kernel %s %d %.6f\n", name.c_str(), row.first, row.second);
  }
  std::sort(times.begin(), times.end());
  std::printf("timing: run %.4f ms (p50 of %d, device %s)\n",
              times[times.size() / 2], repeat, device.c_str());
  return 0;
}
