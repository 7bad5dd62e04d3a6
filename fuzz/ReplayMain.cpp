//===- ReplayMain.cpp - kiln-fuzz-replay ----------------------------------===//
//
// kiln-fuzz-replay DIR: runs every file of DIR/<target>/ (seeds, and the
// inputs fuzzing found a bug with) through that target; in the ordinary
// build, as part of the test suite. A crash is a failure of the suite.
// kiln-fuzz-replay TARGET FILE...: runs the files through one target.
//
//===----------------------------------------------------------------------===//
#include "fuzz/FuzzTarget.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace kiln::fuzz;

namespace {

/// Runs one file; a seed (seed-*) must also be taken by its reader.
bool runFile(const Target &target, const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "kiln-fuzz-replay: cannot read '%s'\n", path.c_str());
    return false;
  }
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  resetAccepted();
  target.run(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
  size_t slash = path.rfind('/');
  std::string name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  if (name.rfind("seed-", 0) == 0 && !wasAccepted()) {
    std::fprintf(stderr,
                 "kiln-fuzz-replay: the %s reader no longer takes the seed "
                 "'%s'; write the seeds again (test/fuzz/make_seeds.py)\n",
                 target.name, path.c_str());
    return false;
  }
  return true;
}

std::vector<std::string> filesOf(const std::string &dir) {
  std::vector<std::string> files;
  if (DIR *d = opendir(dir.c_str())) {
    while (dirent *entry = readdir(d)) {
      std::string path = dir + "/" + entry->d_name;
      struct stat st;
      if (entry->d_name[0] != '.' && stat(path.c_str(), &st) == 0 &&
          S_ISREG(st.st_mode))
        files.push_back(path);
    }
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  return files;
}

const Target *find(const char *name) {
  for (const Target &t : targets())
    if (!std::strcmp(t.name, name))
      return &t;
  return nullptr;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help")) {
    std::printf("usage: kiln-fuzz-replay CORPUS_DIR\n"
                "       kiln-fuzz-replay TARGET FILE...\n\ntargets:\n");
    for (const Target &t : targets())
      std::printf("  %-11s %s\n", t.name, t.what);
    return argc < 2 ? 2 : 0;
  }
  if (const Target *target = find(argv[1])) {
    for (int i = 2; i < argc; ++i)
      if (!runFile(*target, argv[i]))
        return 1;
    std::printf("kiln-fuzz-replay: %d input(s) of %s ran\n", argc - 2,
                target->name);
    return 0;
  }
  std::string root = argv[1];
  size_t total = 0;
  for (const Target &target : targets()) {
    std::vector<std::string> files = filesOf(root + "/" + target.name);
    if (files.empty()) {
      std::fprintf(stderr, "kiln-fuzz-replay: no inputs in %s/%s\n",
                   root.c_str(), target.name);
      return 1;
    }
    for (const std::string &file : files)
      if (!runFile(target, file))
        return 1;
    std::printf("%-11s %zu input(s) ran\n", target.name, files.size());
    total += files.size();
  }
  std::printf("kiln-fuzz-replay: %zu input(s) ran, none crashed\n", total);
  return 0;
}
