//===- main.cpp - kiln-runner: run artifacts with the runtime library alone -===//
//
// The part of `kiln run` that needs no compiler: it links only the bundled
// runtime archive (no LLVM, MLIR, protobuf or Abseil shared libraries), so
// it runs on a GPU machine that has nothing of Kiln's toolchain. The GPU
// bundle ships it.
//
//   kiln-runner OUT.kiln [--device cuda:0|cpu] [--input NAME=@FILE.npy ...]
//               [--output-dir DIR] [--repeat N] [--profile N] [--cycle DIR ...]
//
// --profile N times every launch over N more runs (CUDA events on a GPU)
// and prints one line per kernel: "kernel NAME LAUNCHES MS-PER-RUN".
// --cycle DIR adds a set of inputs (DIR/in_NAME.npy for every input), of
// other shapes for an artifact with symbolic dims: after the runs above,
// the runner runs the --input set and every cycle set in turn, --repeat
// rounds, and prints "timing: cycle S sets X ms per run (p50 ...)": what
// a server that sees changing shapes gets from the CUDA graph cache.
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
  std::vector<std::string> cycleDirs;
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
    else if (arg == "--cycle")
      cycleDirs.push_back(value());
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
  // The --input set, then the --cycle sets: inputs read, outputs sized
  // for them (output shapes follow the inputs' symbolic dims).
  struct RunSet {
    std::vector<HostTensor> inputs, outputs;
  };
  std::vector<RunSet> sets(1 + cycleDirs.size());
  for (size_t s = 0; s < sets.size(); ++s) {
    for (const auto &info : module->inputs(0)) {
      std::string path;
      if (s == 0) {
        auto it = files.find(info.name);
        if (it == files.end())
          return fail("missing input '" + info.name + "'");
        path = it->second;
      } else {
        path = cycleDirs[s - 1] + "/in_" + info.name + ".npy";
      }
      HostTensor t;
      if (std::string e = readNpy(path, t); !e.empty())
        return fail(e);
      sets[s].inputs.push_back(std::move(t));
    }
    std::vector<kiln_tensor> views;
    for (auto &t : sets[s].inputs)
      views.push_back(t.view());
    std::vector<kiln::rt::TensorInfo> outputInfo =
        module->outputShapes(0, views, error);
    if (!error.empty())
      return fail((s ? "cycle set " + std::to_string(s) + ": " : "") + error);
    for (const auto &info : outputInfo) {
      HostTensor t;
      t.dtype = info.tensor.dtype;
      t.shape.assign(info.tensor.shape, info.tensor.shape + info.tensor.rank);
      t.data.resize(info.tensor.size_bytes);
      sets[s].outputs.push_back(std::move(t));
    }
  }
  std::vector<HostTensor> &inputs = sets[0].inputs, &outputs = sets[0].outputs;
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
  if (!cycleDirs.empty()) {
    // Round robin over the sets; a run's time is a round's over its runs.
    std::vector<std::vector<kiln_tensor>> setIn(sets.size()), setOut(sets.size());
    for (size_t s = 0; s < sets.size(); ++s) {
      for (auto &t : sets[s].inputs)
        setIn[s].push_back(t.view());
      for (auto &t : sets[s].outputs)
        setOut[s].push_back(t.view());
    }
    std::vector<double> rounds;
    for (int r = 0; r < repeat; ++r) {
      auto start = std::chrono::steady_clock::now();
      for (size_t s = 0; s < sets.size(); ++s)
        if (std::string e =
                session->run(module->entryName(0), setIn[s], setOut[s]);
            !e.empty())
          return fail("cycle set " + std::to_string(s) + ": " + e);
      rounds.push_back(std::chrono::duration<double, std::milli>(
                           std::chrono::steady_clock::now() - start)
                           .count() /
                       double(sets.size()));
    }
    std::sort(rounds.begin(), rounds.end());
    std::printf("timing: cycle %zu sets %.4f ms per run (p50 of %d rounds, "
                "device %s)\n",
                sets.size(), rounds[rounds.size() / 2], repeat,
                device.c_str());
  }
  return 0;
}
