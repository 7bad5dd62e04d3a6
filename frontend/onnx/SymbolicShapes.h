//===- SymbolicShapes.h - shape arithmetic on symbolic dims ----*- C++ -*-===//
//
// With `--dim NAME=MIN..MAX`, the shape chains exporters write (Shape ->
// Gather -> Unsqueeze -> Concat -> Reshape, ConstantOfShape, Expand, Range,
// Slice) compute with sizes known only at run time. The importer follows
// them symbolically: every small integer tensor derived from shapes is kept
// as a list of SymInts, each a polynomial over the symbolic dims (for
// comparisons and to match dims, e.g. to find a reshape's reassociation)
// together with the index value that computes it. Sizes are built from one
// `tensor.dim` per symbolic dim, so equal polynomials are equal values.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FRONTEND_ONNX_SYMBOLICSHAPES_H
#define KILN_FRONTEND_ONNX_SYMBOLICSHAPES_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::onnx {

class NodeContext;

/// A polynomial over symbolic dims with integer coefficients.
struct SymPoly {
  /// Sorted symbol names (a monomial) -> coefficient; no zero coefficients.
  std::map<std::vector<std::string>, int64_t> terms;

  static SymPoly constant(int64_t value);
  static SymPoly symbol(llvm::StringRef name);
  std::optional<int64_t> asConstant() const;
  SymPoly operator+(const SymPoly &other) const;
  SymPoly operator-(const SymPoly &other) const;
  SymPoly operator*(const SymPoly &other) const;
  /// this / divisor when the division is exact term by term (a constant
  /// or a monomial divisor).
  std::optional<SymPoly> divideExactly(const SymPoly &divisor) const;
  bool operator==(const SymPoly &other) const { return terms == other.terms; }
  bool operator!=(const SymPoly &other) const { return terms != other.terms; }
  std::string str() const;
};

/// One element of a symbolic integer tensor: its polynomial and the index
/// value computing it (null for a constant until one is needed).
struct SymInt {
  SymPoly poly;
  mlir::Value value;
};

/// A rank-0 or rank-1 integer tensor known element by element.
struct SymTensor {
  llvm::SmallVector<SymInt> elements;
  bool scalar = false;
};

class SymbolicShapes {
public:
  /// `bounds`: name -> (min, max) of each symbolic dim.
  SymbolicShapes(llvm::StringMap<std::pair<int64_t, int64_t>> bounds)
      : bounds(std::move(bounds)) {}

  /// Starts a function: its arguments' symbolic dims are named by their
  /// `kiln.dims` attributes; one tensor.dim per name is created at `b`
  /// (the top of the function).
  void beginFunction(mlir::func::FuncOp func, mlir::OpBuilder &b);

  /// The polynomial of dim `d` of `tensor` (static dims are constants).
  mlir::FailureOr<SymPoly> dimPoly(mlir::Value tensor, unsigned d);
  /// The polynomial of an index value.
  mlir::FailureOr<SymPoly> indexPoly(mlir::Value index);
  /// An index value computing `poly` (built from the symbols' values).
  mlir::Value materialize(mlir::OpBuilder &b, mlir::Location loc,
                          const SymPoly &poly);
  /// The bounds of `poly` over the dims' bounds, when every coefficient is
  /// positive (sizes); nullopt otherwise.
  std::optional<std::pair<int64_t, int64_t>> range(const SymPoly &poly) const;

  /// Symbolic integer tensors, by ONNX value name.
  llvm::StringMap<SymTensor> tensors;

private:
  llvm::StringMap<std::pair<int64_t, int64_t>> bounds;
  llvm::StringMap<mlir::Value> symbolValues;
  llvm::DenseMap<mlir::Value, SymPoly> known;
  std::map<std::map<std::vector<std::string>, int64_t>, mlir::Value>
      materialized;
  mlir::func::FuncOp func;
};

/// Imports `ctx`'s node symbolically when it computes on symbolic integer
/// tensors (shape arithmetic) or consumes one as a shape (Reshape, Expand,
/// ConstantOfShape, Range, Slice). Sets `handled` when it did; errors are
/// reported on the node.
mlir::LogicalResult importSymbolicNode(NodeContext &ctx, SymbolicShapes &shapes,
                                       bool &handled);

} // namespace kiln::onnx

#endif // KILN_FRONTEND_ONNX_SYMBOLICSHAPES_H
