// What sm_90a kernels need from the runtime, against the mock driver: TMA
// descriptors encoded by the backend (at first use, and again when the
// symbolic dims they depend on change, through cached CUDA graphs) and
// passed to kernels by device address; cluster launches through
// cuLaunchKernelEx; and the kernel's parameters checked against what the
// artifact passes. Also the loader's rules for descriptors, as pure
// functions.
#include "ArtifactTestUtil.h"
#include "MockCudaControl.h"
#include "MockKernelParams.h"
#include "cuda_tensor_maps.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

namespace {

using kiln::artifact::BufferRef;
using kiln::artifact::DimExpr;
using kiln::artifact::Launch;
using kiln::artifact::Manifest;
using kiln::artifact::TensorMap;
using kiln::test::addRef;
using kiln::test::addSpec;
using kiln::test::counter;
using kiln::test::SectionBytes;

/// f32 [rows x 8] over a buffer of 32 * rows bytes, one row per box.
TensorMap rowsMap(BufferRef::Kind kind, uint64_t rows) {
  TensorMap map;
  map.mutable_buffer()->set_kind(kind);
  map.mutable_buffer()->set_size(32 * rows);
  map.set_dtype(kiln::artifact::F32);
  map.add_dims(8);
  map.add_dims(rows);
  map.add_strides(32);
  map.add_box(8);
  map.add_box(1);
  return map;
}

TEST(TensorMaps, TheLoaderRefusesWhatTheDriverWould) {
  EXPECT_EQ(kiln::runtime::tensorMapDefect(rowsMap(BufferRef::WEIGHT, 3), 0),
            "");
  struct Case {
    const char *defect;
    void (*edit)(TensorMap &);
  } cases[] = {
      {"has rank 0", [](TensorMap &m) { m.clear_dims(); }},
      {"of the wrong rank", [](TensorMap &m) { m.add_strides(64); }},
      {"a dtype TMA cannot move",
       [](TensorMap &m) { m.set_dtype(kiln::artifact::BOOL); }},
      {"box dim outside 1..256", [](TensorMap &m) { m.set_box(1, 257); }},
      {"not a multiple of 16 bytes", [](TensorMap &m) { m.set_box(0, 2); }},
      {"wider than its 32-byte swizzle",
       [](TensorMap &m) {
         m.set_box(0, 16);
         m.set_swizzle(TensorMap::SWIZZLE_32B);
       }},
      {"offset that is not a multiple of 16",
       [](TensorMap &m) { m.mutable_buffer()->set_offset(8); }},
      {"missing dim expression",
       [](TensorMap &m) {
         m.add_dim_exprs(0);
         m.add_dim_exprs(7);
       }},
      {"element stride outside 1..8",
       [](TensorMap &m) {
         m.add_element_strides(1);
         m.add_element_strides(9);
       }},
      {"L2 promotion", [](TensorMap &m) { m.set_l2_promotion_bytes(32); }},
  };
  for (const Case &c : cases) {
    TensorMap map = rowsMap(BufferRef::WEIGHT, 3);
    c.edit(map);
    EXPECT_NE(kiln::runtime::tensorMapDefect(map, 2).find(c.defect),
              std::string::npos)
        << c.defect << ": " << kiln::runtime::tensorMapDefect(map, 2);
  }
}

TEST(TensorMaps, EncodingFollowsTheRunsDims) {
  // f32 [n x 8] with n the value of dim expression 1.
  TensorMap map = rowsMap(BufferRef::INPUT, 8);
  map.add_dim_exprs(0);
  map.add_dim_exprs(2);
  ASSERT_TRUE(kiln::runtime::tensorMapIsSymbolic(map));
  EXPECT_EQ(kiln::runtime::describeTensorMap(map), "f32 [?x8] box [1x8]");
  auto enc = kiln::runtime::encodingFor(map, {0, 5}, 5 * 32);
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(enc->rank, 2u);
  EXPECT_EQ(enc->dataType, 7);  // CU_TENSOR_MAP_DATA_TYPE_FLOAT32
  EXPECT_EQ(enc->dims[0], 8u);
  EXPECT_EQ(enc->dims[1], 5u);
  EXPECT_EQ(enc->strides[0], 32u);
  EXPECT_EQ(enc->extentBytes, 5u * 32);
  // More rows than the buffer holds in this run.
  auto beyond = kiln::runtime::encodingFor(map, {0, 5}, 4 * 32);
  ASSERT_FALSE(beyond.ok());
  EXPECT_NE(std::string(beyond.status().message())
                .find("reaches 160 bytes into a buffer of 128"),
            std::string::npos)
      << beyond.status();
  // A symbolic stride that is not a multiple of 16 bytes.
  map.add_stride_exprs(2);
  auto stride = kiln::runtime::encodingFor(map, {0, 40}, 1 << 20);
  ASSERT_FALSE(stride.ok());
  EXPECT_NE(std::string(stride.status().message())
                .find("the stride of dim 1 is 40 bytes"),
            std::string::npos)
      << stride.status();
}

// The mock reads a kernel's parameters as ptxas and the JIT see them (the
// lit tests run it on real cubins); here on PTX as MLIR's NVPTX backend
// writes it.
TEST(MockDriver, ReadsKernelParametersFromPtx) {
  const char *ptx = R"(.version 8.0
.target sm_90a
.visible .entry gemm(
	.param .u64 .ptr .align 1 gemm_param_0,
	.param .u64 .ptr .global .align 16 gemm_param_1,
	.param .u32 gemm_param_2,
	.param .align 64 .b8 gemm_param_3[128]
)
{ ret; }
.visible .entry empty()
{ ret; }
)";
  auto kernels = kiln::mock::readKernelParams(ptx);
  ASSERT_TRUE(kernels);
  EXPECT_EQ((*kernels)["gemm"], (std::vector<size_t>{8, 8, 4, 128}));
  EXPECT_EQ(kernels->count("empty"), 1u);
  EXPECT_TRUE((*kernels)["empty"].empty());
  EXPECT_FALSE(kiln::mock::readKernelParams("\x7f" "ELF fake cubin"));
}

class CudaHopper : public ::testing::Test {
protected:
  void SetUp() override {
    setenv("KILN_CUDA_DRIVER", KILN_MOCK_CUDA_PATH, 1);
    setenv("KILN_MOCK_CUDA_CC", "90", 1);
    unsetenv("KILN_MOCK_CUDA_DRIVER_VERSION");
    unsetenv("KILN_CUDA_GRAPHS");
    kiln::test::resetCounters();
  }
  void TearDown() override {
    if (session)
      kiln_session_free(session);
    if (module)
      kiln_module_free(module);
    unsetenv("KILN_CUDA_DRIVER");
    unsetenv("KILN_MOCK_CUDA_CC");
  }

  /// A manifest with one kernel `symbol` taking `numArgs` parameters, and
  /// its fake sm_90a cubin.
  Manifest manifest(const char *symbol, uint32_t numArgs,
                    std::vector<SectionBytes> &sections) {
    Manifest m;
    m.set_target("cuda:sm_90a");
    auto *kernel = m.add_kernels();
    kernel->set_name(symbol);
    kernel->set_symbol(symbol);
    kernel->set_num_args(numArgs);
    kernel->set_strategy("generic");
    sections = {{"weights", kiln::artifact::WEIGHTS, "", weightBytes}};
    auto *image = kernel->add_images();
    image->set_arch("sm_90a");
    std::string cubin = "\x7f" "ELF fake cubin";
    image->set_cubin_section(sections.size());
    image->set_cubin_size(cubin.size());
    sections.push_back({"cubin", kiln::artifact::CUBIN, "sm_90a", cubin});
    image->set_ptx_section(sections.size());
    sections.push_back({"ptx", kiln::artifact::PTX, "sm_90a", ""});
    return m;
  }
  Launch *kernelLaunch(kiln::artifact::EntryPoint *entry,
                       std::vector<unsigned> grid = {1, 1, 1}) {
    Launch *l = entry->add_launches();
    l->set_kind(Launch::KERNEL);
    for (int d = 0; d < 3; ++d) {
      l->add_grid(grid[d]);
      l->add_block(d == 0 ? 128 : 1);
    }
    return l;
  }

  /// y = w for a weight w of f32 [3 x 8], through tma_copy and a
  /// descriptor of w.
  std::string weightCopy() {
    std::vector<float> w(24);
    std::iota(w.begin(), w.end(), 1.0f);
    weightBytes.assign(reinterpret_cast<const char *>(w.data()), 96);
    std::vector<SectionBytes> sections;
    Manifest m = manifest("tma_copy", 2, sections);
    auto *weight = m.add_weights();
    addSpec(weight->mutable_spec(), "w", {3, 8});
    weight->set_section(0);
    weight->set_size(96);
    auto *entry = m.add_entry_points();
    entry->set_name("main");
    addSpec(entry->add_outputs(), "y", {24});
    Launch *l = kernelLaunch(entry);
    l->set_kernel(0);
    addRef(l, BufferRef::OUTPUT, 0, 0, 96);
    *l->add_tensor_maps() = rowsMap(BufferRef::WEIGHT, 3);
    return kiln::test::serialize(m, sections);
  }

  /// y = x for x of f32 [n x 8], n in 1..8: the descriptor of x follows n.
  std::string symbolicCopy() {
    std::vector<SectionBytes> sections;
    Manifest m = manifest("tma_copy", 2, sections);
    auto *entry = m.add_entry_points();
    entry->set_name("main");
    using kiln::test::addDimExpr;
    uint32_t n = kiln::test::addSymbolicDim(entry, "n", 1, 8);
    uint32_t bytes = addDimExpr(entry, DimExpr::MUL, 0, n,
                                addDimExpr(entry, DimExpr::CONST, 32));
    kiln::test::addSymbolicSpec(entry->add_inputs(), "x", n, {8});
    kiln::test::addSymbolicSpec(entry->add_outputs(), "y", n, {8});
    Launch *l = kernelLaunch(entry);
    l->set_kernel(0);
    addRef(l, BufferRef::OUTPUT, 0, 0, 256);
    l->mutable_args(0)->set_size_expr(bytes + 1);
    TensorMap map = rowsMap(BufferRef::INPUT, 8);
    map.mutable_buffer()->set_size_expr(bytes + 1);
    map.add_dim_exprs(0);
    map.add_dim_exprs(n + 1);
    *l->add_tensor_maps() = map;
    return kiln::test::serialize(m, sections);
  }

  std::string open(const std::string &bytes) {
    return kiln::test::openSession(bytes, "cuda:0", &module, &session);
  }

  /// Runs with x of f32 [rows x 8] (none when rows is 0) into `y`.
  std::string run(int64_t rows, std::vector<float> &x, std::vector<float> &y) {
    kiln_tensor in = {}, out = {};
    in.dtype = out.dtype = KILN_DTYPE_F32;
    in.rank = out.rank = 2;
    in.shape[0] = out.shape[0] = rows;
    in.shape[1] = out.shape[1] = 8;
    in.data = x.data();
    out.data = y.data();
    in.size_bytes = out.size_bytes = 32 * rows;
    if (!rows) {
      out.rank = 1;
      out.shape[0] = static_cast<int64_t>(y.size());
      out.size_bytes = 4 * y.size();
    }
    kiln_status s = kiln_session_run(session, nullptr, &in, rows ? 1 : 0,
                                     &out, 1);
    std::string message = s ? kiln_status_message(s) : "";
    kiln_status_free(s);
    return message;
  }

  std::string weightBytes;
  kiln_module *module = nullptr;
  kiln_session *session = nullptr;
};

TEST_F(CudaHopper, TmaDescriptorOfAWeightIsEncodedOnceAndPassedByAddress) {
  ASSERT_EQ(open(weightCopy()), "");
  std::vector<float> none, y(24, 0.0f);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(run(0, none, y), "");
    for (int i = 0; i < 24; ++i)
      ASSERT_EQ(y[i], float(i + 1)) << i;
  }
  EXPECT_EQ(counter("tensor_maps_encoded"), 1);
  EXPECT_EQ(counter("last_tensor_map_elements"), 24);
  EXPECT_EQ(counter("invalid_tensor_maps"), 0);
}

TEST_F(CudaHopper, TmaDescriptorsFollowTheSymbolicDimsThroughCachedGraphs) {
  ASSERT_EQ(open(symbolicCopy()), "");
  // 2 rows, 5 rows, then 2 again: the graph of n = 2 is replayed, and must
  // read the descriptor of 2 rows, uploaded again before it.
  long encoded = 0;
  for (int64_t n : {2, 5, 2, 2}) {
    std::vector<float> x(8 * n), y(8 * n, 0.0f);
    std::iota(x.begin(), x.end(), float(10 * n));
    ASSERT_EQ(run(n, x, y), "") << n;
    EXPECT_EQ(y, x) << n;
    EXPECT_EQ(counter("last_tensor_map_elements"), 8 * n);
    // Encoded when n changes, not when it repeats.
    encoded += n == 2 && encoded == 3 ? 0 : 1;
    EXPECT_EQ(counter("tensor_maps_encoded"), encoded) << n;
  }
  EXPECT_EQ(counter("captures"), 2);
}

TEST_F(CudaHopper, TmaAndClustersNeedSm90) {
  setenv("KILN_MOCK_CUDA_CC", "80", 1);
  std::string error = open(weightCopy());
  EXPECT_NE(error.find("kernel 'tma_copy' loads with TMA descriptors, which "
                       "sm_80 (driver for CUDA 13.0) lacks (sm_90 and newer); "
                       "recompile with --target cuda:sm_80"),
            std::string::npos)
      << error;
}

TEST_F(CudaHopper, TheLoaderChecksADescriptorAgainstItsBuffer) {
  std::string bytes = weightCopy();
  Manifest m = kiln::test::manifestOf(bytes);
  // 4 rows of a 3-row weight.
  m.mutable_entry_points(0)->mutable_launches(0)->mutable_tensor_maps(0)->set_dims(1, 4);
  std::string error = open(kiln::test::replaceManifest(bytes, m));
  EXPECT_NE(error.find("passes kernel 'tma_copy' a TMA descriptor that is "
                       "invalid: TMA descriptor f32 [4x8] box [1x8] reaches "
                       "128 bytes into a buffer of 96"),
            std::string::npos)
      << error;
}

TEST_F(CudaHopper, ClusterLaunchesGoThroughCuLaunchKernelEx) {
  std::vector<SectionBytes> sections;
  Manifest m = manifest("add_one", 2, sections);
  for (unsigned c : {2, 1, 1})
    m.mutable_kernels(0)->add_cluster(c);
  auto *entry = m.add_entry_points();
  entry->set_name("main");
  addSpec(entry->add_inputs(), "x", {4});
  addSpec(entry->add_outputs(), "y", {4});
  Launch *l = kernelLaunch(entry, {4, 1, 1});
  l->set_kernel(0);
  addRef(l, BufferRef::INPUT, 0);
  addRef(l, BufferRef::OUTPUT, 0);
  std::string bytes = kiln::test::serialize(m, sections);
  ASSERT_EQ(open(bytes), "");
  float x[4] = {1, 2, 3, 4}, y[4] = {};
  kiln_tensor in = kiln::test::tensor4(x), out = kiln::test::tensor4(y);
  kiln_status s = kiln_session_run(session, nullptr, &in, 1, &out, 1);
  ASSERT_EQ(s, nullptr) << kiln_status_message(s);
  EXPECT_EQ(y[3], 5.0f);
  EXPECT_EQ(counter("cluster_launches"), 1);
  EXPECT_EQ(counter("last_cluster_blocks"), 2);
  EXPECT_EQ(counter("invalid_clusters"), 0);
  kiln_session_free(session);
  session = nullptr;

  // On an sm_80 device the session is refused with what to do.
  setenv("KILN_MOCK_CUDA_CC", "80", 1);
  kiln_status refused = kiln_session_create(module, "cuda:0", &session);
  ASSERT_NE(refused, nullptr);
  EXPECT_NE(std::string(kiln_status_message(refused))
                .find("kernel 'add_one' runs in thread-block clusters, which "
                      "sm_80"),
            std::string::npos)
      << kiln_status_message(refused);
  kiln_status_free(refused);
  kiln_module_free(module);
  module = nullptr;

  // A grid of 3 blocks cannot be cut into clusters of 2.
  m.mutable_entry_points(0)->mutable_launches(0)->set_grid(0, 3);
  std::string error = open(kiln::test::serialize(m, sections));
  EXPECT_NE(error.find("launches kernel 'add_one' on a grid that is not a "
                       "multiple of its cluster"),
            std::string::npos)
      << error;
}

TEST_F(CudaHopper, KernelParametersAreCheckedAgainstTheImage) {
  // add_one takes two pointers; the artifact passes three buffers.
  std::vector<SectionBytes> sections;
  Manifest m = manifest("add_one", 3, sections);
  auto *entry = m.add_entry_points();
  entry->set_name("main");
  addSpec(entry->add_inputs(), "x", {4});
  addSpec(entry->add_outputs(), "y", {4});
  Launch *l = kernelLaunch(entry);
  l->set_kernel(0);
  addRef(l, BufferRef::INPUT, 0);
  addRef(l, BufferRef::OUTPUT, 0);
  addRef(l, BufferRef::OUTPUT, 0);
  std::string bytes = kiln::test::serialize(m, sections);
  std::string error = open(bytes);
  EXPECT_NE(error.find("kernel 'add_one' takes 2 parameters and the artifact "
                       "passes 3: the artifact does not match its kernels; "
                       "recompile it"),
            std::string::npos)
      << error;
  EXPECT_EQ(counter("cubin_loads"), 1);
}

}  // namespace
