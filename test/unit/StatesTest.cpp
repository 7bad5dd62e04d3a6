// Session states (a KV cache): zeroed when a session is created, kept from
// run to run, written in place by STRIDED_COPY launches whose offset comes
// from a symbolic dim; on the CPU and through the mock CUDA driver; and the
// loader's checks of malformed states and strided copies.
#include "ArtifactTestUtil.h"
#include "MockCudaControl.h"

#include "kiln/runtime.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <string>

namespace {

using kiln::artifact::BufferRef;
using kiln::artifact::DimExpr;
using kiln::artifact::Launch;
using kiln::artifact::Manifest;
using kiln::test::addDimExpr;
using kiln::test::addRef;
using kiln::test::addSpec;
using kiln::test::counter;

/// Entry "append": x f32[2] (one value per row) and past i8[p, 0]; the
/// state s f32[2, 4] gets x's rows at column p (a strided copy: 2 rows of 4
/// bytes, pitch 16, at 4 * p), then y f32[2, 4] is a copy of s.
Manifest appendManifest(const std::string &target) {
  Manifest m;
  m.set_target(target);
  addSpec(m.add_states(), "s", {2, 4});
  auto *entry = m.add_entry_points();
  entry->set_name("append");
  addSpec(entry->add_inputs(), "x", {2});
  uint32_t p = kiln::test::addSymbolicDim(entry, "past", 0, 3);
  auto *past = entry->add_inputs();
  past->set_name("past");
  past->set_dtype(kiln::artifact::I8);
  past->add_shape(-1);
  past->add_dim_exprs(static_cast<int32_t>(p));
  past->add_shape(0);
  past->add_dim_exprs(-1);
  addSpec(entry->add_outputs(), "y", {2, 4});
  uint32_t offset = addDimExpr(entry, DimExpr::MUL, 0, p,
                               addDimExpr(entry, DimExpr::CONST, 4));
  Launch *write = entry->add_launches();
  write->set_kind(Launch::STRIDED_COPY);
  addRef(write, BufferRef::STATE, 0, 0, 32);
  addRef(write, BufferRef::INPUT, 0, 0, 8);
  write->set_rows(2);
  write->set_row_bytes(4);
  write->set_dst_pitch(16);
  write->set_dst_offset(12);  // at past's upper bound
  write->set_dst_offset_expr(offset + 1);
  Launch *read = entry->add_launches();
  read->set_kind(Launch::COPY);
  addRef(read, BufferRef::OUTPUT, 0, 0, 32);
  addRef(read, BufferRef::STATE, 0, 0, 32);
  return m;
}

class States : public ::testing::TestWithParam<const char *> {
protected:
  void SetUp() override {
    cuda = std::string(GetParam()) == "cuda:0";
    if (cuda) {
      setenv("KILN_CUDA_DRIVER", KILN_MOCK_CUDA_PATH, 1);
      unsetenv("KILN_MOCK_CUDA_CC");
      unsetenv("KILN_CUDA_GRAPHS");
      kiln::test::resetCounters();
    }
  }
  void TearDown() override {
    for (kiln_session *s : sessions)
      kiln_session_free(s);
    if (module)
      kiln_module_free(module);
    if (cuda)
      unsetenv("KILN_CUDA_DRIVER");
  }
  std::string open(const Manifest &m) {
    kiln_session *session = nullptr;
    std::string error = kiln::test::openSession(
        kiln::test::serialize(m, ""), GetParam(), &module, &session);
    if (session)
      sessions.push_back(session);
    return error;
  }
  /// Another session of the same module.
  kiln_session *another() {
    kiln_session *session = nullptr;
    kiln_status s = kiln_session_create(module, GetParam(), &session);
    EXPECT_EQ(s, nullptr) << (s ? kiln_status_message(s) : "");
    kiln_status_free(s);
    if (session)
      sessions.push_back(session);
    return session;
  }
  /// Runs "append" with x = {a, b} at column `past`; y gets the state.
  std::string append(kiln_session *session, float a, float b, int64_t past,
                     float *y) {
    float x[2] = {a, b};
    kiln_tensor in[2] = {};
    in[0] = kiln::test::vectorF32(x, 2);
    in[1].dtype = KILN_DTYPE_I8;
    in[1].rank = 2;
    in[1].shape[0] = past;
    in[1].shape[1] = 0;
    kiln_tensor out{};
    out.dtype = KILN_DTYPE_F32;
    out.rank = 2;
    out.shape[0] = 2;
    out.shape[1] = 4;
    out.data = y;
    out.size_bytes = 32;
    kiln_status s = kiln_session_run(session, "append", in, 2, &out, 1);
    std::string message = s ? kiln_status_message(s) : "";
    kiln_status_free(s);
    return message;
  }
  bool cuda = false;
  kiln_module *module = nullptr;
  std::vector<kiln_session *> sessions;
};

TEST_P(States, StartZeroedAndAreWrittenInPlaceAtTheDimOffset) {
  ASSERT_EQ(open(appendManifest(cuda ? "cuda:sm_80" : "cpu")), "");
  float y[8];
  ASSERT_EQ(append(sessions[0], 1, 2, 0, y), "");
  EXPECT_EQ(std::vector<float>(y, y + 8),
            (std::vector<float>{1, 0, 0, 0, 2, 0, 0, 0}));
  ASSERT_EQ(append(sessions[0], 3, 4, 1, y), "");
  ASSERT_EQ(append(sessions[0], 5, 6, 3, y), "");
  EXPECT_EQ(std::vector<float>(y, y + 8),
            (std::vector<float>{1, 3, 0, 5, 2, 4, 0, 6}));
  // A position written again is overwritten; the others stay.
  ASSERT_EQ(append(sessions[0], 7, 8, 0, y), "");
  EXPECT_EQ(std::vector<float>(y, y + 8),
            (std::vector<float>{7, 3, 0, 5, 8, 4, 0, 6}));
  if (cuda) {
    // The offset moves from run to run: no graph is captured for it, and
    // each write is one 2D copy.
    EXPECT_EQ(counter("captures"), 0);
    EXPECT_EQ(counter("memcpy2d"), 4);
  }
}

TEST_P(States, EachSessionHasItsOwn) {
  ASSERT_EQ(open(appendManifest(cuda ? "cuda:sm_80" : "cpu")), "");
  kiln_session *second = another();
  ASSERT_NE(second, nullptr);
  float y[8];
  ASSERT_EQ(append(sessions[0], 1, 2, 2, y), "");
  ASSERT_EQ(append(second, 3, 4, 1, y), "");
  EXPECT_EQ(std::vector<float>(y, y + 8),
            (std::vector<float>{0, 3, 0, 0, 0, 4, 0, 0}));
}

TEST_P(States, AnOffsetPastTheBoundsIsRefusedBeforeAnyCopy) {
  ASSERT_EQ(open(appendManifest(cuda ? "cuda:sm_80" : "cpu")), "");
  float y[8];
  std::string error = append(sessions[0], 1, 2, 4, y);
  EXPECT_NE(error.find("'past' is 4, outside the bounds 0..3"),
            std::string::npos)
      << error;
}

INSTANTIATE_TEST_SUITE_P(Devices, States, ::testing::Values("cpu", "cuda:0"),
                         [](const auto &info) {
                           return std::string(info.param) == "cpu" ? "Cpu"
                                                                   : "Cuda";
                         });

/// The loader's error for `m` changed by `edit`.
std::string loadError(const std::function<void(Manifest &)> &edit) {
  Manifest m = appendManifest("cpu");
  edit(m);
  std::string bytes = kiln::test::serialize(m, "");
  kiln_module *module = nullptr;
  kiln_status s = kiln_module_load_memory(bytes.data(), bytes.size(), &module);
  std::string message = s ? kiln_status_message(s) : "";
  kiln_status_free(s);
  kiln_module_free(module);
  return message;
}

TEST(StatesLoader, MalformedStatesAndStridedCopiesAreRefused) {
  EXPECT_EQ(loadError([](Manifest &) {}), "");
  struct Case {
    const char *what, *message;
    std::function<void(Manifest &)> edit;
  };
  auto write = [](Manifest &m) {
    return m.mutable_entry_points(0)->mutable_launches(0);
  };
  std::vector<Case> cases = {
      {"a missing state", "outside its input, output, weight or arena",
       [](Manifest &m) { m.mutable_states()->Clear(); }},
      {"a symbolic state", "negative dim",
       [](Manifest &m) { m.mutable_states(0)->set_shape(0, -1); }},
      {"rows past the end", "malformed strided copy",
       [&](Manifest &m) { write(m)->set_rows(3); }},
      {"an offset past the end", "malformed strided copy",
       [&](Manifest &m) { write(m)->set_dst_offset(16); }},
      {"rows longer than the pitch", "malformed strided copy",
       [&](Manifest &m) { write(m)->set_row_bytes(20); }},
      {"a missing expression", "malformed strided copy",
       [&](Manifest &m) { write(m)->set_dst_offset_expr(99); }},
      {"a write into an input", "malformed strided copy",
       [&](Manifest &m) {
         write(m)->mutable_args(0)->set_kind(BufferRef::INPUT);
       }},
      {"a write into the arena", "malformed strided copy",
       [&](Manifest &m) {
         write(m)->mutable_args(0)->set_kind(BufferRef::ARENA);
       }},
      {"a strided copy with a kernel's scalars", "malformed strided copy",
       [&](Manifest &m) { write(m)->add_scalar_args(0); }},
      {"a copy with a kernel index", "malformed copy",
       [&](Manifest &m) {
         m.mutable_entry_points(0)->mutable_launches(1)->set_kernel(7);
       }},
      {"one argument", "malformed strided copy",
       [&](Manifest &m) { write(m)->mutable_args()->RemoveLast(); }},
  };
  for (const Case &c : cases) {
    std::string error = loadError(c.edit);
    EXPECT_NE(error.find(c.message), std::string::npos)
        << c.what << ": " << error;
  }
}

}  // namespace
