#include "fuzz/FuzzTarget.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

namespace kiln::fuzz {

const std::vector<Target> &targets() {
  static const std::vector<Target> all = {
      {"artifact", artifact,
       "a .kiln file: loaded (as is, or with its checksums made right so "
       "that the manifest's contents are checked), queried, and run"},
      {"onnx", onnxModel,
       "an ONNX model, and its external data after a part separator"},
      {"tensor", tensorFile, "an input tensor as .npy and as TensorProto"},
      {"checkpoint", checkpoint,
       "a checkpoint: config.json, then model.safetensors"},
      {"tokenizer", tokenizer,
       "tokenizer.json, then tokenizer.model (SentencePiece), encoded and "
       "decoded"},
  };
  return all;
}

std::vector<std::string> splitParts(const uint8_t *data, size_t size,
                                    size_t count) {
  std::string_view rest(reinterpret_cast<const char *>(data), size);
  std::vector<std::string> parts;
  while (parts.size() + 1 < count) {
    size_t at = rest.find(kPartSeparator);
    if (at == std::string_view::npos)
      break;
    parts.emplace_back(rest.substr(0, at));
    rest.remove_prefix(at + kPartSeparator.size());
  }
  parts.emplace_back(rest);
  parts.resize(count);
  return parts;
}

namespace {
std::string makeScratch() {
  const char *tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") +
                    "/kiln-fuzz-XXXXXX";
  if (!mkdtemp(dir.data())) {
    std::perror("kiln fuzz: mkdtemp");
    std::abort();
  }
  return dir;
}
} // namespace

const std::string &scratchDir() {
  static const std::string dir = [] {
    std::string made = makeScratch();
    static std::string forExit = made;
    std::atexit([] {
      std::string command = "rm -rf '" + forExit + "'";
      if (std::system(command.c_str()) != 0)
        std::fprintf(stderr, "kiln fuzz: could not remove %s\n",
                     forExit.c_str());
    });
    return made;
  }();
  return dir;
}

std::string writeScratch(const std::string &name, std::string_view bytes) {
  std::string path = scratchDir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  return path;
}

namespace {
bool gAccepted = false;
} // namespace

void accepted() { gAccepted = true; }
bool wasAccepted() { return gAccepted; }
void resetAccepted() { gAccepted = false; }

void note(const std::string &what) {
  static const bool verbose = std::getenv("KILN_FUZZ_VERBOSE") != nullptr;
  if (verbose)
    std::fprintf(stderr, "kiln fuzz: %s\n", what.c_str());
}

void removeScratch(const std::string &name) {
  unlink((scratchDir() + "/" + name).c_str());
}

} // namespace kiln::fuzz
