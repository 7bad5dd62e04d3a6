//===- DimProgram.h - symbolic dims as an artifact's dim program -*- C++ -*-===//
//
// An entry point with symbolic dims (`--dim NAME=MIN..MAX`) computes, once
// per run, the sizes its launches need: dims of intermediates, byte counts,
// the size arguments of kernels, GPU grids. The compiler writes them as a
// small integer program (manifest EntryPoint.dim_exprs) that the runtime
// evaluates from the inputs' shapes. This class builds that program from
// the index arithmetic of the entry function and of the dispatch bodies,
// and tracks each expression's range over the dims' bounds, from which the
// arena is planned.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_ARTIFACT_DIMPROGRAM_H
#define KILN_CODEGEN_ARTIFACT_DIMPROGRAM_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <map>
#include <tuple>

namespace kiln::artifact {
class EntryPoint;
}

namespace kiln::codegen {

class DimProgram {
public:
  /// Reads the entry function's symbolic dims (`kiln.dims` on its arguments,
  /// `kiln.dim_bounds` on the function) into `entry`. Reports errors on
  /// `func`.
  static mlir::FailureOr<DimProgram> create(mlir::func::FuncOp func,
                                            artifact::EntryPoint *entry);

  /// The expression of dim `d` of the tensor or memref `value` (an entry
  /// value, a value inside a dispatch body, or a buffer on the host side of
  /// a GPU kernel function). Reports an error when the size is not
  /// computable from the symbolic dims.
  mlir::FailureOr<uint32_t> dimOf(mlir::Value value, unsigned d);
  /// The expression of an index value.
  mlir::FailureOr<uint32_t> exprOf(mlir::Value index);

  /// Makes `index` (a kernel function's size argument) stand for `expr`.
  void bindIndex(mlir::Value index, uint32_t expr) { indices[index] = expr; }

  /// The number of elements of the tensor `value` times `elementBytes`.
  mlir::FailureOr<uint32_t> bytesOf(mlir::Value value, uint64_t elementBytes);

  uint32_t constant(int64_t value);
  uint32_t mul(uint32_t lhs, uint32_t rhs);
  uint32_t ceilDiv(uint32_t lhs, uint32_t rhs);

  /// The constant value of expression `e`, if it is one.
  std::optional<int64_t> constantValue(uint32_t e) const;
  /// The largest value `e` takes over the dims' bounds (at least 0).
  uint64_t upperBound(uint32_t e) const;

  bool hasSymbolicDims() const { return !symbols.empty(); }

private:
  DimProgram(artifact::EntryPoint *entry) : entry(entry) {}
  uint32_t add(int op, int64_t value, uint32_t lhs, uint32_t rhs);
  mlir::FailureOr<uint32_t> binary(int op, mlir::Value lhs, mlir::Value rhs);
  /// A static or dynamic size (an attribute or an index value).
  mlir::FailureOr<uint32_t> sizeOf(mlir::OpFoldResult size);
  /// The product of dims `dims` of `source` (a collapsed group).
  mlir::FailureOr<uint32_t> productOf(mlir::Value source,
                                      llvm::ArrayRef<int64_t> dims);

  artifact::EntryPoint *entry;
  mlir::func::FuncOp func;
  llvm::StringMap<uint32_t> symbols; // name -> index into entry dims
  std::map<std::tuple<int, int64_t, uint32_t, uint32_t>, uint32_t> interned;
  std::vector<std::pair<int64_t, int64_t>> ranges; // per expression
  llvm::DenseMap<std::pair<mlir::Value, unsigned>, uint32_t> dims;
  llvm::DenseMap<mlir::Value, uint32_t> indices;
};

} // namespace kiln::codegen

#endif // KILN_CODEGEN_ARTIFACT_DIMPROGRAM_H
