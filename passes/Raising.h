//===- Raising.h - what the raising passes share ----------------*- C++ -*-===//
//
// The raising passes (attention, norms, activations) read the importer's
// linalg as exporters wrote it: elementwise generics whose body is one op
// (or a short scalar expression), broadcast operands aligned on the right,
// constants the graph computes. These are the questions they all ask of a
// generic, and the one place that records what was raised.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_PASSES_RAISING_H
#define KILN_PASSES_RAISING_H

#include "passes/ConstantEval.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"

#include <optional>

namespace kiln {

/// One result, every loop parallel, written at the identity map.
bool isAllParallelElementwise(mlir::linalg::GenericOp g);

/// Whether `map` reads an operand of shape `shape` right-aligned against
/// the loops (dims of size 1 may read 0).
bool isRightAligned(mlir::AffineMap map, llvm::ArrayRef<int64_t> shape);

/// The one computing op of a generic's body (constants aside), if the body
/// is that op and the yield of its result.
mlir::Operation *soleBodyOp(mlir::linalg::GenericOp g);

/// A scalar arith or math op applied to doubles (integers and i1 as their
/// value): what ConstantEval interprets, for a raising pass that evaluates
/// a body at sample points. Nothing for an op it does not know.
std::optional<double> applyScalarOp(mlir::Operation *op,
                                    llvm::ArrayRef<double> operands);

/// A step of a scalar region: an all-parallel elementwise generic with a
/// float result whose body does not read its init, or a reshape.
bool isScalarStep(mlir::Operation *op);

/// A value computed element by element from one tensor `x` and uniform
/// constants, through scalar steps (each element of the root from the
/// element of x at the same position, whatever unit dims reshapes add):
/// the GELU an exporter spelled out, or the per-row `1 / sqrt(sum / D +
/// eps)` of a decomposed norm. Raising passes evaluate it at sample points
/// and let the numbers say what it is.
struct ScalarRegion {
  mlir::Value x;
  /// The steps, the root first.
  llvm::SmallVector<mlir::Operation *> ops;

  /// The region between `x` and `root` (x read at the same element by
  /// every step that reads it, every other input a uniform constant, no
  /// intermediate value read outside), or nothing if it does not close
  /// within `maxOps` steps.
  static std::optional<ScalarRegion> between(mlir::Operation *root,
                                             mlir::Value x,
                                             ConstantEvaluator &eval,
                                             size_t maxOps = 24);

  mlir::Value result() const { return ops.front()->getResult(0); }

  /// The root's value where x is `t`, the bodies interpreted in doubles.
  std::optional<double> evaluate(double t, ConstantEvaluator &eval) const;

  /// One unit in the last place (at 1) of the narrowest float type the
  /// steps compute in, f32's at the widest: the scale of a raising's
  /// tolerance (an f16 model's constants hold 11 bits).
  double ulp() const;

  /// Erases the steps (the root's uses must be replaced first), their
  /// `tensor.dim` readers pointed at x.
  void erase();
};

/// Points the `tensor.dim` readers of `op`'s results at the same dims of
/// `x`, before `op` is erased: the values a raising replaces have x's
/// leading (symbolic) dims.
void redirectDims(mlir::Operation *op, mlir::Value x);

/// Adds `count` raised `name` ops to the function's `kiln.raised`
/// dictionary, which `kiln compile` copies into the manifest and `kiln
/// inspect` reports.
void recordRaised(mlir::func::FuncOp func, llvm::StringRef name,
                  int64_t count);

} // namespace kiln

#endif // KILN_PASSES_RAISING_H
