// Symbolic dims at run time.
#include "dims.h"

#include "artifact.h"

#include "absl/strings/str_cat.h"

#include <algorithm>

namespace kiln::runtime {

using artifact::DimExpr;

namespace {

bool checkedMul(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

std::string describeShape(const kiln_tensor &t) {
  std::string s = absl::StrCat(kiln_dtype_name(t.dtype), "[");
  for (int i = 0; i < std::min<int>(std::max(t.rank, 0), KILN_MAX_RANK); ++i)
    absl::StrAppend(&s, i ? "," : "", t.shape[i]);
  return s + "]";
}

std::string describeSpec(const artifact::EntryPoint &entry,
                         const artifact::TensorSpec &spec) {
  std::string s = absl::StrCat(
      kiln_dtype_name(static_cast<kiln_dtype>(spec.dtype())), "[");
  for (int i = 0; i < spec.shape_size(); ++i) {
    absl::StrAppend(&s, i ? "," : "");
    int32_t e = i < spec.dim_exprs_size() ? spec.dim_exprs(i) : -1;
    if (e >= 0 && entry.dim_exprs(e).op() == DimExpr::SYMBOL) {
      const auto &dim = entry.dims(entry.dim_exprs(e).value());
      absl::StrAppend(&s, dim.name(), "=", dim.min(), "..", dim.max());
    } else {
      absl::StrAppend(&s, spec.shape(i));
    }
  }
  return s + "]";
}

}  // namespace

absl::StatusOr<std::vector<int64_t>>
evaluateDims(const artifact::EntryPoint &entry,
             const std::vector<int64_t> &symbols) {
  std::vector<int64_t> v(entry.dim_exprs_size());
  for (int i = 0; i < entry.dim_exprs_size(); ++i) {
    const DimExpr &e = entry.dim_exprs(i);
    int64_t a = e.op() > DimExpr::CONST ? v[e.lhs()] : 0;
    int64_t b = e.op() > DimExpr::CONST ? v[e.rhs()] : 0;
    bool ok = true;
    switch (e.op()) {
    case DimExpr::SYMBOL: v[i] = symbols[e.value()]; break;
    case DimExpr::CONST: v[i] = e.value(); break;
    case DimExpr::ADD: ok = !__builtin_add_overflow(a, b, &v[i]); break;
    case DimExpr::SUB: ok = !__builtin_sub_overflow(a, b, &v[i]); break;
    case DimExpr::MUL: ok = checkedMul(a, b, &v[i]); break;
    case DimExpr::FLOORDIV:
    case DimExpr::CEILDIV:
    case DimExpr::REM:
      if (b <= 0) {
        ok = false;
        break;
      }
      if (e.op() == DimExpr::REM) {
        v[i] = ((a % b) + b) % b;
      } else {
        int64_t q = a / b, r = a % b;
        if (r != 0 && (r < 0) == (e.op() == DimExpr::FLOORDIV))
          q += e.op() == DimExpr::FLOORDIV ? -1 : 1;
        v[i] = q;
      }
      break;
    case DimExpr::MIN: v[i] = std::min(a, b); break;
    case DimExpr::MAX: v[i] = std::max(a, b); break;
    default: ok = false;
    }
    if (!ok)
      return absl::InvalidArgumentError(absl::StrCat(
          "entry point '", entry.name(), "': dim expression #", i,
          " overflows or divides by zero for these input shapes"));
  }
  return v;
}

absl::StatusOr<std::vector<int64_t>>
checkDimProgram(const artifact::EntryPoint &entry) {
  auto bad = [&](const std::string &what) {
    return absl::DataLossError(absl::StrCat(
        "entry point '", entry.name(), "' has a malformed dim program: ",
        what));
  };
  for (const auto &dim : entry.dims())
    if (dim.min() < 0 || dim.max() < dim.min())
      return bad(absl::StrCat("dim '", dim.name(), "' has bounds ", dim.min(),
                              "..", dim.max()));
  for (int i = 0; i < entry.dim_exprs_size(); ++i) {
    const DimExpr &e = entry.dim_exprs(i);
    if (e.op() <= DimExpr::OP_INVALID || e.op() > DimExpr::MAX)
      return bad(absl::StrCat("expression #", i, " has an unknown op"));
    if (e.op() == DimExpr::SYMBOL &&
        (e.value() < 0 || e.value() >= entry.dims_size()))
      return bad(absl::StrCat("expression #", i, " names a missing dim"));
    if (e.op() > DimExpr::CONST &&
        (e.lhs() >= static_cast<uint32_t>(i) ||
         e.rhs() >= static_cast<uint32_t>(i)))
      return bad(absl::StrCat("expression #", i,
                              " uses a later expression"));
  }
  auto checkSpec = [&](const artifact::TensorSpec &spec,
                       bool input) -> absl::Status {
    if (spec.dim_exprs_size() != 0 &&
        spec.dim_exprs_size() != spec.shape_size())
      return bad(absl::StrCat("tensor '", spec.name(), "' has ",
                              spec.dim_exprs_size(), " dim expressions"));
    for (int i = 0; i < spec.shape_size(); ++i) {
      int32_t e = i < spec.dim_exprs_size() ? spec.dim_exprs(i) : -1;
      if ((e < 0) != (spec.shape(i) >= 0) || e >= entry.dim_exprs_size() ||
          (input && e >= 0 &&
           entry.dim_exprs(e).op() != DimExpr::SYMBOL))
        return bad(absl::StrCat("dim ", i, " of tensor '", spec.name(),
                                "' is malformed"));
    }
    return absl::OkStatus();
  };
  for (const auto &spec : entry.inputs())
    if (absl::Status s = checkSpec(spec, true); !s.ok())
      return s;
  for (const auto &spec : entry.outputs())
    if (absl::Status s = checkSpec(spec, false); !s.ok())
      return s;
  std::vector<int64_t> maxima;
  for (const auto &dim : entry.dims())
    maxima.push_back(dim.max());
  absl::StatusOr<std::vector<int64_t>> values = evaluateDims(entry, maxima);
  if (!values.ok())
    return bad(std::string(values.status().message()));
  return values;
}

int64_t specDim(const artifact::TensorSpec &spec, int i,
                const std::vector<int64_t> &values) {
  int32_t e = i < spec.dim_exprs_size() ? spec.dim_exprs(i) : -1;
  return e >= 0 ? values[e] : spec.shape(i);
}

absl::StatusOr<std::vector<int64_t>>
bindDims(const artifact::EntryPoint &entry, const kiln_tensor *inputs) {
  std::vector<int64_t> symbols(entry.dims_size(), -1);
  std::vector<int> boundBy(entry.dims_size(), -1);
  for (int k = 0; k < entry.inputs_size(); ++k) {
    const auto &spec = entry.inputs(k);
    const kiln_tensor &t = inputs[k];
    auto mismatch = [&](const std::string &why) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input #", k, " '", spec.name(), "' must be ",
          describeSpec(entry, spec), ", got ", describeShape(t), why));
    };
    if (t.dtype != static_cast<kiln_dtype>(spec.dtype()) ||
        t.rank != spec.shape_size())
      return mismatch("");
    for (int i = 0; i < spec.shape_size(); ++i) {
      int32_t e = i < spec.dim_exprs_size() ? spec.dim_exprs(i) : -1;
      if (e < 0) {
        if (t.shape[i] != spec.shape(i))
          return mismatch("");
        continue;
      }
      int64_t d = entry.dim_exprs(e).value();
      const auto &dim = entry.dims(d);
      if (t.shape[i] < dim.min() || t.shape[i] > dim.max())
        return mismatch(absl::StrCat(": dim '", dim.name(), "' is ",
                                     t.shape[i], ", outside the bounds ",
                                     dim.min(), "..", dim.max(),
                                     " it was compiled for (kiln compile "
                                     "--dim ", dim.name(), "=MIN..MAX)"));
      if (symbols[d] >= 0 && symbols[d] != t.shape[i])
        return mismatch(absl::StrCat(
            ": dim '", dim.name(), "' is ", symbols[d], " in input #",
            boundBy[d], " '", entry.inputs(boundBy[d]).name(),
            "' but ", t.shape[i], " here"));
      symbols[d] = t.shape[i];
      boundBy[d] = k;
    }
  }
  for (int d = 0; d < entry.dims_size(); ++d)
    if (symbols[d] < 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "entry point '", entry.name(), "': no input has the dim '",
          entry.dims(d).name(), "'"));
  return evaluateDims(entry, symbols);
}

bool stridedCopyFits(const StridedCopy &copy, uint64_t dst_bytes,
                     uint64_t src_bytes) {
  constexpr uint64_t kLimit = uint64_t(1) << 60;
  if (copy.rows > kLimit || copy.row_bytes > kLimit ||
      copy.dst_pitch > kLimit || copy.dst_offset > kLimit)
    return false;
  if (copy.rows == 0 || copy.row_bytes == 0)
    return true;
  if (copy.rows > kLimit / std::max<uint64_t>(copy.row_bytes, 1) ||
      copy.rows - 1 > kLimit / std::max<uint64_t>(copy.dst_pitch, 1))
    return false;
  return copy.row_bytes <= copy.dst_pitch &&
         copy.rows * copy.row_bytes <= src_bytes &&
         copy.dst_offset + (copy.rows - 1) * copy.dst_pitch + copy.row_bytes <=
             dst_bytes;
}

absl::Status checkRunFits(const artifact::EntryPoint &entry,
                          const std::vector<int64_t> &values) {
  for (int i = 0; i < entry.launches_size(); ++i) {
    const artifact::Launch &launch = entry.launches(i);
    if (launch.kind() == artifact::Launch::STRIDED_COPY) {
      StridedCopy copy = stridedCopy(launch, values);
      for (uint32_t e : {launch.rows_expr(), launch.row_bytes_expr(),
                         launch.dst_offset_expr()})
        if (e && values[e - 1] < 0)
          copy.rows = UINT64_MAX;  // fails below
      if (!stridedCopyFits(copy, launch.args(0).size(),
                           refBytes(launch.args(1), values)))
        return absl::InvalidArgumentError(absl::StrCat(
            "entry point '", entry.name(), "': launch #", i,
            " copies rows past the end of its buffers (the dims are "
            "outside what the artifact was compiled for)"));
    }
    for (const auto &ref : launch.args())
      if (ref.size_expr() &&
          (values[ref.size_expr() - 1] < 0 ||
           static_cast<uint64_t>(values[ref.size_expr() - 1]) > ref.size()))
        return absl::InvalidArgumentError(absl::StrCat(
            "entry point '", entry.name(), "': launch #", i, " needs ",
            values[ref.size_expr() - 1], " bytes of a buffer planned for ",
            ref.size(), "; the artifact is inconsistent, compile it again"));
    for (uint32_t e : launch.grid_exprs())
      if (e && (values[e - 1] < 0 || values[e - 1] > INT32_MAX))
        return absl::InvalidArgumentError(absl::StrCat(
            "entry point '", entry.name(), "': launch #", i,
            " has a grid of ", values[e - 1], " blocks"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::runtime
