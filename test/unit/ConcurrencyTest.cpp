// What the runtime promises to threads (docs/reliability.md): a module is
// immutable once loaded and any number of threads may use it at once; each
// session belongs to one thread at a time. Run under ThreadSanitizer by
// scripts/sanitize.sh --thread; here it checks the results.
#include "ArtifactTestUtil.h"
#include "kiln/runtime.h"
#include "manifest.pb.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using kiln::artifact::BufferRef;
using kiln::artifact::Launch;
using kiln::artifact::Manifest;
using kiln::test::addRef;
using kiln::test::addSpec;

constexpr int kRows = 256;

/// y = 2 x + w (ParallelKernel.c, rows split over the session's threads),
/// z = w (a copy).
std::string scaleArtifact() {
  std::ifstream in(KILN_TEST_KERNEL_PATH, std::ios::binary);
  std::string code((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  EXPECT_FALSE(code.empty()) << KILN_TEST_KERNEL_PATH;
  Manifest m;
  m.set_target("cpu");
  auto *w = m.add_weights();
  addSpec(w->mutable_spec(), "w", {4});
  w->set_section(0);
  w->set_size(16);
  auto *kernel = m.add_kernels();
  kernel->set_name("scale");
  kernel->set_section(1);
  kernel->set_symbol("scale_entry");
  kernel->set_num_args(3);
  auto *entry = m.add_entry_points();
  entry->set_name("main");
  addSpec(entry->add_inputs(), "x", {kRows, 4});
  addSpec(entry->add_outputs(), "y", {kRows, 4});
  addSpec(entry->add_outputs(), "z", {4});
  Launch *scale = entry->add_launches();
  scale->set_kind(Launch::KERNEL);
  scale->set_kernel(0);
  addRef(scale, BufferRef::OUTPUT, 0, 0, kRows * 16);
  addRef(scale, BufferRef::INPUT, 0, 0, kRows * 16);
  addRef(scale, BufferRef::WEIGHT, 0);
  Launch *copy = entry->add_launches();
  copy->set_kind(Launch::COPY);
  addRef(copy, BufferRef::OUTPUT, 1);
  addRef(copy, BufferRef::WEIGHT, 0);
  float weights[4] = {0.5f, -1.0f, 2.0f, 0.25f};
  return kiln::test::serialize(
      m, {{"weights", kiln::artifact::WEIGHTS, "",
           std::string(reinterpret_cast<char *>(weights), sizeof(weights))},
          {"kernels.x86_64", kiln::artifact::HOST_SHARED_OBJECT,
#if defined(__aarch64__)
           "aarch64",
#else
           "x86_64",
#endif
           code}});
}

kiln_tensor tensor(float *data, std::initializer_list<int64_t> shape) {
  kiln_tensor t{};
  t.dtype = KILN_DTYPE_F32;
  t.rank = int32_t(shape.size());
  size_t n = 1, i = 0;
  for (int64_t d : shape) {
    t.shape[i++] = d;
    n *= size_t(d);
  }
  t.data = data;
  t.size_bytes = n * sizeof(float);
  return t;
}

/// Runs `session` `runs` times on inputs of its own (`seed`); returns the
/// number of wrong outputs.
int runAndCheck(kiln_session *session, int seed, int runs) {
  static const float w[4] = {0.5f, -1.0f, 2.0f, 0.25f};
  int wrong = 0;
  std::vector<float> x(kRows * 4), y(kRows * 4);
  float z[4];
  for (int run = 0; run < runs; ++run) {
    for (int i = 0; i < kRows * 4; ++i)
      x[i] = float(seed * 1000 + run * 7 + i);
    kiln_tensor in = tensor(x.data(), {kRows, 4});
    kiln_tensor out[2] = {tensor(y.data(), {kRows, 4}), tensor(z, {4})};
    if (kiln_status s = kiln_session_run(session, "main", &in, 1, out, 2)) {
      ADD_FAILURE() << kiln_status_message(s);
      kiln_status_free(s);
      return runs;
    }
    for (int i = 0; i < kRows * 4; ++i)
      wrong += y[i] != 2.0f * x[i] + w[i % 4];
    for (int c = 0; c < 4; ++c)
      wrong += z[c] != w[c];
  }
  return wrong;
}

TEST(Concurrency, SessionsOfOneModuleOnManyThreads) {
  std::string bytes = scaleArtifact();
  kiln_module *module = nullptr;
  ASSERT_EQ(kiln_module_load_memory(bytes.data(), bytes.size(), &module),
            nullptr);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      kiln_session *session = nullptr;
      if (kiln_status s = kiln_session_create(module, "cpu", &session)) {
        ADD_FAILURE() << kiln_status_message(s);
        kiln_status_free(s);
        return;
      }
      // Each session has its own pool: 1, 2, 3 and 4 threads.
      kiln_status s = kiln_session_set_threads(session, t + 1);
      EXPECT_EQ(s, nullptr);
      kiln_status_free(s);
      EXPECT_EQ(kiln_session_threads(session), t + 1);
      wrong += runAndCheck(session, t, 40);
      // Queries of the shared module while the others run.
      for (int q = 0; q < 100; ++q) {
        kiln_tensor info;
        const char *name = nullptr;
        kiln_status_free(kiln_module_input_info(module, 0, 0, &info, &name));
        EXPECT_STREQ(name, "x");
      }
      kiln_session_free(session);
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(wrong.load(), 0);
  kiln_module_free(module);
}

TEST(Concurrency, OneSessionUsedByThreadsInTurn) {
  // A session may move between threads; the application serializes its use.
  std::string bytes = scaleArtifact();
  kiln_module *module = nullptr;
  ASSERT_EQ(kiln_module_load_memory(bytes.data(), bytes.size(), &module),
            nullptr);
  kiln_session *session = nullptr;
  ASSERT_EQ(kiln_session_create(module, "cpu", &session), nullptr);
  kiln_status_free(kiln_session_set_threads(session, 2));
  std::mutex turn;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        std::lock_guard<std::mutex> lock(turn);
        wrong += runAndCheck(session, t * 10 + i, 2);
      }
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(wrong.load(), 0);
  kiln_session_free(session);
  kiln_module_free(module);
}

TEST(Concurrency, ModulesLoadedAndFreedOnManyThreads) {
  std::string bytes = scaleArtifact();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        kiln_module *module = nullptr;
        kiln_session *session = nullptr;
        kiln_status s =
            kiln_module_load_memory(bytes.data(), bytes.size(), &module);
        if (!s)
          s = kiln_session_create(module, "cpu", &session);
        failures += s != nullptr;
        kiln_status_free(s);
        if (session)
          failures += runAndCheck(session, i, 1);
        kiln_session_free(session);
        kiln_module_free(module);
      }
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
}

} // namespace
