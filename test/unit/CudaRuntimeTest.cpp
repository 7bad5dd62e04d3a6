// The CUDA backend against the mock driver (MockCudaDriver.cpp): image
// selection per architecture, the error paths (no binary for the device,
// out of device memory), the stream, CUDA graph capture and replay, the
// asynchronous run, and per-launch event timing; and what the mock's
// strictness (a current context per thread, launch limits, bounds-checked
// copies, pageable uploads that land late, sticky errors) catches.
#include "ArtifactTestUtil.h"
#include "MockCudaControl.h"
#include "cuda_driver.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <dlfcn.h>
#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace {

using kiln::artifact::BufferRef;
using kiln::artifact::Launch;
using kiln::artifact::Manifest;
using kiln::test::addRef;
using kiln::test::counter;
using kiln::test::failNext;
using kiln::test::mock;
using kiln::test::resetCounters;
using kiln::test::addSpec;
using kiln::test::SectionBytes;
using kiln::test::tensor4;
using kiln::test::vectorF32;

/// `bytes` with its manifest changed by `edit`.
std::string editManifest(std::string bytes,
                         const std::function<void(Manifest &)> &edit) {
  Manifest parsed = kiln::test::manifestOf(bytes);
  edit(parsed);
  return kiln::test::replaceManifest(std::move(bytes), parsed);
}

class CudaRuntime : public ::testing::Test {
protected:
  void SetUp() override {
    setenv("KILN_CUDA_DRIVER", KILN_MOCK_CUDA_PATH, 1);
    unsetenv("KILN_MOCK_CUDA_CC");
    unsetenv("KILN_MOCK_CUDA_DRIVER_VERSION");
    unsetenv("KILN_MOCK_CUDA_MEMORY_BYTES");
    unsetenv("KILN_CUDA_GRAPHS");
    resetCounters();
  }
  void TearDown() override {
    if (session)
      kiln_session_free(session);
    if (module)
      kiln_module_free(module);
    unsetenv("KILN_CUDA_DRIVER");
  }

  /// y = x + 1 through the arena: a copy of x into the arena, then the
  /// add_one kernel from the arena into y. `archs` get an image each, with
  /// a cubin and/or PTX.
  std::string artifact(std::vector<std::string> archs, bool cubins = true,
                       bool ptx = true, uint32_t dynamicShared = 0) {
    Manifest m;
    if (weight) {
      auto *w = m.add_weights();
      addSpec(w->mutable_spec(), "w", {static_cast<int64_t>(weight->size())});
      w->set_section(0);
      w->set_size(4 * weight->size());
    }
    m.set_target("cuda:sm_80");
    m.set_arena_bytes(64);
    auto *kernel = m.add_kernels();
    kernel->set_name("add_one");
    kernel->set_symbol("add_one");
    kernel->set_num_args(2);
    kernel->set_strategy("elementwise");
    kernel->set_dynamic_shared_bytes(dynamicShared);
    std::vector<SectionBytes> sections = {
        {"weights", kiln::artifact::WEIGHTS, "",
         weight ? std::string(reinterpret_cast<const char *>(weight->data()),
                              4 * weight->size())
                : ""}};
    for (const std::string &arch : archs) {
      auto *image = kernel->add_images();
      image->set_arch(arch);
      std::string cubin = std::string("\x7f" "ELF fake cubin for ") + arch;
      std::string ptxText = "// fake PTX for " + arch + "\n" + ptxBody;
      image->set_cubin_section(sections.size());
      image->set_cubin_size(cubins ? cubin.size() : 0);
      sections.push_back({"cubin." + arch, kiln::artifact::CUBIN, arch, cubin});
      image->set_ptx_section(sections.size());
      image->set_ptx_size(ptx ? ptxText.size() : 0);
      sections.push_back({"ptx." + arch, kiln::artifact::PTX, arch, ptxText});
    }
    auto *entry = m.add_entry_points();
    entry->set_name("main");
    addSpec(entry->add_inputs(), "x", {4});
    addSpec(entry->add_outputs(), "y", {4});
    Launch *copy = entry->add_launches();
    copy->set_kind(Launch::COPY);
    addRef(copy, BufferRef::ARENA, 0, 0);
    if (weight && weight->size() == 4)
      addRef(copy, BufferRef::WEIGHT, 0);
    else
      addRef(copy, BufferRef::INPUT, 0);
    Launch *add = entry->add_launches();
    add->set_kind(Launch::KERNEL);
    add->set_kernel(0);
    for (int d = 0; d < 3; ++d) {
      add->add_grid(1);
      add->add_block(d == 0 ? 32 : 1);
    }
    addRef(add, BufferRef::ARENA, 0, 0);
    addRef(add, BufferRef::OUTPUT, 0);
    return kiln::test::serialize(m, sections);
  }

  /// Loads `bytes` and creates a cuda:0 session; returns the error or "".
  std::string open(const std::string &bytes) {
    return kiln::test::openSession(bytes, "cuda:0", &module, &session);
  }

  std::string run(float x0, float *y, bool async = false) {
    float x[4] = {x0, x0 + 1, x0 + 2, x0 + 3};
    kiln_tensor in = tensor4(x), out = tensor4(y);
    kiln_status s =
        async ? kiln_session_run_async(session, nullptr, &in, 1, &out, 1)
              : kiln_session_run(session, nullptr, &in, 1, &out, 1);
    if (!s && async)
      s = kiln_session_synchronize(session);
    std::string message = s ? kiln_status_message(s) : "";
    kiln_status_free(s);
    return message;
  }

  /// Frees the session and the module.
  void close() {
    kiln_session_free(session);
    session = nullptr;
    kiln_module_free(module);
    module = nullptr;
  }

  kiln_module *module = nullptr;
  kiln_session *session = nullptr;
  // A weight for artifact(): with 4 floats the copy into the arena reads
  // it instead of x.
  std::optional<std::vector<float>> weight;
  std::string ptxBody;  // appended to artifact()'s PTX
};

TEST_F(CudaRuntime, LoadsTheCubinForTheDeviceArchitecture) {
  setenv("KILN_MOCK_CUDA_CC", "90", 1);
  ASSERT_EQ(open(artifact({"sm_80", "sm_90a"})), "");
  EXPECT_EQ(counter("cubin_loads"), 1);
  EXPECT_EQ(counter("ptx_loads"), 0);
  EXPECT_EQ(counter("streams"), 1);
  float y[4] = {};
  ASSERT_EQ(run(1.0f, y), "");
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_EQ(y[3], 5.0f);
}

TEST_F(CudaRuntime, DynamicSharedMemoryAbove48KiBIsOptedIntoAtLoad) {
  // 96 KiB per block: the function is opted in once, and every launch
  // asks for it (the strict mock refuses more than 48 KiB otherwise).
  setenv("KILN_MOCK_CUDA_CC", "90", 1);
  ASSERT_EQ(open(artifact({"sm_90a"}, true, true, 96 * 1024)), "");
  EXPECT_EQ(counter("shared_opt_ins"), 1);
  float y[4] = {};
  ASSERT_EQ(run(1.0f, y), "");
  EXPECT_EQ(counter("last_shared_bytes"), 96 * 1024);
  EXPECT_EQ(y[0], 2.0f);
}

TEST_F(CudaRuntime, MoreDynamicSharedMemoryThanTheDeviceHasIsAClearError) {
  // 200 KiB fits a 9.0 block, not an 8.6 one (99 KiB).
  setenv("KILN_MOCK_CUDA_CC", "86", 1);
  std::string error = open(artifact({"sm_80"}, true, true, 200 * 1024));
  EXPECT_NE(error.find("kernel 'add_one' needs 204800 bytes of dynamic shared "
                       "memory per block; sm_86 (driver for CUDA 13.0) allows "
                       "101376; recompile for this architecture (kiln compile "
                       "--target cuda:sm_86)"),
            std::string::npos)
      << error;
  EXPECT_EQ(session, nullptr);
}

TEST_F(CudaRuntime, DeviceAndDriverMatrixThroughTheMockDriver) {
  // The whole backend (selection, loading, refusal fallback) on each device
  // and driver the mock can be: what it loads for an sm_80 + sm_90a
  // artifact, as CudaImages.DeviceAndDriverMatrix predicts.
  struct Row {
    const char *cc, *driver124, *driver130;
  } rows[] = {{"80", "PTX", "cubin"},  {"86", "PTX", "cubin"},
              {"89", "PTX", "cubin"},  {"90", "PTX", "cubin"},
              {"100", "PTX", "PTX"},   {"120", "PTX", "PTX"}};
  for (const Row &row : rows)
    for (auto [driver, want] :
         {std::pair{"12040", row.driver124}, std::pair{"13000", row.driver130}}) {
      TearDown();
      session = nullptr;
      module = nullptr;
      SetUp();
      setenv("KILN_MOCK_CUDA_CC", row.cc, 1);
      setenv("KILN_MOCK_CUDA_DRIVER_VERSION", driver, 1);
      ASSERT_EQ(open(artifact({"sm_80", "sm_90a"})), "")
          << "cc " << row.cc << ", driver " << driver;
      std::string loaded = counter("cubin_loads") == 1 ? "cubin"
                           : counter("ptx_loads") == 1 ? "PTX"
                                                       : "?";
      EXPECT_EQ(loaded, want) << "cc " << row.cc << ", driver " << driver;
      float y[4] = {};
      ASSERT_EQ(run(1.0f, y), "");
      EXPECT_EQ(y[0], 2.0f);
    }
}

TEST_F(CudaRuntime, RunsTheCubinOfAnOlderMinorOfTheSameMajor) {
  // An sm_80 cubin runs on sm_89 (binary compatibility); the sm_90a one
  // does not.
  setenv("KILN_MOCK_CUDA_CC", "89", 1);
  ASSERT_EQ(open(artifact({"sm_80", "sm_90a"})), "");
  EXPECT_EQ(counter("cubin_loads"), 1);
  EXPECT_EQ(counter("ptx_loads"), 0);
}

TEST_F(CudaRuntime, JitsThePtxOnANewerMajor) {
  // sm_100 runs no sm_80 or sm_90a cubin: the generic sm_80 PTX.
  setenv("KILN_MOCK_CUDA_CC", "100", 1);
  ASSERT_EQ(open(artifact({"sm_80", "sm_90a"})), "");
  EXPECT_EQ(counter("cubin_loads"), 0);
  EXPECT_EQ(counter("ptx_loads"), 1);
}

TEST_F(CudaRuntime, ACubinAnOlderDriverRefusesFallsBackToThePtx) {
  // A CUDA 12.4 driver refuses the (CUDA 13) cubin; the PTX is JIT-compiled.
  setenv("KILN_MOCK_CUDA_CC", "80", 1);
  setenv("KILN_MOCK_CUDA_DRIVER_VERSION", "12040", 1);
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  EXPECT_EQ(counter("cubin_refusals"), 1);
  EXPECT_EQ(counter("ptx_loads"), 1);
  float y[4] = {};
  ASSERT_EQ(run(1.0f, y), "");
  EXPECT_EQ(y[0], 2.0f);
}

TEST_F(CudaRuntime, ADriverThatRefusesEveryImageIsAClearError) {
  setenv("KILN_MOCK_CUDA_CC", "80", 1);
  setenv("KILN_MOCK_CUDA_DRIVER_VERSION", "12040", 1);
  std::string error = open(artifact({"sm_80"}, /*cubins=*/true, /*ptx=*/false));
  EXPECT_NE(error.find("the driver refused every image of kernel 'add_one' "
                       "for sm_80 (driver for CUDA 12.4) (cuModuleLoadDataEx "
                       "failed: the provided PTX was compiled with an "
                       "unsupported toolchain. (CUDA_ERROR_UNSUPPORTED_PTX_"
                       "VERSION, 222); kernel 'add_one' (cubin sm_80)); "
                       "install a newer driver"),
            std::string::npos)
      << error;
  EXPECT_EQ(session, nullptr);
}

TEST_F(CudaRuntime, WrongArchitectureWithoutPtxIsAClearError) {
  setenv("KILN_MOCK_CUDA_CC", "80", 1);
  std::string error = open(artifact({"sm_90a"}, /*cubins=*/true, /*ptx=*/false));
  EXPECT_NE(error.find("kernel 'add_one' has no image sm_80 (driver for CUDA "
                       "13.0) can load (the artifact has cubin sm_90a); "
                       "recompile for it (kiln compile --target cuda:sm_80)"),
            std::string::npos)
      << error;
  EXPECT_EQ(session, nullptr);
}

TEST_F(CudaRuntime, PtxForANewerArchitectureIsNotUsed) {
  setenv("KILN_MOCK_CUDA_CC", "80", 1);
  std::string error = open(artifact({"sm_90a"}, /*cubins=*/false));
  EXPECT_NE(error.find("has no image sm_80"), std::string::npos) << error;
}

TEST_F(CudaRuntime, OutOfDeviceMemoryIsAClearError) {
  // The arena (64 bytes) does not fit.
  setenv("KILN_MOCK_CUDA_MEMORY_BYTES", "32", 1);
  std::string error = open(artifact({"sm_80"}));
  EXPECT_NE(error.find("cuMemAlloc (arena) failed: out of memory"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("needs more device memory than is free on cuda:0"),
            std::string::npos)
      << error;
}

TEST_F(CudaRuntime, OutOfMemoryOnTheFirstRunLeavesTheSessionUsable) {
  // The arena fits; the entry point's 16-byte input and output buffers,
  // allocated on its first run, do not.
  setenv("KILN_MOCK_CUDA_MEMORY_BYTES", "80", 1);
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  float y[4] = {};
  std::string error = run(1.0f, y);
  EXPECT_NE(error.find("cuMemAlloc (outputs) failed: out of memory"),
            std::string::npos)
      << error;
  setenv("KILN_MOCK_CUDA_MEMORY_BYTES", "1000", 1);
  EXPECT_EQ(run(1.0f, y), "");
  EXPECT_EQ(y[0], 2.0f);
}

TEST_F(CudaRuntime, CapturesOneGraphPerEntryPointAndReplaysIt) {
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  for (float x0 : {1.0f, 10.0f, 100.0f}) {
    float y[4] = {};
    ASSERT_EQ(run(x0, y), "");
    EXPECT_EQ(y[0], x0 + 1) << "run with x0 = " << x0;
    EXPECT_EQ(y[3], x0 + 4);
  }
  EXPECT_EQ(counter("captures"), 1);
  EXPECT_EQ(counter("graph_launches"), 3);
  EXPECT_EQ(counter("kernels_run"), 3);
}

TEST_F(CudaRuntime, GraphsCanBeTurnedOff) {
  setenv("KILN_CUDA_GRAPHS", "0", 1);
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  float y[4] = {};
  ASSERT_EQ(run(1.0f, y), "");
  ASSERT_EQ(run(2.0f, y), "");
  EXPECT_EQ(y[0], 3.0f);
  EXPECT_EQ(counter("captures"), 0);
  EXPECT_EQ(counter("graph_launches"), 0);
  EXPECT_EQ(counter("kernels_run"), 2);
}

TEST_F(CudaRuntime, AsynchronousRunThenSynchronize) {
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  float y[4] = {};
  ASSERT_EQ(run(7.0f, y, /*async=*/true), "");
  EXPECT_EQ(y[0], 8.0f);
  EXPECT_EQ(y[3], 11.0f);
}

TEST_F(CudaRuntime, ProfileTimesEveryLaunchWithEvents) {
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  ASSERT_EQ(kiln_module_launch_count(module, 0), 2u);
  EXPECT_STREQ(kiln_module_launch_kernel(module, 0, 0), "(copy)");
  EXPECT_STREQ(kiln_module_launch_kernel(module, 0, 1), "add_one");
  EXPECT_EQ(kiln_module_launch_kernel(module, 0, 2), nullptr);
  float x[4] = {1, 2, 3, 4}, y[4] = {};
  kiln_tensor in = tensor4(x), out = tensor4(y);
  double ms[4] = {-1, -1, -1, -1};
  size_t count = 0;
  kiln_status s = kiln_session_profile(session, nullptr, &in, 1, &out, 1, 5,
                                       ms, 4, &count);
  ASSERT_EQ(s, nullptr) << kiln_status_message(s);
  ASSERT_EQ(count, 2u);
  EXPECT_EQ(ms[0], 0.0);   // the copy: the mock's clock advances on kernels
  EXPECT_EQ(ms[1], 0.25);  // per run, averaged over 5
  EXPECT_EQ(y[3], 5.0f);
  EXPECT_EQ(counter("kernels_run"), 5);
}

TEST_F(CudaRuntime, ProfileOnTheCpuTimesEveryLaunch) {
  // The same API on a CPU session (no kernels: a copy-only artifact).
  Manifest m;
  m.set_target("cpu");
  m.set_arena_bytes(0);
  auto *entry = m.add_entry_points();
  entry->set_name("main");
  addSpec(entry->add_inputs(), "x", {4});
  addSpec(entry->add_outputs(), "y", {4});
  Launch *copy = entry->add_launches();
  copy->set_kind(Launch::COPY);
  addRef(copy, BufferRef::OUTPUT, 0);
  addRef(copy, BufferRef::INPUT, 0);
  std::string bytes = kiln::test::serialize(m, std::string());
  ASSERT_EQ(kiln_module_load_memory(bytes.data(), bytes.size(), &module),
            nullptr);
  ASSERT_EQ(kiln_session_create(module, "cpu", &session), nullptr);
  float x[4] = {1, 2, 3, 4}, y[4] = {};
  kiln_tensor in = tensor4(x), out = tensor4(y);
  double ms[1] = {-1};
  size_t count = 0;
  ASSERT_EQ(kiln_session_profile(session, nullptr, &in, 1, &out, 1, 3, ms, 1,
                                 &count),
            nullptr);
  EXPECT_EQ(count, 1u);
  EXPECT_GE(ms[0], 0.0);
  EXPECT_EQ(y[2], 3.0f);
  ASSERT_EQ(kiln_session_run_async(session, nullptr, &in, 1, &out, 1), nullptr);
  EXPECT_EQ(kiln_session_synchronize(session), nullptr);
}

TEST_F(CudaRuntime, GpuLaunchWithoutAGridIsRejectedAtLoad) {
  // Drop the grid and block of the kernel launch.
  std::string bytes = editManifest(artifact({"sm_80"}), [](Manifest &m) {
    Launch *add = m.mutable_entry_points(0)->mutable_launches(1);
    add->clear_grid();
    add->clear_block();
  });
  std::string error = open(bytes);
  EXPECT_NE(error.find("has a launch with a malformed grid or block"),
            std::string::npos)
      << error;
}

// Item 2 of "the CUDA runtime ready for real GPUs": what a lenient driver
// let through.

TEST_F(CudaRuntime, WeightsLandBeforeTheFirstKernel) {
  // The mock's synchronous cuMemcpyHtoD returns before the data lands, as
  // a GPU's does from pageable memory; the kernel's stream must not see
  // the weights before they are there.
  weight = std::vector<float>{10, 20, 30, 40};
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  float y[4] = {};
  ASSERT_EQ(run(1.0f, y), "");
  EXPECT_EQ(y[0], 11.0f);
  EXPECT_EQ(y[3], 41.0f);
}

TEST_F(CudaRuntime, InputCopiesAreBoundedByTheSpecNotTheCaller) {
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  // The caller's buffer is larger than the 4-float input: only the spec's
  // 16 bytes go to the 16-byte device buffer.
  float x[16] = {1, 2, 3, 4}, y[4] = {};
  kiln_tensor in = tensor4(x), out = tensor4(y);
  in.size_bytes = sizeof(x);
  kiln_status s = kiln_session_run(session, nullptr, &in, 1, &out, 1);
  ASSERT_EQ(s, nullptr) << kiln_status_message(s);
  EXPECT_EQ(y[3], 5.0f);
  EXPECT_EQ(counter("out_of_bounds_copies"), 0);
}

TEST_F(CudaRuntime, ZeroSizeWeightsAreNotAllocated) {
  weight = std::vector<float>{};
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  float y[4] = {};
  ASSERT_EQ(run(1.0f, y), "");
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_EQ(counter("zero_size_calls"), 0);
}

// Static grids are checked when the session is created; symbolic ones
// (SymbolicDimsAreKernelArgumentsAndGrids) before every launch.
TEST_F(CudaRuntime, LaunchLimitsAreCheckedNamingTheKernelGridAndBlock) {
  struct Case {
    std::vector<uint32_t> grid, block;
    const char *error;
  } cases[] = {
      {{1, 1, 70000}, {32, 1, 1},
       "kernel 'add_one' (launch #1) grid (1, 1, 70000) block (32, 1, 1): "
       "grid z exceeds the device limit of 65535 blocks"},
      {{1, 1, 1}, {2048, 1, 1},
       "kernel 'add_one' (launch #1) grid (1, 1, 1) block (2048, 1, 1): "
       "block x must be 1..1024"},
      {{1, 1, 1}, {32, 1, 128}, "block z must be 1..64"},
      {{1, 1, 1}, {64, 32, 1}, "a block of more than 1024 threads"},
  };
  for (const Case &c : cases) {
    std::string bytes = editManifest(artifact({"sm_80"}), [&](Manifest &m) {
      Launch *add = m.mutable_entry_points(0)->mutable_launches(1);
      for (int d = 0; d < 3; ++d) {
        add->set_grid(d, c.grid[d]);
        add->set_block(d, c.block[d]);
      }
    });
    std::string error = open(bytes);
    EXPECT_NE(error.find(c.error), std::string::npos) << error;
    EXPECT_NE(error.find("entry point 'main': "), std::string::npos) << error;
    EXPECT_EQ(counter("invalid_launches"), 0) << c.error;
    close();
  }
}

TEST_F(CudaRuntime, DriverErrorsNameTheErrorTheKernelGridAndBlock) {
  setenv("KILN_CUDA_GRAPHS", "0", 1);
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  failNext("cuLaunchKernel", 1);
  float y[4] = {};
  std::string error = run(1.0f, y);
  EXPECT_NE(error.find("cuLaunchKernel failed: invalid argument "
                       "(CUDA_ERROR_INVALID_VALUE, 1); kernel 'add_one' "
                       "(launch #1) grid (1, 1, 1) block (32, 1, 1)"),
            std::string::npos)
      << error;
  // Not sticky: the next run works.
  EXPECT_EQ(run(1.0f, y), "");
}

TEST_F(CudaRuntime, AnIllegalAddressIsStickyAndSaysSo) {
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  failNext("cuStreamSynchronize", 700);
  float y[4] = {};
  std::string error = run(1.0f, y);
  EXPECT_NE(error.find("an illegal memory access was encountered "
                       "(CUDA_ERROR_ILLEGAL_ADDRESS, 700); a kernel faulted "
                       "and the CUDA context of cuda:0 is lost"),
            std::string::npos)
      << error;
  error = run(1.0f, y);
  EXPECT_NE(error.find("CUDA_ERROR_ILLEGAL_ADDRESS"), std::string::npos)
      << error;
}

TEST_F(CudaRuntime, PtxJitErrorsCarryTheJitLog) {
  setenv("KILN_MOCK_CUDA_CC", "89", 1);
  ptxBody = "mock-invalid-ptx;\n";
  std::string error = open(artifact({"sm_80"}, /*cubins=*/false));
  EXPECT_NE(error.find("cuModuleLoadDataEx failed: a PTX JIT compilation "
                       "failed (CUDA_ERROR_INVALID_PTX, 218); kernel "
                       "'add_one' (PTX sm_80); JIT log: ptxas application "
                       "ptx input, line 1; error   : mock-invalid-ptx"),
            std::string::npos)
      << error;
}

TEST_F(CudaRuntime, TeardownFreesWhatWasCreatedAndNothingElse) {
  for (const char *graphs : {"1", "0"}) {
    setenv("KILN_CUDA_GRAPHS", graphs, 1);
    resetCounters();
    ASSERT_EQ(open(artifact({"sm_80"})), "");
    float y[4] = {};
    ASSERT_EQ(run(1.0f, y), "");
    close();
    EXPECT_EQ(counter("invalid_handles"), 0) << "graphs " << graphs;
    EXPECT_EQ(counter("live_allocations"), 0) << "graphs " << graphs;
  }
  // A capture that fails to instantiate leaves nothing to destroy.
  setenv("KILN_CUDA_GRAPHS", "1", 1);
  resetCounters();
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  failNext("cuGraphInstantiate", 2);
  float y[4] = {};
  EXPECT_NE(run(1.0f, y), "");
  close();
  EXPECT_EQ(counter("invalid_handles"), 0);
  EXPECT_EQ(counter("live_allocations"), 0);
}

// The mock itself (item 6): strict where the driver is.

TEST_F(CudaRuntime, MockRefusesCallsWithoutACurrentContext) {
  ASSERT_EQ(open(artifact({"sm_80"})), "");  // loads the mock
  using Alloc = int (*)(unsigned long long *, size_t);
  auto alloc = mock<Alloc>("cuMemAlloc_v2");
  ASSERT_NE(alloc, nullptr);
  int rc = -1;
  std::thread([&] {
    unsigned long long p = 0;
    rc = alloc(&p, 16);
  }).join();
  EXPECT_EQ(rc, 201);  // CUDA_ERROR_INVALID_CONTEXT
}

TEST_F(CudaRuntime, CallsLeaveTheThreadsCurrentContextAsItWas) {
  ASSERT_EQ(open(artifact({"sm_80"})), "");  // loads the mock
  using GetCurrent = int (*)(void **);
  auto getCurrent = mock<GetCurrent>("cuCtxGetCurrent");
  auto push = mock<int (*)(void *)>("cuCtxPushCurrent_v2");
  auto pop = mock<int (*)(void **)>("cuCtxPopCurrent_v2");
  ASSERT_TRUE(getCurrent && push && pop);
  // A thread without a context, and one with another library's.
  int otherLibrarysContext = 0;
  for (void *own : {static_cast<void *>(nullptr),
                    static_cast<void *>(&otherLibrarysContext)}) {
    std::thread([&] {
      if (own) {
        ASSERT_EQ(push(own), 0);
      }
      float y[4] = {};
      EXPECT_EQ(run(1.0f, y), "");
      EXPECT_EQ(y[0], 2.0f);
      EXPECT_EQ(run(2.0f, y, /*async=*/true), "");
      void *current = reinterpret_cast<void *>(1);
      getCurrent(&current);
      EXPECT_EQ(current, own);
      if (own)
        pop(&current);
    }).join();
  }
  // Freed from a thread that never ran it.
  std::thread([&] { close(); }).join();
  EXPECT_EQ(counter("live_allocations"), 0);
  EXPECT_EQ(counter("invalid_context"), 0);
}

TEST_F(CudaRuntime, MockDeviceAndDriverVersionAreSetByTheTests) {
  ASSERT_EQ(open(artifact({"sm_80"})), "");
  close();
  resetCounters();
  mock<void (*)(int, int)>("kiln_mock_cuda_set_device")(9, 0);
  mock<void (*)(int)>("kiln_mock_cuda_set_driver_version")(13000);
  int version = 0;
  mock<int (*)(int *)>("cuDriverGetVersion")(&version);
  EXPECT_EQ(version, 13000);
  ASSERT_EQ(open(artifact({"sm_80", "sm_90a"})), "");
  EXPECT_EQ(counter("cubin_loads"), 1);
  EXPECT_EQ(counter("ptx_loads"), 0);
}

} // namespace

namespace {

using kiln::artifact::DimExpr;

/// y[n] = x[n] + 1 with n in 1..8: the add_one_n kernel takes n as an
/// int64 after its buffers and runs a grid of n blocks.
std::string symbolicArtifact(int64_t minN = 1) {
  Manifest m;
  m.set_target("cuda:sm_80");
  m.set_arena_bytes(0);
  auto *kernel = m.add_kernels();
  kernel->set_name("add_one_n");
  kernel->set_symbol("add_one_n");
  kernel->set_num_args(3);
  kernel->set_strategy("generic");
  std::vector<SectionBytes> sections = {
      {"weights", kiln::artifact::WEIGHTS, "", ""}};
  auto *image = kernel->add_images();
  image->set_arch("sm_80");
  std::string cubin = "\x7f" "ELF fake cubin";
  image->set_cubin_section(sections.size());
  image->set_cubin_size(cubin.size());
  sections.push_back({"cubin.sm_80", kiln::artifact::CUBIN, "sm_80", cubin});
  image->set_ptx_section(sections.size());
  sections.push_back({"ptx.sm_80", kiln::artifact::PTX, "sm_80", ""});
  auto *entry = m.add_entry_points();
  entry->set_name("main");
  using kiln::test::addDimExpr;
  uint32_t n = kiln::test::addSymbolicDim(entry, "n", minN, 8);
  uint32_t bytes = addDimExpr(entry, DimExpr::MUL, 0, n,
                              addDimExpr(entry, DimExpr::CONST, 4));
  kiln::test::addSymbolicSpec(entry->add_inputs(), "x", n, {});
  kiln::test::addSymbolicSpec(entry->add_outputs(), "y", n, {});
  Launch *add = entry->add_launches();
  add->set_kind(Launch::KERNEL);
  add->set_kernel(0);
  for (int d = 0; d < 3; ++d) {
    add->add_grid(d == 0 ? 8 : 1);
    add->add_grid_exprs(d == 0 ? n + 1 : 0);
    add->add_block(1);
  }
  addRef(add, BufferRef::INPUT, 0, 0, 32);
  addRef(add, BufferRef::OUTPUT, 0, 0, 32);
  for (int a = 0; a < 2; ++a)
    add->mutable_args(a)->set_size_expr(bytes + 1);
  add->add_scalar_args(n);
  return kiln::test::serialize(m, sections);
}

TEST_F(CudaRuntime, SymbolicDimsAreKernelArgumentsAndGrids) {
  setenv("KILN_MOCK_CUDA_CC", "80", 1);
  ASSERT_EQ(open(symbolicArtifact()), "");
  for (int64_t n : {3, 6, 3}) {
    bool replay = n == 3 && counter("captures") == 2;
    std::vector<float> x(n), y(n, 0.0f);
    for (int64_t i = 0; i < n; ++i)
      x[i] = static_cast<float>(i);
    kiln_tensor in = vectorF32(x.data(), n), out = vectorF32(y.data(), n);
    kiln_status s = kiln_session_run(session, nullptr, &in, 1, &out, 1);
    ASSERT_EQ(s, nullptr) << kiln_status_message(s);
    // Launch arguments are seen when a graph is captured; a replay reuses
    // them.
    if (!replay) {
      EXPECT_EQ(counter("last_size_arg"), n);
      EXPECT_EQ(counter("last_grid_x"), n);
    }
    for (int64_t i = 0; i < n; ++i)
      EXPECT_EQ(y[i], x[i] + 1.0f) << "n = " << n << ", i = " << i;
  }
  // One graph per distinct set of dim values: n = 3 replays its graph.
  EXPECT_EQ(counter("captures"), 2);
}

TEST_F(CudaRuntime, GraphsPerDimValuesAreABoundedCache) {
  // Two graphs at most: cycling through three sizes evicts the least
  // recently used one, and a size still cached is replayed.
  setenv("KILN_CUDA_GRAPH_CACHE", "2", 1);
  ASSERT_EQ(open(symbolicArtifact()), "");
  unsetenv("KILN_CUDA_GRAPH_CACHE");
  auto runWith = [&](int64_t n) {
    std::vector<float> x(n, 1.0f), y(n, 0.0f);
    kiln_tensor in = vectorF32(x.data(), n), out = vectorF32(y.data(), n);
    kiln_status s = kiln_session_run(session, nullptr, &in, 1, &out, 1);
    EXPECT_EQ(s, nullptr) << kiln_status_message(s);
    for (float v : y)
      EXPECT_EQ(v, 2.0f) << "n = " << n;
  };
  for (int64_t n : {3, 5, 3, 6})  // 6 evicts 5, the least recently used
    runWith(n);
  EXPECT_EQ(counter("captures"), 3);
  EXPECT_EQ(counter("graph_exec_destroys"), 1);
  runWith(3);  // still cached
  EXPECT_EQ(counter("captures"), 3);
  runWith(5);  // evicted: captured again, evicting 6
  EXPECT_EQ(counter("captures"), 4);
  EXPECT_EQ(counter("graph_exec_destroys"), 2);
}

} // namespace

namespace {

TEST_F(CudaRuntime, AnEmptyGridIsNotLaunched) {
  ASSERT_EQ(open(symbolicArtifact(/*minN=*/0)), "");
  kiln_tensor in{}, out{};
  float unused = 0;
  for (kiln_tensor *t : {&in, &out}) {
    t->dtype = KILN_DTYPE_F32;
    t->rank = 1;
    t->shape[0] = 0;
    t->data = &unused;
    t->size_bytes = 0;
  }
  for (int run = 0; run < 2; ++run) {  // captured, then replayed
    kiln_status s = kiln_session_run(session, nullptr, &in, 1, &out, 1);
    ASSERT_EQ(s, nullptr) << kiln_status_message(s);
  }
  EXPECT_EQ(counter("kernels_run"), 0);
  EXPECT_EQ(counter("zero_size_calls"), 0);
}

} // namespace

namespace {

TEST_F(CudaRuntime, ASymbolicGridIsCheckedBeforeItsLaunch) {
  // n up to 100000 blocks on grid z, whose limit is 65535.
  std::string bytes = editManifest(symbolicArtifact(), [](Manifest &m) {
    auto *entry = m.mutable_entry_points(0);
    entry->mutable_dims(0)->set_max(100000);
    Launch *add = entry->mutable_launches(0);
    add->set_grid(0, 1);
    add->set_grid(2, 100000);
    add->set_grid_exprs(2, add->grid_exprs(0));
    add->set_grid_exprs(0, 0);
    for (int a = 0; a < 2; ++a)
      add->mutable_args(a)->set_size(400000);
  });
  ASSERT_EQ(open(bytes), "");
  for (int64_t n : {4, 70000}) {
    std::vector<float> x(n), y(n);
    kiln_tensor in = vectorF32(x.data(), n), out = vectorF32(y.data(), n);
    kiln_status s = kiln_session_run(session, nullptr, &in, 1, &out, 1);
    std::string error = s ? kiln_status_message(s) : "";
    kiln_status_free(s);
    if (n == 4) {
      EXPECT_EQ(error, "");
      continue;
    }
    EXPECT_NE(error.find("kernel 'add_one_n' (launch #0) grid (1, 1, 70000) "
                         "block (1, 1, 1): grid z exceeds the device limit "
                         "of 65535 blocks"),
              std::string::npos)
        << error;
  }
  EXPECT_EQ(counter("invalid_launches"), 0);
}

} // namespace
