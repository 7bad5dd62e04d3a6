// Symbolic dims at run time: an entry point's dim program (manifest
// EntryPoint.dims and dim_exprs) checked when the artifact loads and
// evaluated once per run from the shapes of the inputs.
#ifndef KILN_RUNTIME_SRC_DIMS_H
#define KILN_RUNTIME_SRC_DIMS_H

#include "kiln/runtime.h"
#include "manifest.pb.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <vector>

namespace kiln::runtime {

/// Evaluates every expression of `entry` with the symbolic dims set to
/// `symbols` (one per EntryPoint.dims). Fails on a division by zero or an
/// overflow. The program must have passed checkDimProgram.
absl::StatusOr<std::vector<int64_t>>
evaluateDims(const artifact::EntryPoint &entry,
             const std::vector<int64_t> &symbols);

/// Checks the structure of `entry`'s dim program (operands refer to earlier
/// expressions, symbols exist, bounds are ordered, every I/O symbolic dim
/// has an expression) and returns its values at the dims' upper bounds.
absl::StatusOr<std::vector<int64_t>>
checkDimProgram(const artifact::EntryPoint &entry);

/// Dim `i` of `spec` given the program's `values`.
int64_t specDim(const artifact::TensorSpec &spec, int i,
                const std::vector<int64_t> &values);

/// Binds the symbolic dims from the shapes of `inputs` (checking dtype,
/// rank, static dims, bounds, and that a dim named twice has one value) and
/// evaluates the program. Errors name the input, the dim and its bounds.
absl::StatusOr<std::vector<int64_t>>
bindDims(const artifact::EntryPoint &entry, const kiln_tensor *inputs);

/// Bytes of `ref` for this run (its size expression, else its size).
inline uint64_t refBytes(const artifact::BufferRef &ref,
                         const std::vector<int64_t> &values) {
  return ref.size_expr() ? static_cast<uint64_t>(values[ref.size_expr() - 1])
                         : ref.size();
}

/// Blocks in grid dim `i` of `launch` for this run.
inline uint64_t gridDim(const artifact::Launch &launch, int i,
                        const std::vector<int64_t> &values) {
  uint32_t e = i < launch.grid_exprs_size() ? launch.grid_exprs(i) : 0;
  return e ? static_cast<uint64_t>(values[e - 1]) : launch.grid(i);
}

/// A STRIDED_COPY launch's shape for a run: `rows` rows of `row_bytes`
/// from the packed source into the destination at `dst_offset + i *
/// dst_pitch`.
struct StridedCopy {
  uint64_t rows, row_bytes, dst_pitch, dst_offset;
};
inline StridedCopy stridedCopy(const artifact::Launch &launch,
                               const std::vector<int64_t> &values) {
  auto value = [&](uint64_t fixed, uint32_t e) {
    return e ? static_cast<uint64_t>(values[e - 1]) : fixed;
  };
  return {value(launch.rows(), launch.rows_expr()),
          value(launch.row_bytes(), launch.row_bytes_expr()),
          launch.dst_pitch(),
          value(launch.dst_offset(), launch.dst_offset_expr())};
}

/// Whether `copy` stays inside a destination of `dst_bytes` and a source of
/// `src_bytes`, without overflow.
bool stridedCopyFits(const StridedCopy &copy, uint64_t dst_bytes,
                     uint64_t src_bytes);

/// Checks that this run's buffer sizes fit the planned capacities and its
/// grids are launchable; a failure means the dims are outside what the
/// compiler planned for.
absl::Status checkRunFits(const artifact::EntryPoint &entry,
                          const std::vector<int64_t> &values);

/// Whether `entry` has symbolic dims.
inline bool hasSymbolicDims(const artifact::EntryPoint &entry) {
  return entry.dims_size() > 0;
}

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_DIMS_H
