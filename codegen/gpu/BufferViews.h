//===- BufferViews.h - data movement in a kernel read as strided views ----===//
//
// After bufferization, data movement inside a kernel (a transpose, a copy,
// a gather at affine indices) is a step that writes a temporary buffer.
// A strategy whose loads and stores take any strides (the flash kernel's
// 16-byte copies) can instead read the source in place: these helpers say
// where a buffer's elements lie in a buffer of the kernel function, as a
// static offset and strides, and which steps and temporaries that makes
// dead.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_GPU_BUFFERVIEWS_H
#define KILN_CODEGEN_GPU_BUFFERVIEWS_H

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/SmallVector.h"

#include <optional>

namespace kiln {

/// Element [i0, .., in] of a buffer is element offset + sum(i_d *
/// strides[d]) of `base`, a row-major buffer of static shape that the
/// kernel function takes.
struct StridedView {
  mlir::Value base;
  int64_t offset = 0;
  llvm::SmallVector<int64_t> strides;

  /// Whether the offset and every stride but the innermost (which is 1)
  /// are multiples of `elements`: rows can be copied in chunks of it.
  bool alignedTo(int64_t elements) const;
  /// The view as a memref of `shape` over `base` (a reinterpret_cast).
  mlir::Value build(mlir::OpBuilder &b, mlir::Location loc,
                    llvm::ArrayRef<int64_t> shape) const;
};

/// The steps (and their temporary buffers) that a view made dead.
struct Movement {
  llvm::SetVector<mlir::Operation *> steps;
  llvm::SetVector<mlir::Value> temporaries;
  /// Erases the steps, then the temporaries with their deallocations.
  void erase();
};

/// Whether `generic` only moves data (on tensors or buffers): all
/// parallel, one init with the identity map whose element it ignores, a
/// body of index arithmetic and reads (tensor.extract, memref.load) that
/// yields an input's element read through a projected permutation or one
/// of its reads.
bool movesData(mlir::linalg::GenericOp generic);

/// Whether `generic` computes each element of its one output from reads
/// alone, cheaply enough to be recomputed where a kernel loads it (a rotary
/// embedding): all parallel, one init with the identity map whose element
/// it ignores, and a body of at most `kMaxComputedOps` scalar arith ops,
/// linalg.index and reads (tensor.extract, memref.load); no math
/// functions, no regions.
bool computesElements(mlir::linalg::GenericOp generic);
inline constexpr unsigned kMaxComputedOps = 48;

/// Where the elements `reader` reads from `buffer` lie: `buffer` itself
/// when it is a kernel buffer or a static view of one; or, for a temporary
/// that only `reader` reads and that one step before it wrote by moving
/// data (a copy, a linalg.transpose, a generic yielding an input element
/// through a permutation or a memref.load at indices that are affine in
/// the loop indices), the view of what that step read, recursively. The
/// steps and temporaries are added to `movement`.
std::optional<StridedView>
sourceView(mlir::Value buffer, mlir::Operation *reader, Movement &movement);

/// Where element [i..] of `value` lands when `step` (a memref.copy, a
/// linalg.transpose or a generic yielding its one input element through a
/// permutation) moves `value` into its target, a kernel buffer or a static
/// view of one.
std::optional<StridedView> targetView(mlir::Operation *step, mlir::Value value);

} // namespace kiln

#endif // KILN_CODEGEN_GPU_BUFFERVIEWS_H
