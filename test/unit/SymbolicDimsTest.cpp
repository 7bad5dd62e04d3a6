// Symbolic dims in the runtime: the dim program of an entry point is checked
// when the artifact loads, bound from the inputs' shapes on every run, and
// sizes the buffers and copies of that run. Hand-built artifacts.
#include "ArtifactTestUtil.h"
#include "dims.h"
#include "kiln/runtime.h"
#include "manifest.pb.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using kiln::artifact::BufferRef;
using kiln::artifact::DimExpr;
using kiln::artifact::EntryPoint;
using kiln::artifact::Launch;
using kiln::artifact::Manifest;
using kiln::test::serialize;
using kiln::test::vectorF32;

uint32_t addExpr(EntryPoint *e, DimExpr::Op op, int64_t value,
                 uint32_t lhs = 0, uint32_t rhs = 0) {
  DimExpr *x = e->add_dim_exprs();
  x->set_op(op);
  x->set_value(value);
  x->set_lhs(lhs);
  x->set_rhs(rhs);
  return e->dim_exprs_size() - 1;
}

/// y[n] = x[n] through the arena, n in 1..8: two copies of 4*n bytes.
Manifest copyModel() {
  Manifest m;
  m.set_target("cpu");
  m.set_arena_bytes(64);
  EntryPoint *e = m.add_entry_points();
  e->set_name("main");
  auto *dim = e->add_dims();
  dim->set_name("n");
  dim->set_min(1);
  dim->set_max(8);
  uint32_t n = addExpr(e, DimExpr::SYMBOL, 0);
  uint32_t four = addExpr(e, DimExpr::CONST, 4);
  uint32_t bytes = addExpr(e, DimExpr::MUL, 0, n, four);
  for (auto *spec : {e->add_inputs(), e->add_outputs()}) {
    spec->set_name(spec == &e->inputs(0) ? "x" : "y");
    spec->set_dtype(kiln::artifact::F32);
    spec->add_shape(-1);
    spec->add_dim_exprs(n);
  }
  auto ref = [&](Launch *l, BufferRef::Kind kind) {
    BufferRef *r = l->add_args();
    r->set_kind(kind);
    r->set_size(32); // capacity: 4 * 8
    r->set_size_expr(bytes + 1);
  };
  Launch *in = e->add_launches();
  in->set_kind(Launch::COPY);
  ref(in, BufferRef::ARENA);
  ref(in, BufferRef::INPUT);
  Launch *out = e->add_launches();
  out->set_kind(Launch::COPY);
  ref(out, BufferRef::OUTPUT);
  ref(out, BufferRef::ARENA);
  return m;
}

std::string loadError(const Manifest &m) {
  std::string bytes = serialize(m, std::string());
  kiln_module *module = nullptr;
  kiln_status status =
      kiln_module_load_memory(bytes.data(), bytes.size(), &module);
  std::string message = status ? kiln_status_message(status) : "";
  kiln_status_free(status);
  kiln_module_free(module);
  return message;
}

struct Loaded {
  kiln_module *module = nullptr;
  kiln_session *session = nullptr;
  explicit Loaded(const Manifest &m) {
    std::string bytes = serialize(m, std::string());
    EXPECT_EQ(kiln_module_load_memory(bytes.data(), bytes.size(), &module),
              nullptr);
    EXPECT_EQ(kiln_session_create(module, "cpu", &session), nullptr);
  }
  ~Loaded() {
    kiln_session_free(session);
    kiln_module_free(module);
  }
  std::string run(kiln_tensor in, kiln_tensor out) {
    kiln_status status = kiln_session_run(session, nullptr, &in, 1, &out, 1);
    std::string message = status ? kiln_status_message(status) : "";
    kiln_status_free(status);
    return message;
  }
};

TEST(SymbolicDims, OneArtifactRunsEverySizeInBounds) {
  Loaded loaded(copyModel());
  ASSERT_EQ(kiln_module_dim_count(loaded.module, 0), 1u);
  const char *name = nullptr;
  int64_t min = 0, max = 0;
  ASSERT_EQ(kiln_module_dim_info(loaded.module, 0, 0, &name, &min, &max),
            nullptr);
  EXPECT_STREQ(name, "n");
  EXPECT_EQ(min, 1);
  EXPECT_EQ(max, 8);
  EXPECT_EQ(kiln_module_input_dim_symbol(loaded.module, 0, 0, 0), 0);
  kiln_tensor info{};
  ASSERT_EQ(kiln_module_input_info(loaded.module, 0, 0, &info, nullptr),
            nullptr);
  EXPECT_EQ(info.shape[0], -1);
  EXPECT_EQ(info.size_bytes, 32u); // at the upper bound
  for (int64_t n : {1, 3, 8}) {
    std::vector<float> x(n), y(n, -1.0f);
    for (int64_t i = 0; i < n; ++i)
      x[i] = 1.5f * i;
    kiln_tensor in = vectorF32(x.data(), n), out{};
    ASSERT_EQ(kiln_module_output_shapes(loaded.module, nullptr, &in, 1, &out,
                                        1),
              nullptr);
    EXPECT_EQ(out.rank, 1);
    EXPECT_EQ(out.shape[0], n);
    EXPECT_EQ(out.size_bytes, static_cast<size_t>(4 * n));
    EXPECT_EQ(loaded.run(in, vectorF32(y.data(), n)), "");
    EXPECT_EQ(x, y);
  }
}

TEST(SymbolicDims, SizesOutsideTheBoundsAreRefused) {
  Loaded loaded(copyModel());
  std::vector<float> x(9), y(9);
  std::string error = loaded.run(vectorF32(x.data(), 9), vectorF32(y.data(), 9));
  EXPECT_NE(error.find("input #0 'x' must be f32[n=1..8], got f32[9]: dim "
                       "'n' is 9, outside the bounds 1..8"),
            std::string::npos)
      << error;
  // The output must have the size the inputs give it.
  error = loaded.run(vectorF32(x.data(), 3), vectorF32(y.data(), 4));
  EXPECT_NE(error.find("output #0 'y' must be f32[3], got f32[4]"),
            std::string::npos)
      << error;
}

TEST(SymbolicDims, MalformedDimProgramsDoNotLoad) {
  EXPECT_EQ(loadError(copyModel()), "");
  Manifest later = copyModel();
  later.mutable_entry_points(0)->mutable_dim_exprs(2)->set_rhs(2);
  EXPECT_NE(loadError(later).find("uses a later expression"),
            std::string::npos);
  Manifest symbol = copyModel();
  symbol.mutable_entry_points(0)->mutable_dim_exprs(0)->set_value(3);
  EXPECT_NE(loadError(symbol).find("names a missing dim"), std::string::npos);
  Manifest bounds = copyModel();
  bounds.mutable_entry_points(0)->mutable_dims(0)->set_min(9);
  EXPECT_NE(loadError(bounds).find("dim 'n' has bounds 9..8"),
            std::string::npos);
  Manifest input = copyModel();
  input.mutable_entry_points(0)->mutable_inputs(0)->set_dim_exprs(0, 2);
  EXPECT_NE(loadError(input).find("dim 0 of tensor 'x' is malformed"),
            std::string::npos);
  Manifest capacity = copyModel();
  // Past the input's capacity of 32 bytes (4 * the upper bound of n).
  for (int a = 0; a < 2; ++a)
    capacity.mutable_entry_points(0)->mutable_launches(0)->mutable_args(a)
        ->set_size(64);
  EXPECT_NE(loadError(capacity).find("outside"), std::string::npos);
}

TEST(SymbolicDims, ArtifactWithATooSmallPlanIsRefusedAtRun) {
  Manifest m = copyModel();
  // A capacity of 16 bytes cannot hold n = 8.
  for (int l = 0; l < 2; ++l)
    for (int a = 0; a < 2; ++a)
      m.mutable_entry_points(0)->mutable_launches(l)->mutable_args(a)->set_size(
          16);
  Loaded loaded(m);
  std::vector<float> x(8), y(8);
  EXPECT_EQ(loaded.run(vectorF32(x.data(), 4), vectorF32(y.data(), 4)), "");
  std::string error = loaded.run(vectorF32(x.data(), 8), vectorF32(y.data(), 8));
  EXPECT_NE(error.find("needs 32 bytes of a buffer planned for 16"),
            std::string::npos)
      << error;
}

TEST(SymbolicDims, ArithmeticRoundsAsTheCompilerDoes) {
  EntryPoint e;
  e.set_name("f");
  auto *dim = e.add_dims();
  dim->set_name("n");
  dim->set_min(0);
  dim->set_max(100);
  uint32_t n = addExpr(&e, DimExpr::SYMBOL, 0);
  uint32_t three = addExpr(&e, DimExpr::CONST, 3);
  uint32_t minusSeven = addExpr(&e, DimExpr::CONST, -7);
  addExpr(&e, DimExpr::CEILDIV, 0, n, three);
  addExpr(&e, DimExpr::FLOORDIV, 0, minusSeven, three);
  addExpr(&e, DimExpr::CEILDIV, 0, minusSeven, three);
  addExpr(&e, DimExpr::REM, 0, minusSeven, three);
  addExpr(&e, DimExpr::MAX, 0, n, three);
  auto values = kiln::runtime::evaluateDims(e, {10});
  ASSERT_TRUE(values.ok());
  EXPECT_EQ((*values)[3], 4);  // ceil(10 / 3)
  EXPECT_EQ((*values)[4], -3); // floor(-7 / 3)
  EXPECT_EQ((*values)[5], -2); // ceil(-7 / 3)
  EXPECT_EQ((*values)[6], 2);  // -7 mod 3, non-negative
  EXPECT_EQ((*values)[7], 10);
  addExpr(&e, DimExpr::FLOORDIV, 0, three, n);
  auto divided = kiln::runtime::evaluateDims(e, {0});
  ASSERT_FALSE(divided.ok());
  EXPECT_NE(std::string(divided.status().message()).find("divides by zero"),
            std::string::npos);
}

} // namespace
