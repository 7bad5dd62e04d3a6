//===- ArtifactTarget.cpp - fuzzing the artifact loader and one run -------===//
//
// The first byte picks the mode, the rest is the file:
//  - even: the bytes as they are, as a damaged file reaches the loader.
//    Almost every mutation fails a checksum; an intact file is queried and
//    run on the CPU.
//  - odd: every checksum is first made right again, so a mutation reaches
//    the checks of the manifest's contents: a file written by a buggy or
//    hostile writer. The file is queried, and run when it has no kernel
//    (its launches are copies): a kernel's code and its arguments are what
//    a manifest is trusted with (docs/reliability.md).
//
//===----------------------------------------------------------------------===//
#include "fuzz/FuzzTarget.h"
#include "test/unit/ArtifactTestUtil.h"

#include "artifact.h"
#include "generation.h"
#include "integrity.h"
#include "kiln/artifact_format.h"
#include "kiln/runtime.h"
#include "tokenizer.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace kiln::fuzz {

namespace {

// At most this many bytes of inputs and outputs per run.
constexpr uint64_t kMaxRunBytes = uint64_t(1) << 26;

/// `bytes` with the sections', the manifest's and the header's checksums
/// made right (the tests' helpers, ArtifactTestUtil.h), when the header
/// and manifest can be read at all.
std::string seal(std::string bytes) {
  kiln_artifact_header header;
  if (bytes.size() < sizeof(header))
    return bytes;
  std::memcpy(&header, bytes.data(), sizeof(header));
  bool inFile = header.manifest_offset >= sizeof(header) &&
                header.manifest_offset <= bytes.size() &&
                header.manifest_size <= bytes.size() - header.manifest_offset;
  artifact::Manifest manifest;
  if (inFile && manifest.ParseFromArray(bytes.data() + header.manifest_offset,
                                        int(header.manifest_size)))
    return test::replaceManifest(std::move(bytes), manifest);
  if (inFile) {
    header.manifest_xxh3 = runtime::checksum(
        bytes.data() + header.manifest_offset, header.manifest_size);
    std::memcpy(bytes.data(), &header, sizeof(header));
  }
  test::resealHeader(bytes);
  return bytes;
}

struct Module {
  kiln_module *m = nullptr;
  ~Module() { kiln_module_free(m); }
};
struct Session {
  kiln_session *s = nullptr;
  ~Session() { kiln_session_free(s); }
};

void ignore(kiln_status status) {
  note(status ? kiln_status_message(status) : "ok");
  kiln_status_free(status);
}

/// Every query of entry point `e`; then, if `run`, a run with zeroed
/// inputs at the dims' lower bounds.
void exercise(kiln_module *module, size_t e, bool run) {
  const char *entry = kiln_module_entry_name(module, e);
  size_t inputs = kiln_module_input_count(module, e);
  size_t outputs = kiln_module_output_count(module, e);
  size_t dims = kiln_module_dim_count(module, e);
  std::vector<int64_t> lower(dims, 1);
  for (size_t d = 0; d < dims; ++d) {
    const char *name;
    int64_t min, max;
    if (kiln_status s = kiln_module_dim_info(module, e, d, &name, &min, &max))
      ignore(s);
    else
      lower[d] = min;
  }
  std::vector<kiln_tensor> in(inputs), out(outputs);
  std::vector<std::vector<uint8_t>> buffers;
  uint64_t total = 0;
  // Gives `t` zeroed memory for its shape, within kMaxRunBytes in all.
  auto allocate = [&](kiln_tensor &t) {
    uint64_t bytes = kiln_dtype_size(t.dtype);
    for (int a = 0; a < t.rank && a < KILN_MAX_RANK; ++a) {
      if (t.shape[a] < 0 || t.shape[a] > (int64_t(1) << 26))
        return false;
      bytes *= uint64_t(t.shape[a]);
      if (bytes > kMaxRunBytes)
        return false;
    }
    total += bytes;
    if (total > kMaxRunBytes)
      return false;
    buffers.emplace_back(bytes);
    t.data = buffers.back().data();
    t.size_bytes = bytes;
    return true;
  };
  for (size_t i = 0; i < inputs; ++i) {
    const char *name;
    if (kiln_status s = kiln_module_input_info(module, e, i, &in[i], &name))
      return ignore(s);
    for (int a = 0; a < in[i].rank && a < KILN_MAX_RANK; ++a)
      if (in[i].shape[a] < 0) {
        int symbol = kiln_module_input_dim_symbol(module, e, i, a);
        in[i].shape[a] =
            symbol >= 0 && size_t(symbol) < dims ? lower[symbol] : 1;
      }
    if (!allocate(in[i]))
      return;
  }
  for (size_t o = 0; o < outputs; ++o) {
    const char *name;
    if (kiln_status s = kiln_module_output_info(module, e, o, &out[o], &name))
      return ignore(s);
  }
  if (kiln_status s = kiln_module_output_shapes(module, entry, in.data(),
                                                inputs, out.data(), outputs))
    return ignore(s);
  for (size_t o = 0; o < outputs; ++o)
    if (!allocate(out[o]))
      return;
  for (size_t l = 0; l < kiln_module_launch_count(module, e); ++l)
    kiln_module_launch_kernel(module, e, l);
  if (!run)
    return;
  Session session;
  if (kiln_status s = kiln_session_create(module, "cpu", &session.s))
    return ignore(s);
  ignore(kiln_session_set_threads(session.s, 1));
  ignore(kiln_session_run(session.s, entry, in.data(), inputs, out.data(),
                          outputs));
}

/// The tokenizer and generation config the manifest carries.
void generation(const std::string &bytes) {
  auto artifact = runtime::Artifact::loadMemory(bytes.data(), bytes.size(),
                                                "<fuzz>");
  if (!artifact.ok())
    return;
  auto model = runtime::generationModel(**artifact);
  if (!model.ok())
    return note(std::string(model.status().message()));
  if (!model->tokenizer)
    return note("no tokenizer");
  const runtime::Tokenizer &tokenizer = *model->tokenizer;
  (void)tokenizer.encode("Hello, world! \xc3\xa9t\xc3\xa9  \xe2\x96\x81 42\n"
                         "\xf0\x9f\x99\x82 <|endoftext|>");
  std::vector<int64_t> ids;
  for (int64_t id = -1; id <= int64_t(tokenizer.size()) && id < 4096; ++id)
    ids.push_back(id);
  (void)tokenizer.decode(ids.data(), ids.size());
  (void)tokenizer.decode(ids.data(), ids.size(), /*continuation=*/true);
}

} // namespace

int artifact(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  bool sealed = data[0] & 1;
  std::string bytes(reinterpret_cast<const char *>(data) + 1, size - 1);
  if (sealed)
    bytes = seal(std::move(bytes));
  Module module;
  if (kiln_status s =
          kiln_module_load_memory(bytes.data(), bytes.size(), &module.m))
    return ignore(s), 0;
  note(std::string("loaded a ") + kiln_module_target(module.m) +
       " artifact");
  accepted();
  auto parsed = runtime::Artifact::loadMemory(bytes.data(), bytes.size(),
                                              "<fuzz>");
  // No kernel at all: creating a session loads every kernel's code.
  bool copiesOnly = parsed.ok() && (*parsed)->manifest().kernels_size() == 0;
  for (size_t e = 0; e < kiln_module_entry_count(module.m); ++e)
    exercise(module.m, e, !sealed || copiesOnly);
  generation(bytes);
  return 0;
}

} // namespace kiln::fuzz
