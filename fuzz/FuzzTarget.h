//===- FuzzTarget.h - Kiln's fuzz targets --------------------------*- C++ -*-===//
//
// Each reader of outside input has a fuzz target: a function of a byte
// string that feeds it to the reader and returns 0 (docs/reliability.md).
// The same functions serve two builds:
//  - with clang's libFuzzer (scripts/fuzz.sh, the `asan` preset), one
//    kiln-fuzz-<target> binary per target (LibFuzzerMain.cpp);
//  - in the ordinary build, kiln-fuzz-replay (ReplayMain.cpp), which runs the
//    committed seeds and every input a fuzzer ever found a bug with
//    (test/fuzz/<target>/) in the normal test suite.
//
// A target whose reader takes files writes the bytes to a scratch folder
// first. Inputs of several files are split at kPartSeparator.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FUZZ_FUZZTARGET_H
#define KILN_FUZZ_FUZZTARGET_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::fuzz {

using TargetFn = int (*)(const uint8_t *data, size_t size);

struct Target {
  const char *name;
  TargetFn run;
  const char *what;
};

/// Every target, for kiln-fuzz-replay.
const std::vector<Target> &targets();

/// Between the files of a multi-file input (a checkpoint's config.json and
/// safetensors, an ONNX model and its external data).
inline constexpr std::string_view kPartSeparator = "\n==kiln-fuzz-part==\n";

/// `data` split at kPartSeparator into at most `count` parts (the last
/// takes the rest); missing parts are empty.
std::vector<std::string> splitParts(const uint8_t *data, size_t size,
                                    size_t count);

/// A folder of this process's own for the files a target writes; removed
/// at exit.
const std::string &scratchDir();
/// Writes `bytes` to scratchDir()/name; returns the path.
std::string writeScratch(const std::string &name, std::string_view bytes);
/// Removes scratchDir()/name if it exists.
void removeScratch(const std::string &name);

/// A target calls this when its reader took the input (an artifact
/// loaded, a model imported, ...). kiln-fuzz-replay requires it of every
/// seed, so that a seed the readers no longer take (after a format change)
/// fails the suite instead of testing nothing.
void accepted();
/// Whether accepted() was called since the last resetAccepted().
bool wasAccepted();
void resetAccepted();

/// With KILN_FUZZ_VERBOSE set, prints how far an input got (a reader's
/// error, a run's status) to stderr: to check that seeds reach deep.
void note(const std::string &what);

int artifact(const uint8_t *data, size_t size);
int onnxModel(const uint8_t *data, size_t size);
int tensorFile(const uint8_t *data, size_t size);
int checkpoint(const uint8_t *data, size_t size);
int tokenizer(const uint8_t *data, size_t size);

} // namespace kiln::fuzz

#endif // KILN_FUZZ_FUZZTARGET_H
