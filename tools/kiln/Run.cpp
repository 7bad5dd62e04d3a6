//===- Run.cpp - kiln run and kiln bench ----------------------------------===//
#include "kiln/runtime.hpp"
#include "tools/kiln/Driver.h"
#include "tools/kiln/HostTensor.h"
#include "tools/kiln/SimRun.h"

#include <algorithm>
#include <optional>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <sys/stat.h>

namespace kiln::driver {
namespace {

const char *kRunHelp = R"(usage: kiln run OUT.kiln [options]

Runs an entry point of a compiled artifact and prints its outputs.

  --device cpu|sim|cuda:N    where to run; sim runs a cuda artifact's
                             kernels in the GPU-kernel simulator (compile
                             with --embed-kernel-ir)
  --input NAME=@FILE         an input from a .npy or ONNX TensorProto .pb
                             file (repeatable; every input is needed)
  --output-dir DIR           write every output as DIR/NAME.npy
  --entry NAME               entry point (default: the first)
  --threads N                CPU threads (default 0: one per CPU this
                             process may use); results do not depend on it
  --skip-weight-checksums     load without checking the weights'
                             checksums (for files verified elsewhere;
                             the kernel code is always checked)
)";

const char *kBenchHelp = R"(usage: kiln bench OUT.kiln [options]

Times an entry point: latency percentiles over --iterations runs after
--warmup runs (wall clock around each synchronous run, copies included),
then a table of the time each kernel takes per run (CUDA events around
every launch on a GPU, the wall clock on the CPU). Inputs not given with
--input are filled with random values.

  --device cpu|cuda:N
  --iterations N       (default 50)
  --warmup N           (default 5)
  --input NAME=@FILE   (repeatable)
  --entry NAME
  --threads N          CPU threads (default 0: one per CPU this process
                       may use)
  --skip-weight-checksums
                       load without checking the weights' checksums
)";

const char *kProfileHelp = R"(usage: kiln profile OUT.kiln --device sim [options]

Runs a cuda artifact's kernels in the GPU-kernel simulator (compile with
--embed-kernel-ir) and prints, per kernel, what the simulator counts: the
32-byte sectors its warps move against the bytes it touches at all,
shared-memory bank conflicts, tensor-core (mma.sync) and fp32 work,
occupancy from ptxas's registers and shared memory, and a roofline bound of
its time on a named GPU. A model, not a measurement. Inputs not given with
--input are filled with random values.

  --gpu h100|h200|a100   the GPU of the roofline (default h200)
  --sample-blocks N      simulate at most N blocks per launch, evenly
                         spaced, and scale the counters to the grid
                         (default 16; 0: every block)
  --input NAME=@FILE     (repeatable)
  --entry NAME
  --skip-weight-checksums
                         load without checking the weights' checksums
)";

struct RunOptions {
  std::string artifact, device = "cpu", outputDir, entry, gpu = "h200";
  std::map<std::string, std::string> inputs;
  int iterations = 50, warmup = 5;
  uint32_t sampleBlocks = 16;
  int threads = 0;
  bool skipWeightChecksums = false;
};

enum class Mode { Run, Bench, Profile };

double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

std::optional<RunOptions> parse(const Args &args, Mode mode,
                                std::string &error) {
  RunOptions o;
  bool bench = mode == Mode::Bench;
  for (size_t i = 0; i < args.size() && error.empty(); ++i) {
    std::string value;
    const std::string &arg = args[i];
    if (takeOption(args, i, "--device", value, error)) {
      o.device = value;
    } else if (takeOption(args, i, "--output-dir", value, error)) {
      o.outputDir = value;
    } else if (takeOption(args, i, "--entry", value, error)) {
      o.entry = value;
    } else if (takeOption(args, i, "--iterations", value, error)) {
      o.iterations = std::atoi(value.c_str());
      if (o.iterations <= 0)
        error = "--iterations must be a positive number";
    } else if (mode == Mode::Profile &&
               takeOption(args, i, "--gpu", value, error)) {
      o.gpu = value;
      if (!knownProfileGpu(value))
        error = "--gpu " + value + " is not one of " + profileGpuNames();
    } else if (mode == Mode::Profile &&
               takeOption(args, i, "--sample-blocks", value, error)) {
      o.sampleBlocks = uint32_t(std::max(0, std::atoi(value.c_str())));
    } else if (mode != Mode::Profile &&
               takeOption(args, i, "--threads", value, error)) {
      if (!parseThreads(value, o.threads))
        error = "--threads expects a count (0: one per CPU), got '" + value +
                "'";
    } else if (takeOption(args, i, "--warmup", value, error)) {
      o.warmup = std::max(0, std::atoi(value.c_str()));
    } else if (takeOption(args, i, "--input", value, error)) {
      size_t at = value.find("=@");
      if (at == std::string::npos || at == 0) {
        error = "--input expects NAME=@FILE, got '" + value + "'";
        break;
      }
      o.inputs[value.substr(0, at)] = value.substr(at + 2);
    } else if (arg == "--skip-weight-checksums") {
      o.skipWeightChecksums = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(mode == Mode::Profile ? kProfileHelp
                 : bench                 ? kBenchHelp
                                         : kRunHelp,
                 stdout);
      std::exit(0);
    } else if (!arg.empty() && arg[0] == '-') {
      error = "unknown option '" + arg + "'";
    } else if (o.artifact.empty()) {
      o.artifact = arg;
    } else {
      error = "unexpected argument '" + arg + "'";
    }
  }
  if (error.empty() && o.artifact.empty())
    error = std::string("no artifact given; usage: kiln ") +
            (mode == Mode::Profile ? "profile"
             : bench               ? "bench"
                                   : "run") +
            " OUT.kiln";
  if (error.empty() && mode == Mode::Profile && o.device != "sim")
    error = "kiln profile runs on the simulator: pass --device sim (on a "
            "GPU, kiln bench times the kernels)";
  if (!error.empty())
    return std::nullopt;
  return o;
}

/// An input's dtype and shape as the model declares it, symbolic dims
/// with their bounds: "f32[batch=1..8,128]".
std::string describeInput(const rt::Module &module, size_t entry,
                          size_t input, const rt::TensorInfo &info) {
  std::string s = kiln_dtype_name(info.tensor.dtype);
  s += "[";
  for (int d = 0; d < info.tensor.rank; ++d) {
    std::string name;
    int64_t lo = 0, hi = 0;
    s += d ? "," : "";
    if (module.inputDim(entry, input, d, name, lo, hi))
      s += name + "=" + std::to_string(lo) + ".." + std::to_string(hi);
    else
      s += std::to_string(info.tensor.shape[d]);
  }
  return s + "]";
}

struct Prepared {
  std::unique_ptr<rt::Module> module;
  std::unique_ptr<rt::Session> session;
  size_t entry = 0;
  std::vector<rt::TensorInfo> inputInfo, outputInfo;
  std::vector<HostTensor> inputs, outputs;
  double loadMs = 0, sessionMs = 0;
};

/// The simulator loads the file again and checks it as `prepare` did.
SimOptions simOptions(const RunOptions &o) {
  SimOptions options;
  options.verifyWeights = !o.skipWeightChecksums;
  return options;
}

/// Loads the artifact, creates the session and reads or makes the inputs.
int prepare(const RunOptions &o, bool randomMissing, Prepared &p) {
  std::string error;
  auto start = std::chrono::steady_clock::now();
  p.module = rt::Module::load(
      o.artifact, error,
      o.skipWeightChecksums ? KILN_LOAD_SKIP_WEIGHT_CHECKSUMS : 0);
  if (!p.module)
    return fail(error);
  p.loadMs = msSince(start);
  bool found = o.entry.empty() && p.module->entryCount() > 0;
  for (size_t e = 0; e < p.module->entryCount() && !o.entry.empty(); ++e)
    if (p.module->entryName(e) == o.entry) {
      p.entry = e;
      found = true;
    }
  if (!found)
    return fail("no entry point '" + o.entry + "' in '" + o.artifact + "'");
  p.inputInfo = p.module->inputs(p.entry);
  p.outputInfo = p.module->outputs(p.entry);

  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (const auto &[name, file] : o.inputs)
    if (std::none_of(p.inputInfo.begin(), p.inputInfo.end(),
                     [&](const rt::TensorInfo &i) { return i.name == name; }))
      return fail("--input " + name + ": the entry point has no input named '" +
                  name + "'");
  for (const rt::TensorInfo &info : p.inputInfo) {
    HostTensor tensor;
    tensor.dtype = info.tensor.dtype;
    tensor.shape.assign(info.tensor.shape, info.tensor.shape + info.tensor.rank);
    auto it = o.inputs.find(info.name);
    if (it != o.inputs.end()) {
      if (std::string readError = readTensorFile(it->second, tensor);
          !readError.empty())
        return fail("input '" + info.name + "': " + readError);
      HostTensor expected;
      expected.dtype = info.tensor.dtype;
      expected.shape.assign(info.tensor.shape,
                            info.tensor.shape + info.tensor.rank);
      // A symbolic dim (-1) takes the file's size; the runtime checks it
      // against the dim's bounds.
      bool fits = tensor.dtype == expected.dtype &&
                  tensor.shape.size() == expected.shape.size();
      for (size_t d = 0; fits && d < tensor.shape.size(); ++d)
        fits = expected.shape[d] < 0 || tensor.shape[d] == expected.shape[d];
      if (!fits)
        return fail("input '" + info.name + "' from '" + it->second +
                    "' is " + tensor.describe() + " but the model expects " +
                    describeInput(*p.module, p.entry, p.inputs.size(), info));
    } else if (randomMissing) {
      // Random data at the symbolic dims' upper bounds.
      for (int d = 0; d < info.tensor.rank; ++d) {
        std::string dimName;
        int64_t lo = 0, hi = 0;
        if (p.module->inputDim(p.entry, p.inputs.size(), d, dimName, lo, hi))
          tensor.shape[d] = hi;
      }
      tensor.data.resize(info.tensor.size_bytes);
      if (tensor.dtype == KILN_DTYPE_F32)
        for (size_t i = 0; i < info.tensor.size_bytes / 4; ++i) {
          float v = uniform(rng);
          std::memcpy(tensor.data.data() + 4 * i, &v, 4);
        }
    } else {
      return fail("missing input '" + info.name + "' (" +
                  describeInput(*p.module, p.entry, p.inputs.size(), info) +
                  "); pass --input " + info.name + "=@FILE.npy");
    }
    p.inputs.push_back(std::move(tensor));
  }
  // Output shapes follow the inputs' symbolic dims.
  std::vector<kiln_tensor> views;
  for (HostTensor &t : p.inputs)
    views.push_back(t.view());
  p.outputInfo = p.module->outputShapes(p.entry, views, error);
  if (!error.empty())
    return fail(error);
  for (const rt::TensorInfo &info : p.outputInfo) {
    HostTensor tensor;
    tensor.dtype = info.tensor.dtype;
    tensor.shape.assign(info.tensor.shape, info.tensor.shape + info.tensor.rank);
    tensor.data.resize(info.tensor.size_bytes);
    p.outputs.push_back(std::move(tensor));
  }
  if (o.device == "sim")
    return 0; // no runtime session: the simulator runs the launch program
  start = std::chrono::steady_clock::now();
  p.session = rt::Session::create(*p.module, o.device, error);
  if (!p.session)
    return fail(error);
  error = p.session->setThreads(o.threads);
  if (!error.empty())
    return fail(error);
  p.sessionMs = msSince(start);
  return 0;
}

std::string runOnce(Prepared &p) {
  std::vector<kiln_tensor> in, out;
  for (HostTensor &t : p.inputs)
    in.push_back(t.view());
  for (HostTensor &t : p.outputs)
    out.push_back(t.view());
  return p.session->run(p.module->entryName(p.entry), in, out);
}

} // namespace

int runRun(const Args &args) {
  std::string error;
  std::optional<RunOptions> o = parse(args, Mode::Run, error);
  if (!o)
    return fail(error);
  Prepared p;
  if (int rc = prepare(*o, /*randomMissing=*/false, p))
    return rc;
  auto start = std::chrono::steady_clock::now();
  SimReport report;
  std::string runError =
      o->device == "sim"
          ? runOnSimulator(o->artifact, p.entry, p.inputs, p.outputs, report,
                           simOptions(*o))
          : runOnce(p);
  if (!runError.empty())
    return fail(runError);
  double runMs = msSince(start);

  if (!o->outputDir.empty()) {
    mkdir(o->outputDir.c_str(), 0755);
    for (size_t i = 0; i < p.outputs.size(); ++i) {
      std::string path = o->outputDir + "/" + p.outputInfo[i].name + ".npy";
      if (std::string writeError = writeNpy(path, p.outputs[i]);
          !writeError.empty())
        return fail(writeError);
    }
  }
  for (size_t i = 0; i < p.outputs.size(); ++i)
    std::printf("output '%s' %s = %s\n", p.outputInfo[i].name.c_str(),
                p.outputs[i].describe().c_str(),
                previewValues(p.outputs[i], 8).c_str());
  std::printf("timing: load %.3f ms, session %.3f ms, run %.3f ms (device %s)\n",
              p.loadMs, p.sessionMs, runMs, o->device.c_str());
  if (o->device == "sim")
    std::printf("simulator: %llu launches, %llu blocks, %llu thread-ops "
                "(%.1f M thread-ops/s)\n",
                static_cast<unsigned long long>(report.launches),
                static_cast<unsigned long long>(report.blocks),
                static_cast<unsigned long long>(report.threadOps),
                report.threadOps / (runMs * 1e3));
  return 0;
}

/// Per-kernel time per run, heaviest first, from launch-by-launch timing.
int printKernelTable(Prepared &p, int iterations) {
  std::vector<kiln_tensor> in, out;
  for (HostTensor &t : p.inputs)
    in.push_back(t.view());
  for (HostTensor &t : p.outputs)
    out.push_back(t.view());
  std::vector<double> launchMs;
  if (std::string error = p.session->profile(p.module->entryName(p.entry), in,
                                             out, iterations, launchMs);
      !error.empty())
    return fail(error);
  std::vector<std::string> kernels = p.module->launchKernels(p.entry);
  struct Row {
    std::string kernel;
    int launches = 0;
    double ms = 0;
  };
  std::vector<Row> rows;
  double total = 0;
  for (size_t i = 0; i < launchMs.size() && i < kernels.size(); ++i) {
    auto it = std::find_if(rows.begin(), rows.end(),
                           [&](const Row &r) { return r.kernel == kernels[i]; });
    if (it == rows.end())
      it = rows.insert(rows.end(), Row{kernels[i]});
    ++it->launches;
    it->ms += launchMs[i];
    total += launchMs[i];
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row &a, const Row &b) { return a.ms > b.ms; });
  std::printf("\nper kernel (mean per run over %d runs, launch by launch%s):\n",
              iterations,
              p.module->target().rfind("cuda", 0) == 0 ? ", CUDA events" : "");
  std::printf("  %-32s %8s %12s %7s\n", "kernel", "launches", "ms", "share");
  for (const Row &r : rows)
    std::printf("  %-32s %8d %12.4f %6.1f%%\n", r.kernel.c_str(), r.launches,
                r.ms, total > 0 ? 100.0 * r.ms / total : 0.0);
  std::printf("  %-32s %8zu %12.4f\n", "total", launchMs.size(), total);
  return 0;
}

int runBench(const Args &args) {
  std::string error;
  std::optional<RunOptions> o = parse(args, Mode::Bench, error);
  if (!o)
    return fail(error);
  if (o->device == "sim")
    return fail("kiln bench times real hardware; the simulator's speed says "
                "nothing about a GPU's. Use `kiln run --device sim` to check "
                "a cuda artifact, and bench it with --device cuda:N");
  Prepared p;
  if (int rc = prepare(*o, /*randomMissing=*/true, p))
    return rc;
  for (int i = 0; i < o->warmup; ++i)
    if (std::string runError = runOnce(p); !runError.empty())
      return fail(runError);
  std::vector<double> times;
  for (int i = 0; i < o->iterations; ++i) {
    auto start = std::chrono::steady_clock::now();
    if (std::string runError = runOnce(p); !runError.empty())
      return fail(runError);
    times.push_back(msSince(start));
  }
  std::sort(times.begin(), times.end());
  auto pct = [&](double q) {
    return times[std::min(times.size() - 1,
                          static_cast<size_t>(q * (times.size() - 1) + 0.5))];
  };
  double mean = 0;
  for (double t : times)
    mean += t / times.size();
  std::printf("%s on %s: %d iterations (%d warm-up)", o->artifact.c_str(),
              o->device.c_str(), o->iterations, o->warmup);
  if (int threads = p.session->threads())
    std::printf(", %d thread%s", threads, threads == 1 ? "" : "s");
  std::printf("\n");
  std::printf("latency ms: min %.4f  p50 %.4f  p90 %.4f  p99 %.4f  max %.4f  "
              "mean %.4f\n",
              times.front(), pct(0.5), pct(0.9), pct(0.99), times.back(), mean);
  return printKernelTable(p, o->iterations);
}

} // namespace kiln::driver

namespace kiln::driver {

int runProfile(const Args &args) {
  std::string error;
  std::optional<RunOptions> o = parse(args, Mode::Profile, error);
  if (!o)
    return fail(error);
  Prepared p;
  if (int rc = prepare(*o, /*randomMissing=*/true, p))
    return rc;
  SimReport report;
  SimOptions options = simOptions(*o);
  options.sampleBlocks = o->sampleBlocks;
  if (std::string runError = runOnSimulator(o->artifact, p.entry, p.inputs,
                                            p.outputs, report, options);
      !runError.empty())
    return fail(runError);
  return printProfile(o->artifact, report, o->gpu, o->sampleBlocks);
}

} // namespace kiln::driver
