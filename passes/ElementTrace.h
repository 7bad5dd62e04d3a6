//===- ElementTrace.h - one element of a tensor, as a polynomial -*- C++ -*-===//
//
// Some raisings cannot be judged by sampling a scalar function: a rotary
// embedding reads each element's partner at another position of the head
// (a Slice, a Neg, a Concat of index generics) and multiplies by position
// tables that the graph computes. This tracer says what one element of a
// tensor is, exactly, in terms of the elements of the tensors it comes
// from: it follows all-parallel generics (their bodies interpreted, index
// arithmetic included, so Slice and Concat written as clamped extracts and
// selects resolve at a concrete index), extract_slice, unit-dim reshapes
// and transposes, and writes the element as a polynomial over atoms:
//
//   - a leaf: an element of a tensor it does not trace into (a matmul
//     result, a function argument, a value the caller stops at), named by
//     the tensor and its index;
//   - a function: a call of a non-polynomial op (cos, exp, a division by a
//     non-constant) on polynomials.
//
// Indices are affine expressions of the root's row: every dim but the last
// is a symbolic dim (d0, d1, ...; 0 where the root's size is 1), the last
// dim is a concrete number, and an index the tracer cannot follow (a
// position id read from a tensor) is a symbol named by what it reads. Two
// elements are equal when their polynomials are: `cos(concat(f, f))` at j
// and at j + R both trace to `cos(leaf(f, j))`.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_PASSES_ELEMENTTRACE_H
#define KILN_PASSES_ELEMENTTRACE_H

#include "passes/ConstantEval.h"

#include "mlir/IR/AffineExpr.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringMap.h"

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

/// A sum of monomials, each a coefficient times a product of atoms (their
/// ids, sorted; the empty product is the constant term).
struct Poly {
  std::map<std::vector<int>, double> terms;

  static Poly constant(double c);
  static Poly atom(int id);
  std::optional<double> asConstant() const;
  bool operator==(const Poly &o) const { return terms == o.terms; }
};

/// An element of a tensor that the tracer did not follow.
struct TraceLeaf {
  mlir::Value value;
  /// The index: affine in the root's row dims, the last one a constant.
  llvm::SmallVector<mlir::AffineExpr> index;
  int64_t last() const;
};

class ElementTracer {
public:
  /// `rootRank` dims index the root; `follow(v)` says whether to trace into
  /// the op that computes `v` (the tracer still stops where it cannot).
  ElementTracer(mlir::MLIRContext *ctx, int64_t rootRank,
                std::function<bool(mlir::Value)> follow,
                ConstantEvaluator &eval);

  /// The root's own index of the element whose last index is `last`:
  /// (d0, d1, ..., last), with 0 for dims of size 1.
  llvm::SmallVector<mlir::AffineExpr> rootIndex(mlir::Value root,
                                                int64_t last) const;

  /// Element `index` of `v`, or nothing when the polynomial grows past the
  /// tracer's limits.
  std::optional<Poly> element(mlir::Value v,
                              llvm::ArrayRef<mlir::AffineExpr> index);

  /// The leaf atom `id` stands for, or null for a function atom.
  const TraceLeaf *leaf(int id) const;

  /// The ops traced through so far (generics whose bodies were read,
  /// slices, reshapes), for a caller that replaces the root and erases
  /// what is left unused.
  const llvm::SetVector<mlir::Operation *> &traced() const { return ops; }

  /// Whether elements `a` and `b` of `v` are equal: the same polynomial, or
  /// reads of one constant tensor whose slices along the last dim at the
  /// two indices hold the same numbers.
  bool sameElements(mlir::Value v, llvm::ArrayRef<mlir::AffineExpr> a,
                    llvm::ArrayRef<mlir::AffineExpr> b);

private:
  struct Atom {
    std::string key;
    std::optional<TraceLeaf> leaf;
  };

  int intern(std::string key, std::optional<TraceLeaf> leaf);
  Poly leafPoly(mlir::Value v, llvm::ArrayRef<mlir::AffineExpr> index);
  std::optional<Poly> compute(mlir::Value v,
                              llvm::ArrayRef<mlir::AffineExpr> index);
  std::optional<Poly> throughGeneric(mlir::Operation *op, unsigned result,
                                     llvm::ArrayRef<mlir::AffineExpr> index);
  std::optional<Poly> function(llvm::StringRef name,
                               llvm::ArrayRef<Poly> args);
  std::string polyKey(const Poly &p) const;
  std::string indexKey(mlir::Value v,
                       llvm::ArrayRef<mlir::AffineExpr> index) const;
  mlir::AffineExpr opaqueIndex(const std::string &key);

  mlir::MLIRContext *ctx;
  int64_t rootRank;
  std::function<bool(mlir::Value)> follow;
  ConstantEvaluator &eval;
  std::deque<Atom> atoms; // stable: callers hold leaf pointers
  llvm::StringMap<int> atomIds;
  llvm::StringMap<unsigned> opaque;
  std::map<std::string, std::optional<Poly>> memo;
  llvm::SetVector<mlir::Operation *> ops;
  int64_t budget = 1 << 16;
};

} // namespace kiln

#endif // KILN_PASSES_ELEMENTTRACE_H
