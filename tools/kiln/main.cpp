//===- main.cpp - the kiln command ----------------------------------------===//
#include "tools/kiln/Driver.h"

#include <cstdio>
#include <cstring>

namespace kiln::driver {

int fail(const std::string &message) {
  std::fprintf(stderr, "kiln: error: %s\n", message.c_str());
  return 1;
}

bool parseThreads(const std::string &value, int &threads) {
  if (value.empty() || value.size() > 4 ||
      value.find_first_not_of("0123456789") != std::string::npos)
    return false;
  threads = std::atoi(value.c_str());
  return threads <= 4096;
}

bool takeOption(const Args &args, size_t &i, const std::string &name,
                std::string &value, std::string &error) {
  const std::string &arg = args[i];
  if (arg == name) {
    if (i + 1 >= args.size()) {
      error = "option " + name + " needs a value";
      return true;
    }
    value = args[++i];
    return true;
  }
  if (arg.size() > name.size() && arg.compare(0, name.size(), name) == 0 &&
      arg[name.size()] == '=') {
    value = arg.substr(name.size() + 1);
    return true;
  }
  return false;
}

} // namespace kiln::driver

static const char *kUsage = R"(usage: kiln <command> [options]

commands:
  compile MODEL -o OUT.kiln [--target cpu] [--precision fp32|fp16|bf16]
          [--dim NAME=VALUE|NAME=MIN..MAX ...] [--cpu host|NAME]
          [--emit mlir|dispatch-mlir|kernel-mlir|artifact]
          [--mlir-print-ir-after-all | --mlir-print-ir-after=PASS]
          [--mlir-timing]
  run OUT.kiln [--device cpu] [--input NAME=@file.npy|@file.pb ...]
          [--output-dir DIR] [--entry NAME] [--threads N]
  bench OUT.kiln [--device cpu] [--iterations N] [--warmup N]
          [--input NAME=@file ...] [--threads N]
  inspect OUT.kiln [--json] [--verify]
  generate OUT.kiln --prompt-ids 1,2,3 [--max-new-tokens N]
          [--temperature T --top-k K --top-p P --seed S] [--device cpu]
          [--threads N] [--json]
  tokenize OUT.kiln --text TEXT | --ids 1,2,3
  profile OUT.kiln --device sim [--gpu h100|h200|a100] [--sample-blocks N]
          [--input NAME=@file ...]

`kiln <command> --help` describes a command. Docs: docs/ in the repository.
)";

int main(int argc, char **argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("kiln %s\n", KILN_VERSION);
    return 0;
  }
  std::string command = argv[1];
  kiln::driver::Args args(argv + 2, argv + argc);
  if (command == "compile")
    return kiln::driver::runCompile(args);
  if (command == "run")
    return kiln::driver::runRun(args);
  if (command == "bench")
    return kiln::driver::runBench(args);
  if (command == "inspect")
    return kiln::driver::runInspect(args);
  if (command == "tokenize")
    return kiln::driver::runTokenize(args);
  if (command == "generate")
    return kiln::driver::runGenerate(args);
  if (command == "profile")
    return kiln::driver::runProfile(args);
  std::fprintf(stderr, "kiln: error: unknown command '%s'\n\n%s",
               command.c_str(), kUsage);
  return 2;
}
