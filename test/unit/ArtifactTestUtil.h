// Hand-built artifacts for the runtime's tests.
#ifndef KILN_TEST_UNIT_ARTIFACTTESTUTIL_H
#define KILN_TEST_UNIT_ARTIFACTTESTUTIL_H

#include "integrity.h"
#include "kiln/artifact_format.h"
#include "kiln/runtime.h"
#include "manifest.pb.h"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace kiln::test {

inline std::string align64(std::string bytes) {
  bytes.resize((bytes.size() + 63) / 64 * 64, '\0');
  return bytes;
}

struct SectionBytes {
  std::string name;
  artifact::SectionKind kind;
  std::string arch;
  std::string bytes;
};

/// `bytes` (a header, sections, then the manifest) with its manifest
/// replaced by `manifest` and every checksum made right, as `kiln compile`
/// writes them: the tests' hand-built and edited artifacts reach the checks
/// they aim at, past the checksums.
inline std::string replaceManifest(std::string bytes,
                                   artifact::Manifest manifest) {
  kiln_artifact_header header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  bytes.resize(header.manifest_offset);
  for (auto &section : *manifest.mutable_sections())
    if (section.offset() <= bytes.size() &&
        section.size() <= bytes.size() - section.offset())
      section.set_xxh3(
          runtime::checksum(bytes.data() + section.offset(), section.size()));
  std::string manifestBytes;
  manifest.SerializeToString(&manifestBytes);
  header.manifest_size = manifestBytes.size();
  header.file_size = bytes.size() + manifestBytes.size();
  header.manifest_xxh3 =
      runtime::checksum(manifestBytes.data(), manifestBytes.size());
  header.header_xxh3 = runtime::headerChecksum(header);
  std::memcpy(bytes.data(), &header, sizeof(header));
  return bytes + manifestBytes;
}

/// The parsed manifest of `bytes`.
inline artifact::Manifest manifestOf(const std::string &bytes) {
  kiln_artifact_header header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  artifact::Manifest manifest;
  manifest.ParseFromArray(bytes.data() + header.manifest_offset,
                          static_cast<int>(header.manifest_size));
  return manifest;
}

/// Makes the header's checksum right again after a test edited the header.
inline void resealHeader(std::string &bytes) {
  kiln_artifact_header header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  header.header_xxh3 = runtime::headerChecksum(header);
  std::memcpy(bytes.data(), &header, sizeof(header));
}

/// header + sections (in order; the manifest's section indices follow it)
/// + manifest, with offsets and sizes filled in.
inline std::string serialize(artifact::Manifest manifest,
                             const std::vector<SectionBytes> &sections) {
  std::string body = align64(std::string(sizeof(kiln_artifact_header), '\0'));
  for (const SectionBytes &s : sections) {
    auto *section = manifest.add_sections();
    section->set_name(s.name);
    section->set_kind(s.kind);
    section->set_arch(s.arch);
    section->set_offset(body.size());
    section->set_size(s.bytes.size());
    body = align64(body + s.bytes);
  }
  std::string manifestBytes;
  manifest.SerializeToString(&manifestBytes);
  kiln_artifact_header header;
  std::memset(&header, 0, sizeof(header));
  std::memcpy(header.magic, KILN_ARTIFACT_MAGIC, 8);
  header.format_version = KILN_ARTIFACT_FORMAT_VERSION;
  header.header_size = sizeof(header);
  header.manifest_offset = body.size();
  header.manifest_size = manifestBytes.size();
  header.file_size = body.size() + manifestBytes.size();
  std::memcpy(body.data(), &header, sizeof(header));
  return replaceManifest(body + manifestBytes, manifest);
}

/// The same with one weights section.
inline std::string serialize(artifact::Manifest manifest,
                             const std::string &weights) {
  return serialize(std::move(manifest),
                   {{"weights", artifact::WEIGHTS, "", weights}});
}

inline void addSpec(artifact::TensorSpec *spec, const char *name,
                    std::initializer_list<int64_t> shape) {
  spec->set_name(name);
  spec->set_dtype(artifact::F32);
  for (int64_t d : shape)
    spec->add_shape(d);
}

inline void addRef(artifact::Launch *launch, artifact::BufferRef::Kind kind,
                   uint32_t index, uint64_t offset = 0, uint64_t size = 16) {
  auto *r = launch->add_args();
  r->set_kind(kind);
  r->set_index(index);
  r->set_offset(offset);
  r->set_size(size);
}

/// Appends a dim expression to `entry`'s dim program; returns its index.
inline uint32_t addDimExpr(artifact::EntryPoint *entry,
                           artifact::DimExpr::Op op, int64_t value,
                           uint32_t lhs = 0, uint32_t rhs = 0) {
  artifact::DimExpr *e = entry->add_dim_exprs();
  e->set_op(op);
  e->set_value(value);
  e->set_lhs(lhs);
  e->set_rhs(rhs);
  return static_cast<uint32_t>(entry->dim_exprs_size() - 1);
}

/// Symbolic dim `name` in min..max of `entry`, and the expression that
/// reads it (a SYMBOL): its index.
inline uint32_t addSymbolicDim(artifact::EntryPoint *entry, const char *name,
                               int64_t min, int64_t max) {
  auto *dim = entry->add_dims();
  dim->set_name(name);
  dim->set_min(min);
  dim->set_max(max);
  return addDimExpr(entry, artifact::DimExpr::SYMBOL,
                    entry->dims_size() - 1);
}

/// An f32 tensor [n, inner...] whose first dim is expression `n`.
inline void addSymbolicSpec(artifact::TensorSpec *spec, const char *name,
                            uint32_t n, std::initializer_list<int64_t> inner) {
  spec->set_name(name);
  spec->set_dtype(artifact::F32);
  spec->add_shape(-1);
  spec->add_dim_exprs(static_cast<int32_t>(n));
  for (int64_t d : inner) {
    spec->add_shape(d);
    spec->add_dim_exprs(-1);
  }
}

/// Loads `bytes` into `*module` and creates a session on `device` in
/// `*session`; returns the error message, or "".
inline std::string openSession(const std::string &bytes, const char *device,
                               kiln_module **module, kiln_session **session) {
  if (kiln_status s =
          kiln_module_load_memory(bytes.data(), bytes.size(), module)) {
    std::string message = kiln_status_message(s);
    kiln_status_free(s);
    return message;
  }
  kiln_status s = kiln_session_create(*module, device, session);
  std::string message = s ? kiln_status_message(s) : "";
  kiln_status_free(s);
  return message;
}

/// A rank-1 f32 tensor of `n` elements over `data`.
inline kiln_tensor vectorF32(float *data, int64_t n) {
  kiln_tensor t;
  std::memset(&t, 0, sizeof(t));
  t.dtype = KILN_DTYPE_F32;
  t.rank = 1;
  t.shape[0] = n;
  t.data = data;
  t.size_bytes = 4 * n;
  return t;
}

inline kiln_tensor tensor4(float *data) { return vectorF32(data, 4); }

} // namespace kiln::test

#endif // KILN_TEST_UNIT_ARTIFACTTESTUTIL_H
