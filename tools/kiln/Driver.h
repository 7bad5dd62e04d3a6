//===- Driver.h - the kiln command's subcommands ----------------*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_DRIVER_H
#define KILN_TOOLS_KILN_DRIVER_H

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::driver {

using Args = std::vector<std::string>;

int runCompile(const Args &args);
int runRun(const Args &args);
int runBench(const Args &args);
int runInspect(const Args &args);
int runProfile(const Args &args);
int runGenerate(const Args &args);
int runTokenize(const Args &args);

struct SimReport;
/// kiln profile's table (Profile.cpp) for `report`, on GPU model `gpu`.
int printProfile(const std::string &path, const SimReport &report,
                 const std::string &gpu, uint32_t sampleBlocks);
bool knownProfileGpu(const std::string &name);
const char *profileGpuNames();

/// Prints "kiln: error: <message>" to stderr and returns 1.
int fail(const std::string &message);

/// Parses `--threads`'s value: a count from 0 (one per CPU) to 4096.
bool parseThreads(const std::string &value, int &threads);

/// Splits "--name=value" or "--name value" (advancing `i`). Returns false
/// if args[i] is not `name`.
bool takeOption(const Args &args, size_t &i, const std::string &name,
                std::string &value, std::string &error);

} // namespace kiln::driver

#endif // KILN_TOOLS_KILN_DRIVER_H
