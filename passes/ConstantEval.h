//===- ConstantEval.h - values of small tensors the graph computes from constants -===//
//
// Exporters build masks, scales and position tables as subgraphs over
// constants (a causal mask from Trilu or from a comparison of iotas, a
// softmax scale as 1 / sqrt(head size) from the shape), and the importer
// keeps them as linalg ops. The raising passes need their values to tell a
// causal mask from a padding mask, or a scale from a data-dependent
// product: this evaluator computes a tensor whose backward slice holds only
// constants and shape-only ops, element by element, in doubles (masks and
// scales: a handful of distinct values; f32 results are rounded to f32).
//
// It interprets dense constants, tensor.empty (only as an unread init),
// every all-parallel linalg op through its indexing maps and body
// (linalg.index, tensor.extract and the arith/math scalar ops), and the
// reshapes; anything else, or more than `maxElements` elements, gives
// nothing.
//
// Symbolic dims: a dynamic export computes its masks from the input's
// shape (an iota of the sequence length). Given sizes for the function's
// named dims (`kiln.dims` on its arguments), the evaluator also computes
// tensors whose shapes, and values, depend on those dims (never on the
// arguments' values): the sizes of tensor.empty, the index arithmetic of
// tensor.dim, from_elements and slices are evaluated at them.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_PASSES_CONSTANTEVAL_H
#define KILN_PASSES_CONSTANTEVAL_H

#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <memory>
#include <optional>
#include <vector>

namespace kiln {

/// A tensor's value, row-major, each element a double (integers and i1 as
/// their numeric value).
struct ConstTensor {
  llvm::SmallVector<int64_t> shape;
  std::vector<double> values;

  int64_t size() const { return int64_t(values.size()); }
  /// The single value every element holds, if they all hold one.
  std::optional<double> uniform() const;
};

class ConstantEvaluator {
public:
  explicit ConstantEvaluator(int64_t maxElements = 1 << 20)
      : maxElements(maxElements) {}

  /// Evaluates at these sizes of the named symbolic dims from now on
  /// (what was evaluated before is forgotten).
  void bindDims(llvm::StringMap<int64_t> sizes);

  /// The value of `v`, or nothing when it depends on anything but constants
  /// and bound dims (or is too large, or uses an op the evaluator does not
  /// know).
  const ConstTensor *evaluate(mlir::Value v);

  /// A scalar (index, integer or float) computed from constants and bound
  /// dims: arith ops, tensor.dim, tensor.extract of an evaluable tensor.
  std::optional<double> scalar(mlir::Value v);
  /// Dim `d` of the tensor `v` (static, or computed from bound dims).
  std::optional<int64_t> dimOf(mlir::Value v, unsigned d);
  std::optional<llvm::SmallVector<int64_t>> shapeOf(mlir::Value v);

private:
  const ConstTensor *compute(mlir::Value v);
  std::optional<double> computeScalar(mlir::Value v);
  std::optional<int64_t> sizeOf(mlir::OpFoldResult size);

  int64_t maxElements;
  llvm::DenseMap<mlir::Value, std::unique_ptr<ConstTensor>> cache;
  llvm::DenseMap<mlir::Value, std::optional<double>> scalars;
  llvm::StringMap<int64_t> dims;
};

} // namespace kiln

#endif // KILN_PASSES_CONSTANTEVAL_H
