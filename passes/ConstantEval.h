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
//===----------------------------------------------------------------------===//
#ifndef KILN_PASSES_CONSTANTEVAL_H
#define KILN_PASSES_CONSTANTEVAL_H

#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseMap.h"

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

  /// The value of `v`, or nothing when it depends on anything but constants
  /// (or is too large, or uses an op the evaluator does not know).
  const ConstTensor *evaluate(mlir::Value v);

private:
  const ConstTensor *compute(mlir::Value v);

  int64_t maxElements;
  llvm::DenseMap<mlir::Value, std::unique_ptr<ConstTensor>> cache;
};

} // namespace kiln

#endif // KILN_PASSES_CONSTANTEVAL_H
