// The artifact loader and the C API on hand-built artifacts: valid ones run,
// malformed ones fail with a clear message and never crash.
#include "ArtifactTestUtil.h"
#include "artifact.h"
#include "integrity.h"
#include "kiln/artifact_format.h"
#include "kiln/runtime.h"
#include "cpu_backend.h"
#include "cuda_driver.h"
#include "manifest.pb.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace {

using kiln::artifact::BufferRef;
using kiln::artifact::Launch;
using kiln::artifact::Manifest;

using kiln::test::addSpec;
using kiln::test::serialize;
using kiln::test::tensor4;

/// y = copy of weight w (4 floats), z = copy of input x via the arena.
Manifest copyModel() {
  Manifest m;
  m.set_target("cpu");
  m.set_arena_bytes(64);
  auto *w = m.add_weights();
  addSpec(w->mutable_spec(), "w", {4});
  w->set_section(0);
  w->set_offset(0);
  w->set_size(16);
  auto *entry = m.add_entry_points();
  entry->set_name("main");
  addSpec(entry->add_inputs(), "x", {4});
  addSpec(entry->add_outputs(), "y", {4});
  addSpec(entry->add_outputs(), "z", {4});
  auto ref = [](Launch *l, BufferRef::Kind kind, uint32_t index,
                uint64_t offset = 0) {
    auto *r = l->add_args();
    r->set_kind(kind);
    r->set_index(index);
    r->set_offset(offset);
    r->set_size(16);
  };
  Launch *copyW = entry->add_launches();
  copyW->set_kind(Launch::COPY);
  ref(copyW, BufferRef::OUTPUT, 0);
  ref(copyW, BufferRef::WEIGHT, 0);
  Launch *toArena = entry->add_launches();
  toArena->set_kind(Launch::COPY);
  ref(toArena, BufferRef::ARENA, 0, 16);
  ref(toArena, BufferRef::INPUT, 0);
  Launch *fromArena = entry->add_launches();
  fromArena->set_kind(Launch::COPY);
  ref(fromArena, BufferRef::OUTPUT, 1);
  ref(fromArena, BufferRef::ARENA, 0, 16);
  return m;
}

std::string weightsBytes() {
  float w[4] = {1.5f, -2.0f, 3.25f, 0.0f};
  return std::string(reinterpret_cast<const char *>(w), sizeof(w));
}

/// Loads `bytes`; returns the error message, or "" on success.
std::string loadError(const std::string &bytes) {
  kiln_module *module = nullptr;
  kiln_status status =
      kiln_module_load_memory(bytes.data(), bytes.size(), &module);
  std::string message = status ? kiln_status_message(status) : "";
  kiln_status_free(status);
  if (module)
    kiln_module_free(module);
  EXPECT_EQ(module == nullptr, !message.empty());
  return message;
}


TEST(RuntimeLoader, ValidArtifactRuns) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  kiln_module *module = nullptr;
  ASSERT_EQ(kiln_module_load_memory(bytes.data(), bytes.size(), &module),
            nullptr);
  EXPECT_STREQ(kiln_module_target(module), "cpu");
  ASSERT_EQ(kiln_module_entry_count(module), 1u);
  EXPECT_STREQ(kiln_module_entry_name(module, 0), "main");
  kiln_session *session = nullptr;
  ASSERT_EQ(kiln_session_create(module, "cpu", &session), nullptr);
  float x[4] = {9, 8, 7, 6}, y[4] = {}, z[4] = {};
  kiln_tensor in = tensor4(x);
  kiln_tensor out[2] = {tensor4(y), tensor4(z)};
  kiln_status status = kiln_session_run(session, "main", &in, 1, out, 2);
  EXPECT_EQ(status, nullptr) << kiln_status_message(status);
  EXPECT_EQ(y[0], 1.5f);
  EXPECT_EQ(y[2], 3.25f);
  EXPECT_EQ(z[0], 9.0f);
  EXPECT_EQ(z[3], 6.0f);
  kiln_session_free(session);
  kiln_module_free(module);
}

TEST(RuntimeLoader, TruncatedFile) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  EXPECT_NE(loadError(bytes.substr(0, 10)).find("shorter than the 64-byte header"),
            std::string::npos);
  // Every strict prefix fails cleanly (the header records the file size).
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string error = loadError(bytes.substr(0, n));
    EXPECT_FALSE(error.empty()) << "prefix of " << n << " bytes loaded";
  }
  EXPECT_NE(loadError(bytes.substr(0, bytes.size() - 1)).find("truncated"),
            std::string::npos);
}

TEST(RuntimeLoader, BadMagic) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  bytes[0] = 'X';
  EXPECT_NE(loadError(bytes).find("not a Kiln artifact (bad magic)"),
            std::string::npos);
}

TEST(RuntimeLoader, NewerFormatVersion) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  uint32_t version = KILN_ARTIFACT_FORMAT_VERSION + 1;
  std::memcpy(&bytes[8], &version, 4);
  kiln::test::resealHeader(bytes);
  std::string error = loadError(bytes);
  EXPECT_NE(error.find("newer than this runtime"), std::string::npos) << error;
  EXPECT_NE(error.find("update the Kiln runtime"), std::string::npos);
}

TEST(RuntimeLoader, SectionPastTheEnd) {
  Manifest m = copyModel();
  auto *section = m.add_sections();
  section->set_name("kernels.x86_64");
  section->set_kind(kiln::artifact::HOST_SHARED_OBJECT);
  section->set_offset(64);
  section->set_size(1u << 30);
  std::string error = loadError(serialize(m, weightsBytes()));
  EXPECT_NE(error.find("section 'kernels.x86_64'"), std::string::npos) << error;
  EXPECT_NE(error.find("lies past the end of the file"), std::string::npos);
}

TEST(RuntimeLoader, CorruptManifest) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  kiln_artifact_header header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  for (uint64_t i = header.manifest_offset; i < bytes.size(); ++i)
    bytes[i] = static_cast<char>(0xff);
  EXPECT_NE(loadError(bytes).find("the manifest's checksum does not match"),
            std::string::npos);
  // Bytes that hash right but do not parse (a writer's bug, or a forgery).
  header.manifest_xxh3 = kiln::runtime::checksum(
      bytes.data() + header.manifest_offset, header.manifest_size);
  std::memcpy(bytes.data(), &header, sizeof(header));
  kiln::test::resealHeader(bytes);
  EXPECT_NE(loadError(bytes).find("manifest cannot be parsed"),
            std::string::npos);
}

// Checksums: damage anywhere in a used part of the file is an error naming
// the part; damage in the alignment padding is harmless and only
// `Artifact::nonZeroPadding` (kiln inspect --verify) sees it.
TEST(RuntimeLoader, EveryDamagedByteIsCaught) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  kiln_artifact_header header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  Manifest m = kiln::test::manifestOf(bytes);
  auto used = [&](size_t at) {
    if (at < sizeof(header) || at >= header.manifest_offset)
      return true;
    for (const auto &s : m.sections())
      if (at >= s.offset() && at < s.offset() + s.size())
        return true;
    return false;
  };
  size_t caught = 0, padding = 0;
  for (size_t at = 0; at < bytes.size(); ++at)
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = bytes;
      damaged[at] = static_cast<char>(damaged[at] ^ (1 << bit));
      std::string error = loadError(damaged);
      if (used(at)) {
        EXPECT_FALSE(error.empty()) << "bit " << bit << " of byte " << at;
        caught += !error.empty();
      } else {
        EXPECT_EQ(error, "") << "padding byte " << at;
        auto artifact = kiln::runtime::Artifact::loadMemory(
            damaged.data(), damaged.size(), "<damaged>");
        ASSERT_TRUE(artifact.ok());
        EXPECT_EQ((*artifact)->nonZeroPadding(), 1u);
        ++padding;
      }
    }
  EXPECT_GT(caught, 8 * (sizeof(header) + 16));
  EXPECT_GT(padding, 0u);
}

TEST(RuntimeLoader, DamagedSectionsAreNamed) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  Manifest m = kiln::test::manifestOf(bytes);
  uint64_t at = m.sections(0).offset() + 5;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x10);
  EXPECT_NE(loadError(bytes).find("the checksum of section 'weights' (16 "
                                  "bytes at offset 64) does not match"),
            std::string::npos)
      << loadError(bytes);
  // Skipping the weights' checksums loads it (and uses the damaged weight).
  kiln_module *module = nullptr;
  ASSERT_EQ(kiln_module_load_memory_ex(bytes.data(), bytes.size(),
                                       KILN_LOAD_SKIP_WEIGHT_CHECKSUMS,
                                       &module),
            nullptr);
  kiln_module_free(module);
  // Kernel code is checked whatever the flags say.
  std::string withCode = serialize(
      copyModel(), {{"weights", kiln::artifact::WEIGHTS, "", weightsBytes()},
                    {"kernels.x86_64", kiln::artifact::HOST_SHARED_OBJECT,
                     "x86_64", std::string(100, 'k')}});
  Manifest withCodeManifest = kiln::test::manifestOf(withCode);
  withCode[withCodeManifest.sections(1).offset() + 99] = 'K';
  kiln_status status = kiln_module_load_memory_ex(
      withCode.data(), withCode.size(), KILN_LOAD_SKIP_WEIGHT_CHECKSUMS,
      &module);
  ASSERT_NE(status, nullptr);
  EXPECT_NE(std::string(kiln_status_message(status))
                .find("the checksum of section 'kernels.x86_64'"),
            std::string::npos);
  kiln_status_free(status);
  status = kiln_module_load_memory_ex(bytes.data(), bytes.size(), 1u << 7,
                                      &module);
  ASSERT_NE(status, nullptr);
  EXPECT_NE(std::string(kiln_status_message(status)).find("unknown flags 128"),
            std::string::npos);
  kiln_status_free(status);
}

TEST(RuntimeLoader, OlderFormatVersions) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  for (uint32_t version : {1u, 2u}) {
    std::string old = bytes;
    std::memcpy(&old[8], &version, 4);
    std::memset(&old[40], 0, 24);  // no checksums before version 3
    std::string error = loadError(old);
    EXPECT_NE(error.find("written by an older Kiln without checksums"),
              std::string::npos)
        << error;
    EXPECT_NE(error.find("Compile the model again"), std::string::npos);
  }
}

TEST(RuntimeLoader, WeightOutsideItsSection) {
  Manifest m = copyModel();
  m.mutable_weights(0)->set_offset(1024);
  EXPECT_NE(loadError(serialize(m, weightsBytes()))
                .find("weight 'w' lies outside its section"),
            std::string::npos);
}

TEST(RuntimeLoader, LaunchOutsideTheArena) {
  Manifest m = copyModel();
  m.mutable_entry_points(0)->mutable_launches(1)->mutable_args(0)->set_offset(
      1u << 20);
  EXPECT_NE(loadError(serialize(m, weightsBytes())).find("outside"),
            std::string::npos);
}

TEST(RuntimeLoader, MissingKernel) {
  Manifest m = copyModel();
  Launch *launch = m.mutable_entry_points(0)->add_launches();
  launch->set_kind(Launch::KERNEL);
  launch->set_kernel(3);
  EXPECT_NE(loadError(serialize(m, weightsBytes())).find("missing kernel"),
            std::string::npos);
}

TEST(RuntimeLoader, MissingFile) {
  kiln_module *module = nullptr;
  kiln_status status =
      kiln_module_load_file("/nonexistent/model.kiln", &module);
  ASSERT_NE(status, nullptr);
  EXPECT_NE(std::string(kiln_status_message(status)).find("cannot open"),
            std::string::npos);
  kiln_status_free(status);
  EXPECT_EQ(module, nullptr);
}

TEST(RuntimeSession, WrongDeviceAndShapes) {
  std::string bytes = serialize(copyModel(), weightsBytes());
  kiln_module *module = nullptr;
  ASSERT_EQ(kiln_module_load_memory(bytes.data(), bytes.size(), &module),
            nullptr);
  kiln_session *session = nullptr;
  kiln_status status = kiln_session_create(module, "cuda:0", &session);
  ASSERT_NE(status, nullptr);
  EXPECT_NE(std::string(kiln_status_message(status)).find("--device cpu"),
            std::string::npos);
  kiln_status_free(status);

  ASSERT_EQ(kiln_session_create(module, "cpu", &session), nullptr);
  float x[4] = {}, y[4] = {}, z[4] = {};
  kiln_tensor in = tensor4(x);
  in.shape[0] = 3;
  kiln_tensor out[2] = {tensor4(y), tensor4(z)};
  status = kiln_session_run(session, nullptr, &in, 1, out, 2);
  ASSERT_NE(status, nullptr);
  EXPECT_NE(std::string(kiln_status_message(status))
                .find("input #0 'x' must be f32[4], got f32[3]"),
            std::string::npos)
      << kiln_status_message(status);
  kiln_status_free(status);
  status = kiln_session_run(session, nullptr, &in, 1, out, 1);
  ASSERT_NE(status, nullptr);
  kiln_status_free(status);
  kiln_session_free(session);
  kiln_module_free(module);
}

/// Creates a session on `device` for an artifact of `target`; returns the
/// error message, or "" on success.
std::string sessionError(const char *target, const char *device) {
  Manifest m = copyModel();
  m.set_target(target);
  std::string bytes = serialize(m, weightsBytes());
  kiln_module *module = nullptr;
  if (kiln_status status =
          kiln_module_load_memory(bytes.data(), bytes.size(), &module)) {
    std::string message = kiln_status_message(status);
    kiln_status_free(status);
    return "load: " + message;
  }
  kiln_session *session = nullptr;
  kiln_status status = kiln_session_create(module, device, &session);
  std::string message = status ? kiln_status_message(status) : "";
  kiln_status_free(status);
  EXPECT_EQ(session == nullptr, !message.empty());
  kiln_session_free(session);
  kiln_module_free(module);
  return message;
}

// COM: the device string picks the backend (runtime/src/backend.cc); every
// refusal keeps its exact wording, which tools and users match on.
TEST(RuntimeSession, DeviceStringsPickABackend) {
  EXPECT_EQ(sessionError("cpu", "cpu"), "");
  EXPECT_EQ(sessionError("cpu", nullptr), "");
  EXPECT_EQ(sessionError("cpu", "tpu:0"),
            "unknown device 'tpu:0'; use cpu, sim or cuda:N");
  EXPECT_EQ(sessionError("cpu", "cpu:0"),
            "unknown device 'cpu:0'; use cpu, sim or cuda:N");
  EXPECT_EQ(sessionError("cpu", ""),
            "unknown device ''; use cpu, sim or cuda:N");
  EXPECT_EQ(sessionError("cpu", "sim"),
            "device 'sim' (the GPU-kernel simulator) runs in the kiln tool, "
            "not in the runtime library; use `kiln run --device sim`");
  EXPECT_EQ(sessionError("cuda:sm_80", "sim"),
            "device 'sim' (the GPU-kernel simulator) runs in the kiln tool, "
            "not in the runtime library; use `kiln run --device sim`");
  EXPECT_EQ(sessionError("cpu", "cuda:0"),
            "'<memory>' targets 'cpu' and cannot run on device 'cuda:0'; run "
            "it with --device cpu, or compile with --target cuda:sm_80");
  // The target is checked before the ordinal's form.
  EXPECT_EQ(sessionError("cpu", "cuda:x"),
            "'<memory>' targets 'cpu' and cannot run on device 'cuda:x'; run "
            "it with --device cpu, or compile with --target cuda:sm_80");
  EXPECT_EQ(sessionError("cpu", "cudax"),
            "'<memory>' targets 'cpu' and cannot run on device 'cudax'; run "
            "it with --device cpu, or compile with --target cuda:sm_80");
  EXPECT_EQ(sessionError("cuda:sm_80", "cpu"),
            "'<memory>' was compiled for 'cuda:sm_80', not for the CPU; run "
            "it with --device cuda:0 (or sim), or compile with --target cpu");
  for (const char *device : {"cuda", "cuda:", "cuda:x", "cuda:-1", "cuda:0x",
                             "cuda0", "cudax", "cuda:+1", "cuda: 1",
                             "cuda:3000000000"})
    EXPECT_EQ(sessionError("cuda:sm_80", device),
              std::string("device '") + device +
                  "' is not of the form cuda:N");
}

} // namespace

namespace {

TEST(CudaDriver, MissingDriverIsAClearError) {
  absl::Status status =
      kiln::runtime::loadCudaDriver("libkiln-no-such-driver.so.1").status();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(std::string(status.message()).find("no CUDA driver: cannot load "
                                               "libkiln-no-such-driver.so.1"),
            std::string::npos)
      << status.message();
}

TEST(RuntimeLoader, GpuImageOutsideItsSection) {
  Manifest m = copyModel();
  m.set_target("cuda:sm_80");
  auto *kernel = m.add_kernels();
  kernel->set_name("k");
  kernel->set_symbol("k");
  auto *image = kernel->add_images();
  image->set_arch("sm_80");
  image->set_cubin_section(0);
  image->set_cubin_offset(0);
  image->set_cubin_size(1u << 20);
  image->set_ptx_section(0);
  std::string error = loadError(serialize(m, weightsBytes()));
  EXPECT_NE(error.find("the sm_80 image of kernel 'k' lies outside its section"),
            std::string::npos)
      << error;
}

TEST(RuntimeLoader, HostKernelsAreCodeSections) {
  // A cpu artifact's kernel in a missing section, or in the weights (whose
  // checksum a caller may skip), is refused before any code is loaded.
  for (uint32_t section : {0u, 5u}) {
    Manifest m = copyModel();
    auto *kernel = m.add_kernels();
    kernel->set_name("k");
    kernel->set_symbol("k_entry");
    kernel->set_section(section);
    EXPECT_NE(loadError(serialize(m, weightsBytes()))
                  .find("kernel 'k' refers to a missing section"),
              std::string::npos);
  }
}

TEST(RuntimeSession, HostKernelsNeedTheirCpuFeatures) {
  // Host code for an instruction set this CPU lacks would die of SIGILL: a
  // feature the runtime cannot check (as a newer compiler might record) is
  // refused before any code is loaded, with what to do.
  Manifest m = copyModel();
  m.set_host_cpu("futurecpu");
  m.add_host_features("avx2");
  m.add_host_features("not-a-feature");
  auto *kernel = m.add_kernels();
  kernel->set_name("k");
  kernel->set_symbol("k_entry");
  kernel->set_section(1);
  std::string bytes = serialize(
      m, {{"weights", kiln::artifact::WEIGHTS, "", weightsBytes()},
          {"kernels", kiln::artifact::HOST_SHARED_OBJECT, kiln::runtime::hostArch(),
           std::string(256, '\x7f')}});
  kiln_module *module = nullptr;
  kiln_session *session = nullptr;
  std::string error = kiln::test::openSession(bytes, "cpu", &module, &session);
  EXPECT_NE(error.find("were compiled for futurecpu and use "), std::string::npos)
      << error;
  EXPECT_NE(error.find("not-a-feature, which this CPU does not have; compile "
                       "the model on this machine, or with --cpu NAME"),
            std::string::npos)
      << error;
  EXPECT_EQ(session, nullptr);
  kiln_module_free(module);
}

} // namespace

TEST(RuntimeDtypes, NamesAndSizesOfEveryDtype) {
  struct Expected {
    kiln_dtype dtype;
    const char *name;
    size_t size;
  };
  const Expected all[] = {
      {KILN_DTYPE_F32, "f32", 4},  {KILN_DTYPE_F16, "f16", 2},
      {KILN_DTYPE_BF16, "bf16", 2}, {KILN_DTYPE_F64, "f64", 8},
      {KILN_DTYPE_I8, "i8", 1},    {KILN_DTYPE_I16, "i16", 2},
      {KILN_DTYPE_I32, "i32", 4},  {KILN_DTYPE_I64, "i64", 8},
      {KILN_DTYPE_BOOL, "bool", 1}, {KILN_DTYPE_U8, "u8", 1},
      {KILN_DTYPE_U16, "u16", 2},  {KILN_DTYPE_U32, "u32", 4},
      {KILN_DTYPE_U64, "u64", 8},
      // The narrow types take a byte per element at the API.
      {KILN_DTYPE_F8E4M3FN, "f8e4m3fn", 1}, {KILN_DTYPE_F8E4M3FNUZ, "f8e4m3fnuz", 1},
      {KILN_DTYPE_F8E5M2, "f8e5m2", 1}, {KILN_DTYPE_F8E5M2FNUZ, "f8e5m2fnuz", 1},
      {KILN_DTYPE_F8E8M0, "f8e8m0", 1}, {KILN_DTYPE_F4E2M1, "f4e2m1", 1},
      {KILN_DTYPE_I4, "i4", 1},    {KILN_DTYPE_U4, "u4", 1},
      {KILN_DTYPE_I2, "i2", 1},    {KILN_DTYPE_U2, "u2", 1}};
  for (const Expected &e : all) {
    EXPECT_STREQ(kiln_dtype_name(e.dtype), e.name);
    EXPECT_EQ(kiln_dtype_size(e.dtype), e.size) << e.name;
  }
  EXPECT_STREQ(kiln_dtype_name(KILN_DTYPE_INVALID), "invalid");
  EXPECT_EQ(kiln_dtype_size(KILN_DTYPE_INVALID), 0u);
}
